"""The real NAIP samples from ../shared (UTM 14N, 5 m, nodata 0): read, tiled and predicted."""

import numpy as np
import pytest

from tests.conftest import NAIP_DIR
from tests.http.test_api import call, decode_png
from web_tool.DataLoader import DataLoader
from web_tool.geometry import WEB_MERCATOR, Extent
from web_tool.imagery.datasets import from_cli

pytestmark = [
    pytest.mark.naip,
    pytest.mark.skipif(not NAIP_DIR.exists(), reason="../shared/data/naip-nd is absent"),
]


@pytest.fixture
def naip_loader():
    (config,) = from_cli([f"naip2018={NAIP_DIR / 'm_4709963_se_14_1_20180716.tif'}"])
    return DataLoader(config)


def test_naip_sample_is_indexed_in_its_own_crs_at_5_m(naip_loader):
    info = naip_loader.describe()
    assert info["crs"] == "EPSG:26914" and info["resolution"] == pytest.approx(5.0)
    west, south, east, north = info["bounds_4326"]
    assert -99.2 < west < east < -99.1 and 47.0 < south < north < 47.1


def test_naip_patch_in_web_mercator_has_real_texture_and_vegetation_nir(naip_loader):
    c = naip_loader.extent_3857
    cx, cy = (c.xmin + c.xmax) / 2, (c.ymin + c.ymax) / 2
    ext = Extent(cx - 1000, cy - 1000, cx + 1000, cy + 1000, crs=WEB_MERCATOR)
    patch = naip_loader.read(naip_loader.grid_for(ext))
    # 2000 m of mercator at 47 N is ~1360 m of ground: ~272 px at 5 m
    assert 260 <= patch.data.shape[0] <= 285
    assert patch.valid.all()
    r, nir = patch.data[..., 0].astype(float), patch.data[..., 3].astype(float)
    assert patch.data.std() > 10 and nir.mean() > r.mean()


def test_naip_is_served_and_predicted_over_http(tmp_path, tiny_model_path):
    from tests.conftest import InProcessServer, build_app

    app, config = build_app([str(NAIP_DIR)], tiny_model_path, tmp_path)
    server = InProcessServer(app, config)
    try:
        ext = config.loaders["naip-nd"].extent_3857
        cx, cy = (ext.xmin + ext.xmax) / 2, (ext.ymin + ext.ymax) / 2
        body = {"extent": {"xmin": cx - 500, "xmax": cx + 500, "ymin": cy - 500, "ymax": cy + 500}}
        status, _, out = call(server, "/predPatch", body)
        assert status == 200, out
        assert decode_png(out["output_hard"]).shape == decode_png(out["input_naip"]).shape
        # along the file's edge, nodata (0) pixels are transparent in the input image
        edge = {"xmin": ext.xmin - 300, "xmax": ext.xmin + 300, "ymin": cy - 300, "ymax": cy + 300}
        status, _, out = call(server, "/getInput", {"extent": edge})
        alpha = decode_png(out["input_naip"])[..., 3]
        assert status == 200 and (alpha == 0).any() and (alpha == 255).any()
        assert np.unique(alpha).size == 2
    finally:
        server.close()
