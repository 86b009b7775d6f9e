"""Heads: per-pixel classifiers from features to class probabilities, storable as plain arrays.

- `LinearHead`: softmax of a linear map of some of the features (a network's own last 1x1 layer).
- `ClassifierHead`: a scikit-learn classifier fitted on corrections, over all the features. It is
  stored with skops (a format that loads only the types it is told to trust, unlike pickle).

A head may have more outputs than its classifier has seen classes: a class nobody has labelled
yet gets probability 0 until a correction names it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar, Protocol

import numpy as np

from web_tool.errors import RequestError

#: the only types a stored ClassifierHead may contain besides numpy and scikit-learn's own
TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)


class FeatureCountError(RequestError):
    """Features of another length than the head learnt from (imagery with another band count)."""


class Classifier(Protocol):
    """What a ClassifierHead uses of a fitted scikit-learn classifier."""

    n_features_in_: int
    classes_: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


class Head(ABC):
    """(N, F) features → (N, C) probabilities."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def n_classes(self) -> int: ...

    @abstractmethod
    def predict(self, feats: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def grown(self) -> Head:
        """This head with one more output, never predicted until a retrain learns it."""

    @abstractmethod
    def to_arrays(self) -> dict[str, np.ndarray]: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    z: np.ndarray = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


class LinearHead(Head):
    """softmax(feats[:, :F] @ kernel + bias), kernel F x C: a network's 1x1 classification layer."""

    kind = "linear"
    #: a grown class starts this far (in logits) below the others: never predicted untrained
    NEW_CLASS_OFFSET = 30.0

    def __init__(self, kernel: np.ndarray, bias: np.ndarray):
        self.kernel = np.asarray(kernel, np.float32)
        self.bias = np.asarray(bias, np.float32)

    @property
    def n_classes(self) -> int:
        n: int = self.kernel.shape[1]
        return n

    def logits(self, feats: np.ndarray) -> np.ndarray:
        return feats[..., : self.kernel.shape[0]] @ self.kernel + self.bias

    def predict(self, feats: np.ndarray) -> np.ndarray:
        return softmax(self.logits(feats))

    def grown(self) -> LinearHead:
        column = self.kernel.mean(axis=1, keepdims=True)
        bias = self.bias.min() - self.NEW_CLASS_OFFSET
        return LinearHead(np.hstack([self.kernel, column]), np.append(self.bias, bias))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"kind": np.array(self.kind), "kernel": self.kernel, "bias": self.bias}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> LinearHead:
        return cls(arrays["kernel"], arrays["bias"])


class ClassifierHead(Head):
    """A fitted scikit-learn classifier (labels are class indices) with `n_classes` outputs."""

    kind = "classifier"

    def __init__(self, classifier: Classifier, n_classes: int, chunk: int = 1 << 16):
        self.classifier = classifier
        self._n_classes = n_classes
        self.chunk = chunk

    @property
    def n_classes(self) -> int:
        return self._n_classes

    def check_features(self, feats: np.ndarray) -> None:
        """FeatureCountError unless `feats` have as many features as the classifier learnt from."""
        expected = self.classifier.n_features_in_
        if feats.shape[-1] != expected:
            raise FeatureCountError(
                f"this model learnt from {expected} features per pixel but the imagery gives"
                f" {feats.shape[-1]}: it was trained on imagery with another band count"
            )

    def predict(self, feats: np.ndarray) -> np.ndarray:
        self.check_features(feats)
        out = np.zeros((len(feats), self.n_classes), np.float32)
        for start in range(0, len(feats), self.chunk):  # bounded temporary memory for large inputs
            part = feats[start : start + self.chunk]
            self._fill(out[start : start + len(part)], part)
        return out

    def _fill(self, out: np.ndarray, part: np.ndarray) -> None:
        """Write the class probabilities of the feature rows `part` into the zeroed rows `out`."""
        seen = np.asarray(self.classifier.classes_, dtype=np.int64)
        out[:, seen] = self.classifier.predict_proba(part)

    def grown(self) -> ClassifierHead:
        return ClassifierHead(self.classifier, self.n_classes + 1, self.chunk)

    def to_arrays(self) -> dict[str, np.ndarray]:
        import skops.io

        blob = np.frombuffer(skops.io.dumps(self.classifier), dtype=np.uint8)
        return {"kind": np.array(self.kind), "skops": blob, "n_classes": np.array(self.n_classes)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ClassifierHead:
        import skops.io

        blob = np.asarray(arrays["skops"], np.uint8).tobytes()
        untrusted = skops.io.get_untrusted_types(data=blob)
        unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
        if unexpected:
            raise ValueError(f"stored classifier holds types this tool does not load: {unexpected}")
        return cls(skops.io.loads(blob, trusted=untrusted), int(arrays["n_classes"]))


class DeferringHead(ClassifierHead):
    """A ClassifierHead whose classifier has one label more than the classes, `defer` ("the
    network's own head knows"). Its probability is handed to `base` (the network's LinearHead over
    the same features), so where the corrections say nothing the map stays the network's."""

    kind = "deferring"

    def __init__(
        self, classifier: Classifier, n_classes: int, base: LinearHead, defer: int, chunk: int = 1 << 16
    ):
        super().__init__(classifier, n_classes, chunk)
        self.base, self.defer = base, defer

    def _fill(self, out: np.ndarray, part: np.ndarray) -> None:
        labels = np.asarray(self.classifier.classes_, dtype=np.int64)
        own = labels != self.defer
        q = self.classifier.predict_proba(part)
        out[:, labels[own]] = q[:, own]
        if not own.all():
            base = self.base.predict(part)
            out[:, : base.shape[1]] += q[:, ~own] * base

    def grown(self) -> DeferringHead:
        return DeferringHead(self.classifier, self.n_classes + 1, self.base.grown(), self.defer, self.chunk)

    def to_arrays(self) -> dict[str, np.ndarray]:
        base = {f"base_{k}": v for k, v in self.base.to_arrays().items() if k != "kind"}
        return {**super().to_arrays(), "kind": np.array(self.kind), "defer": np.array(self.defer), **base}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> DeferringHead:
        plain = ClassifierHead.from_arrays(arrays)
        base = LinearHead(arrays["base_kernel"], arrays["base_bias"])
        return cls(plain.classifier, plain.n_classes, base, int(arrays["defer"]))


HEADS: dict[str, type[LinearHead] | type[ClassifierHead]] = {
    LinearHead.kind: LinearHead,
    ClassifierHead.kind: ClassifierHead,
    DeferringHead.kind: DeferringHead,
}


def head_from_arrays(arrays: Mapping[str, np.ndarray]) -> Head:
    """The head `Head.to_arrays` stored (ValueError for an unknown kind)."""
    kind = str(arrays["kind"])
    if kind not in HEADS:
        raise ValueError(f"unknown head kind {kind!r}")
    return HEADS[kind].from_arrays(arrays)
