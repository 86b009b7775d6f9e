"""The imagery's own per-pixel features: a multi-scale filter bank, as ilastik's pixel classifier uses.

Colour at several scales (each band, and NDVI where there is a near-infrared band, smoothed with
Gaussians), and texture of the brightness and of the NIR band (local standard deviation, gradient
magnitude, Laplacian of Gaussian and Hessian eigenvalues: edges, blobs and ridges such as roads).
Any band count works: bands 1-3 are taken as R, G, B and band 4 as NIR when present, the order
every dataset maps its bands to.

Every filter reaches at most CONTEXT pixels away, so a pixel with that much real imagery around it
gets the same features in any patch or window: predictions do not seam at patch edges.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Gaussian scales (px) of the colour features
COLOUR_SIGMAS = (1.6, 5.0, 10.0)
#: scales of the local standard deviation and Laplacian of Gaussian
TEXTURE_SIGMAS = (1.6, 5.0)
#: scales of the gradient magnitude
GRADIENT_SIGMAS = (1.0, 3.5)
#: scale of the Hessian (ridges: roads, field edges)
HESSIAN_SIGMA = 1.6
#: pixels of real context every feature needs (3 sigma of the largest Gaussian)
CONTEXT = 30


def n_features(n_bands: int) -> int:
    """How many features filter_bank gives an image of `n_bands` bands."""
    colour = n_bands + (1 if n_bands >= 4 else 0)
    texture_channels = 2 if n_bands >= 4 else 1
    per_texture = 2 * len(TEXTURE_SIGMAS) + len(GRADIENT_SIGMAS) + 2
    return colour * (1 + len(COLOUR_SIGMAS)) + texture_channels * per_texture


def filter_bank(image: np.ndarray) -> np.ndarray:
    """HxWxB uint8 (or any numeric type scaled 0-255) → HxWxK float32 features (K = n_features(B))."""
    x = image.astype(np.float32) / 255.0
    colour = [x]
    if x.shape[-1] >= 4:
        red, nir = x[..., 0], x[..., 3]
        colour.append(((nir - red) / (nir + red + 1e-3))[..., None])
    channels = np.concatenate(colour, axis=-1)
    out = [channels] + [_blur(channels, s) for s in COLOUR_SIGMAS]
    brightness = x[..., : min(3, x.shape[-1])].mean(axis=-1)
    for c in [brightness] + ([x[..., 3]] if x.shape[-1] >= 4 else []):
        out.append(_texture(np.ascontiguousarray(c)))
    return np.concatenate(out, axis=-1)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    out = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return out if out.ndim == x.ndim else out[..., None]


def _texture(c: np.ndarray) -> np.ndarray:
    """HxW channel → HxWx(2 len(TEXTURE_SIGMAS) + len(GRADIENT_SIGMAS) + 2) texture features."""
    feats = []
    for s in TEXTURE_SIGMAS:
        mean = _blur(c, s)
        feats.append(np.sqrt(np.maximum(_blur(c * c, s) - mean * mean, 0.0)))  # local std
        feats.append(cv2.Laplacian(mean, cv2.CV_32F) * s * s)  # scale-normalised LoG
    for s in GRADIENT_SIGMAS:
        g = _blur(c, s)
        gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0) / 8, cv2.Sobel(g, cv2.CV_32F, 0, 1) / 8
        feats.append(np.sqrt(gx * gx + gy * gy) * s)
    g = _blur(c, HESSIAN_SIGMA)
    hxx, hyy = cv2.Sobel(g, cv2.CV_32F, 2, 0), cv2.Sobel(g, cv2.CV_32F, 0, 2)
    hxy = cv2.Sobel(g, cv2.CV_32F, 1, 1) / 4
    half_trace, root = (hxx + hyy) / 2, np.sqrt(((hxx - hyy) / 2) ** 2 + hxy**2)
    s2 = HESSIAN_SIGMA**2
    feats += [(half_trace + root) * s2, (half_trace - root) * s2]
    return np.stack(feats, axis=-1)
