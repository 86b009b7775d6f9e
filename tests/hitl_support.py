"""Shared pieces of the human-in-the-loop tests: a striped scene, a model that knows it, HTTP helpers.

The scene is one 128 x 128 px, 1 m UTM tile of four vertical stripes (Water, Forest, Field, Built
colours with noise). The model is conftest's tiny architecture with its random body and a head
fitted to the stripes, so the base model predicts each stripe's class; its replay file holds
crops of the scene with the stripe labels.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import requests
from rasterio.warp import transform_bounds

from tests.conftest import REPO, UTM18, InProcessServer, LiveServer, build_app, make_geotiff, tiny_network
from web_tool.rendering.images import hex_to_rgb

X0, Y0, SIZE, STRIPE = 500_000, 4_300_000, 128, 32
COLOURS = [(20, 50, 110, 15), (35, 90, 45, 160), (170, 190, 110, 210), (185, 175, 170, 70)]
WATER, FOREST, FIELD, BUILT = range(4)


def stripe_labels() -> np.ndarray:
    return np.repeat(np.arange(4, dtype=np.uint8), STRIPE)[None, :].repeat(SIZE, axis=0)


def stripe_image(seed: int = 0) -> np.ndarray:
    """SIZE x SIZE x 4 uint8: the stripes' colours plus noise."""
    rng = np.random.default_rng(seed)
    image = np.array(COLOURS, dtype=np.float32)[stripe_labels()]
    image += rng.normal(0, 6, image.shape)
    return image.clip(0, 255).astype(np.uint8)


def write_scene(folder: Path) -> Path:
    bounds = (X0, Y0, X0 + SIZE, Y0 + SIZE)
    make_geotiff(folder / "stripes.tif", bounds, size=(SIZE, SIZE), data=stripe_image().transpose(2, 0, 1))
    return folder


def write_model(folder: Path, replay: bool = True) -> Path:
    """conftest's tiny architecture, random body, head fitted to the stripes; + replay npz."""

    from sklearn.linear_model import LogisticRegression

    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    network = tiny_network()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "stripes.keras"
    network.save(path)
    feats = KerasSegmentationModel(path, classes=[]).deep_features(stripe_image(seed=1))
    fit = LogisticRegression(C=1e4, max_iter=2000).fit(
        feats.reshape(-1, feats.shape[-1]), stripe_labels().ravel()
    )
    network.get_layer("logits").set_weights([fit.coef_.T[None, None].astype(np.float32), fit.intercept_])
    network.save(path)
    if replay:
        image, labels = stripe_image(seed=2), stripe_labels()
        starts = [(r, c) for r in (0, 32, 64) for c in (0, 16, 32, 48, 64)]
        np.savez(
            folder / "stripes.replay.npz",
            images=np.stack([image[r : r + 64, c : c + 64] for r, c in starts]),
            labels=np.stack([labels[r : r + 64, c : c + 64] for r, c in starts]),
        )
    return path


def utm_extent(xmin: float, ymin: float, xmax: float, ymax: float) -> dict:
    """An API extent in the scene's own CRS, from offsets in metres from its lower-left corner."""
    return {
        "xmin": X0 + xmin,
        "ymin": Y0 + ymin,
        "xmax": X0 + xmax,
        "ymax": Y0 + ymax,
        "spatialReference": {"latestWkid": UTM18.to_epsg()},
    }


def stripe_extent(k: int, margin: float = 6) -> dict:
    """The inside of stripe `k` as an EPSG:3857 extent (margin metres from its edges)."""
    b = transform_bounds(
        UTM18,
        "EPSG:3857",
        X0 + k * STRIPE + margin,
        Y0 + margin,
        X0 + (k + 1) * STRIPE - margin,
        Y0 + SIZE - margin,
    )
    return dict(zip(("xmin", "ymin", "xmax", "ymax"), b, strict=True))


def post(url, path: str, body: dict | None = None, status: int = 200) -> dict:
    """POST `body` as JSON to `path` of `url` (a base URL, or a LiveServer or InProcessServer)."""
    body = body if body is not None else {}
    r = (
        requests.post(url + path, json=body, timeout=120)
        if isinstance(url, str)
        else url.post(path, json=body)
    )
    assert r.status_code == status, (path, r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def decode_png(b64: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)


def predicted(url, k: int, session: str | None = None, classes: list[dict] | None = None) -> np.ndarray:
    """Class index per pixel (-1 for colours of no class) that /predPatch shows inside stripe k."""
    body = {"extent": stripe_extent(k), "session": session}
    result = post(url, "/predPatch", body)
    hard = decode_png(result["output_hard"])[..., :3]
    classes = classes or default_classes()
    out = np.full(hard.shape[:2], -1)
    for i, c in enumerate(classes):
        out[(hard == hex_to_rgb(c["color"])).all(axis=-1)] = i
    return out


def share(pred: np.ndarray, value: int) -> float:
    return float((pred == value).mean())


def default_classes() -> list[dict]:
    from web_tool.imagery.datasets import DEFAULT_CLASSES

    return DEFAULT_CLASSES


def correct_box(url, value: int, x: float, y: float, size: float = 4, session: str | None = None) -> int:
    """Label a size x size m box whose lower-left is (x, y) m from the scene's corner; → pixels."""
    body = {"extent": utm_extent(x, y, x + size, y + size), "value": value, "session": session}
    return post(url, "/recordCorrection", body)["count"]


def serve(scene: Path, model_path: Path, tmp_path: Path, in_process: bool = False, **overrides):
    """A live server (or with `in_process`, an InProcessServer) on the stripes scene (dataset
    "stripes") and `model_path`."""
    app, config = build_app([f"stripes={scene}"], model_path, tmp_path, **overrides)
    if in_process:
        return InProcessServer(app, config)
    srv = LiveServer(app)
    srv.config = config
    return srv


def start_server(dataset: str, model: Path, state: Path, port: int, *args: str) -> subprocess.Popen:
    """`python web_tool/server.py` on `port` (a real process, to be killed); returns once it answers."""
    cmd = [
        sys.executable,
        str(REPO / "web_tool" / "server.py"),
        "--dataset",
        dataset,
        "--model_fn",
        str(model),
        "--state_dir",
        str(state),
        "--port",
        str(port),
        *args,
    ]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not start")
