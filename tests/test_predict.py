"""/predPatch predicts on the dataset's own pixels: the model sees the imagery unresampled (as the
corrections it learns from do), and each pixel of the web map's grid shows the class predicted at
the dataset pixel under it."""

from __future__ import annotations

import numpy as np
from conftest import UTM18
from hitl_support import decode_png
from rasterio.warp import transform as warp_transform

from web_tool.DataLoader import DataLoader
from web_tool.datasets import from_cli
from web_tool.geometry import WEB_MERCATOR, Extent
from web_tool.predict import pred_patch
from web_tool.rendering import class_colors
from web_tool.ServerModels.keras_model import KerasSegmentationModel

COLORS = ("#ff0000", "#00ff00", "#0000ff", "#ffff00")
CLASSES = [{"name": str(i), "color": c} for i, c in enumerate(COLORS)]


def test_the_map_shows_at_each_web_pixel_the_class_predicted_at_the_dataset_pixel_under_it(
    tiny_dataset_dir, tiny_model_path
):
    loader = DataLoader(from_cli([str(tiny_dataset_dir)])[0])
    model = KerasSegmentationModel(tiny_model_path, CLASSES)
    extent = Extent(500_030.0, 4_300_030.0, 500_098.0, 4_300_098.0, crs=UTM18).to_crs(WEB_MERCATOR)
    web = loader.grid_for(extent)
    on = loader.model_grid(web)
    assert on.crs == UTM18 and on.transform.a == 1.0 and float(on.transform.c).is_integer()  # the lattice

    hard = decode_png(pred_patch(loader, model, extent, classes=CLASSES)["output_hard"])

    pad = model.padding
    native = model.predict(loader.read(on.padded(pad)).data)[pad:-pad, pad:-pad].argmax(axis=-1)
    rows, cols = np.mgrid[: web.height, : web.width] + 0.5
    xs, ys = web.transform * (cols.ravel(), rows.ravel())
    ux, uy = warp_transform(WEB_MERCATOR, UTM18, xs, ys)
    c, r = ~on.transform * (np.array(ux), np.array(uy))
    expected = class_colors(CLASSES)[native[r.astype(int), c.astype(int)]].reshape(web.height, web.width, 3)
    assert hard.shape[:2] == web.shape
    same = (hard[..., :3] == expected).all(axis=-1)
    assert same.mean() > 0.995  # all but pixel centres within rounding of a dataset pixel's edge
