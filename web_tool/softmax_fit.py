"""Softmax regression of a model head, solved exactly: the heart of `last_layer` fine-tuning.

The problem is small (F+1 features x C classes) and convex, so Newton's method reaches its optimum
in a handful of full-batch steps. The linear algebra runs single-threaded: on a busy machine with
few cores, OpenBLAS threads that spin for work make a 100 x 100 solve take 100 ms instead of 0.3.
"""

from __future__ import annotations

import ctypes
import glob
import os
from contextlib import contextmanager
from functools import lru_cache

import numpy as np


def fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
             ref: tuple[np.ndarray, np.ndarray], l2: float | np.ndarray = 1.0, iterations: int = 25,
             ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Weighted softmax regression with a pull toward a reference head:

        (kernel, bias) = argmin  sum_i w_i CE(y_i, softmax(x_i kernel + bias)) + l2 |[kernel; bias] - ref|^2

    `l2` is one number or one per class. Features are scaled to unit RMS first (so `l2` means the
    same for any network). The problem is convex and small (F+1 x C parameters), so Newton's method
    with a backtracking line search, started from (kernel, bias), reaches its optimum in a few
    full-batch steps.
    """
    n_classes = kernel.shape[1]
    scale = np.sqrt((x**2).mean(axis=0)) + 1e-6
    xs = np.hstack([x / scale, np.ones((len(x), 1))])  # the bias is a weight on a constant feature
    params = np.vstack([kernel * scale[:, None], bias[None]]).astype(np.float64)
    anchor = np.vstack([ref[0] * scale[:, None], ref[1][None]]).astype(np.float64)
    target = np.eye(n_classes)[y]
    w = w[:, None].astype(np.float64)
    l2 = np.broadcast_to(np.asarray(l2, np.float64), (n_classes,))

    def objective(p):
        logp = _log_softmax(xs @ p)
        return -(w * target * logp).sum() + (l2 * (p - anchor) ** 2).sum()

    with single_threaded_blas():
        params = _newton(xs, target, w, params, anchor, l2, objective, iterations)
    return (params[:-1] / scale[:, None]).astype(np.float32), params[-1].astype(np.float32)


def _newton(xs, target, w, params, anchor, l2, objective, iterations: int) -> np.ndarray:
    n_classes = target.shape[1]
    for _ in range(iterations):
        probs = np.exp(_log_softmax(xs @ params))
        grad = xs.T @ (w * (probs - target)) + 2 * l2 * (params - anchor)
        hessian = _hessian(xs, probs, w[:, 0], ridge=np.repeat(2 * l2, xs.shape[1]))
        step = np.linalg.solve(hessian, grad.T.reshape(-1)).reshape(n_classes, -1).T
        rate, current = 1.0, objective(params)
        while rate > 1e-4 and objective(params - rate * step) > current - 1e-4 * rate * (grad * step).sum():
            rate /= 2
        params -= rate * step
        if np.abs(rate * step).max() < 1e-7:
            break
    return params


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _hessian(
    xs: np.ndarray, probs: np.ndarray, w: np.ndarray, ridge: np.ndarray, chunk: int = 1024
) -> np.ndarray:
    """Hessian of fit_head's objective (`ridge`: the L2 term's diagonal), parameters class by class.

    Block (a, b) is X^T diag(w (p_a [a = b] - p_a p_b)) X; all blocks come from one product of the
    per-sample class weights with the per-sample outer products x x^T (built a chunk at a time).
    """
    (n, f), c = xs.shape, probs.shape[1]
    h = np.zeros((c * c, f * f))
    for start in range(0, n, chunk):
        x, p, ww = xs[start : start + chunk], probs[start : start + chunk], w[start : start + chunk]
        s = ww[:, None, None] * (np.eye(c)[None] * p[:, :, None] - p[:, :, None] * p[:, None, :])
        h += s.reshape(len(x), c * c).T @ (x[:, :, None] * x[:, None, :]).reshape(len(x), f * f)
    h = h.reshape(c, c, f, f).transpose(0, 2, 1, 3).reshape(c * f, c * f)
    h[np.diag_indices(c * f)] += ridge
    return h


@lru_cache(maxsize=1)
def _openblas_threads_local():
    """OpenBLAS's per-thread `openblas_set_num_threads_local` (numpy's bundled copy), or None."""
    for path in glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*")):
        try:
            function = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
        return function
    return None


@contextmanager
def single_threaded_blas():
    """Run numpy's linear algebra in the calling thread only, for the duration of the block."""
    set_local = _openblas_threads_local()
    if set_local is None:
        yield
        return
    previous = set_local(1)
    try:
        yield
    finally:
        set_local(previous)
