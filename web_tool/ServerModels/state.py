"""A model's state as arrays: what a session or checkpoint keeps of a model, and its one file format.

`ServerModel.state()` gives it and `ServerModel.restore(state)` takes it back; `state_bytes` and
`state_from_file` write and read it as one .npz (arrays only, no pickles), which is how the session
store and large-area mapping's workers keep and load models.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class ModelState:
    """What a checkpoint keeps of a model: its head, its classes and, when learning tuned the
    extractor, the extractor's weights (arrays only: no pickles)."""

    head: dict[str, np.ndarray] | None
    classes: list[dict[str, Any]]
    extractor: list[np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def state_bytes(state: ModelState) -> bytes:
    """A model state as one .npz (arrays only, no pickles): head_*, classes, meta, extractor_*."""
    arrays = {"classes": np.array(json.dumps(state.classes)), "meta": np.array(json.dumps(state.meta))}
    for key, value in (state.head or {}).items():
        arrays[f"head_{key}"] = value
    for i, w in enumerate(state.extractor or []):
        arrays[f"extractor_{i}"] = w
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def state_from_file(path: Path) -> ModelState:
    """The state `state_bytes` wrote (or an older file: a linear head's kernel, bias, body_*)."""
    with np.load(path, allow_pickle=False) as f:
        names = f.files
        head = {k[5:]: f[k] for k in names if k.startswith("head_")} or None
        if head is None and "kernel" in names:  # written before heads had kinds
            head = {"kind": np.array("linear"), "kernel": f["kernel"], "bias": f["bias"]}
        prefix = "extractor_" if any(k.startswith("extractor_") for k in names) else "body_"
        n = sum(1 for k in names if k.startswith(prefix))
        extractor = [f[f"{prefix}{i}"] for i in range(n)] or None
        meta = json.loads(str(f["meta"])) if "meta" in names else {}
        return ModelState(head, json.loads(str(f["classes"])), extractor, meta)
