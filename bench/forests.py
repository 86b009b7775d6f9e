"""Two tools that need no pretrained model, as baselines: random forests on per-pixel features.

- `bands_ndvi`: the four bands and NDVI of each pixel (5 features);
- `filter_bank`: ilastik's pixel-classification features on each of the four bands, at sigmas
  0.7, 1.0, 1.6, 3.5, 5.0 and 10.0 (48 per band, 192 in all): Gaussian smoothing, Gaussian
  gradient magnitude, Laplacian of Gaussian, difference of Gaussians (sigma minus 0.66 sigma),
  structure-tensor eigenvalues (gradient at sigma, averaged at sigma / 2, as ilastik does) and
  Hessian-of-Gaussian eigenvalues; computed on each patch with reflect padding (scipy.ndimage).

`PixelForest` fits scikit-learn's RandomForestClassifier (100 trees, seeded) on the clicked
pixels of the patches and predicts every pixel of every patch.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.ensemble import RandomForestClassifier

SIGMAS = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
N_TREES = 100


def bands_ndvi(image: np.ndarray) -> np.ndarray:
    """HxWx5 float32: R, G, B, NIR and NDVI."""
    x = image.astype(np.float32)
    red, nir = x[..., 0], x[..., 3]
    ndvi = (nir - red) / np.maximum(nir + red, 1.0)
    return np.dstack([x, ndvi])


def eigenvalues(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Larger and smaller eigenvalue of the symmetric 2x2 matrices [[a, b], [b, c]]."""
    mean, root = (a + c) / 2, np.sqrt(((a - c) / 2) ** 2 + b**2)
    return mean + root, mean - root


def band_features(band: np.ndarray, sigma: float) -> list[np.ndarray]:
    """The eight ilastik features of one band at one scale."""

    def gauss(x, s, order=0):
        return ndimage.gaussian_filter(x, s, order=order, mode="reflect")

    smooth = gauss(band, sigma)
    grad_mag = ndimage.gaussian_gradient_magnitude(band, sigma, mode="reflect")
    log = ndimage.gaussian_laplace(band, sigma, mode="reflect")
    dog = smooth - gauss(band, 0.66 * sigma)
    gy, gx = gauss(band, sigma, (1, 0)), gauss(band, sigma, (0, 1))
    st = eigenvalues(gauss(gx * gx, sigma / 2), gauss(gx * gy, sigma / 2), gauss(gy * gy, sigma / 2))
    hessian = eigenvalues(gauss(band, sigma, (0, 2)), gauss(band, sigma, (1, 1)), gauss(band, sigma, (2, 0)))
    return [smooth, grad_mag, log, dog, *st, *hessian]


def filter_bank(image: np.ndarray) -> np.ndarray:
    """HxWx(48 x bands) float32: ilastik's filter bank on every band of `image`."""
    bands = image.astype(np.float32)
    planes = [f for b in range(bands.shape[-1]) for s in SIGMAS for f in band_features(bands[..., b], s)]
    return np.dstack(planes).astype(np.float32)


FEATURES = {"RF bands+NDVI": bands_ndvi, "RF filter bank": filter_bank}


class PixelForest:
    """A random forest on one feature stack per patch (HxWxF each)."""

    def __init__(self, features: list[np.ndarray], seed: int = 0):
        self.features = features
        self.forest = RandomForestClassifier(n_estimators=N_TREES, random_state=seed, n_jobs=-1)

    def fit(self, clicks) -> PixelForest:
        """Learn from clicks (anything with .patch, .row, .col, .value)."""
        x = np.stack([self.features[k.patch][k.row, k.col] for k in clicks])
        self.forest.fit(x, [k.value for k in clicks])
        return self

    def predict(self) -> list[np.ndarray]:
        """Class index per pixel of every patch."""
        out = []
        for f in self.features:
            h, w, n = f.shape
            out.append(self.forest.predict(f.reshape(-1, n)).reshape(h, w).astype(np.int16))
        return out
