"""Datasets across 180° and near the poles: sensible bounds, and /tiles, /predPatch, /predTile that
work there or refuse in the user's terms."""

from __future__ import annotations

import mercantile
import numpy as np
import pytest
import rasterio

from tests.conftest import make_geotiff
from tests.http.test_api import call
from tests.test_startup import centre_extent, exercise, ok, png, save, small_network, start
from web_tool.DataLoader import DataLoader
from web_tool.imagery.datasets import DatasetConfig

#: UTM 60N easting/northing of longitude 180° at 45° N
E180, N45 = 736_446.0, 4_987_329.5
WORLD = mercantile.xy(180, 0)[0]


def across_180(folder, half: float = 64) -> str:
    """A 1 m UTM 60N raster 2*half m wide, centred on the antimeridian."""
    bounds = (E180 - half, N45 - half, E180 + half, N45 + half)
    size = int(2 * half)
    make_geotiff(folder / "fiji.tif", bounds, crs=32660, size=(size, size))
    return str(folder)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save(small_network(), tmp_path_factory.mktemp("model") / "m.keras")


def test_bounds_across_the_antimeridian_are_a_small_box_not_the_globe(tmp_path):
    loader = DataLoader(DatasetConfig("fiji", [f"{across_180(tmp_path)}/fiji.tif"]))
    info = loader.describe()
    west, south, east, north = info["bounds_4326"]
    assert 179.99 < west < 180 < east < 180.01 and south < north
    x0, _, x1, _ = info["bounds_3857"]
    assert x0 < WORLD < x1 and x1 - x0 < 300  # ~128 m on the ground, stretched by mercator at 45°


def test_every_endpoint_works_across_the_antimeridian(tmp_path, model):
    srv = start(tmp_path, model, specs=[f"fiji={across_180(tmp_path, 96)}"])
    try:
        seen = exercise(srv, "fiji")  # its extent is centred on x = 180° (beyond the world's edge)
        assert (seen["input"][..., 3] == 255).all()  # imagery on both sides of 180°
        assert sum(row["pixels"] for row in seen["stats"]["classes"]) > 0.95 * 40 * 40 / 1.42**2
        for lon in (179.9995, -179.9995):  # tiles either side: one at the east edge, one at the west
            t = mercantile.tile(lon, 45.0, 19)
            status, _, body = call(srv, f"/tiles/fiji/{t.z}/{t.x}/{t.y}.png")
            assert status == 200 and (png(body)[..., 3] == 255).mean() > 0.3, lon
    finally:
        srv.close()


def test_a_pred_tile_centred_on_180_maps_both_halves(tmp_path, model):
    srv = start(tmp_path, model, specs=[f"fiji={across_180(tmp_path)}"])
    try:
        info = ok(srv, "/datasets")[0]
        ext = centre_extent(info, half=40)
        job = ok(srv, "/predTile", {"extent": ext, "dataset": "fiji"}, status=202)["job"]
        from tests.mapping.test_jobs_api import wait_for

        done = wait_for(srv, job)
        assert done["state"] == "done", done
        status, _, data = call(srv, done["outputs"]["cog"])
        (tmp_path / "map.tif").write_bytes(data)
        with rasterio.open(tmp_path / "map.tif") as src:
            classes = src.read(1)
            xs = src.transform.c + src.transform.a * (np.arange(src.width) + 0.5)
        mapped = classes != 255
        west, east = xs < E180, xs > E180
        assert (
            mapped[:, west].mean() > 0.8 and mapped[:, east].mean() > 0.8
        )  # the AOI is a 3857 box: rotated here
    finally:
        srv.close()


def test_a_patch_given_in_degrees_across_180_is_read_not_refused(tmp_path, model):
    srv = start(tmp_path, model, specs=[f"fiji={across_180(tmp_path)}"])
    try:
        ext = {
            "xmin": 179.9997,
            "ymin": 44.9997,
            "xmax": 180.0003,
            "ymax": 45.0003,
            "spatialReference": {"latestWkid": 4326},
        }
        reply = ok(srv, "/predPatch", {"extent": ext})
        assert (png(reply["input_naip"])[..., 3] == 255).all()
    finally:
        srv.close()


# --- the poles -------------------------------------------------------------------------------


def polar(folder, name, bounds, size=(64, 64)) -> str:
    make_geotiff(folder / name, bounds, crs=3413, size=size)
    return str(folder / name)


def test_a_polar_raster_is_cut_at_the_web_maps_edge_and_served_below_it(tmp_path, model):
    # around the North Pole, 2400 km across: reaches 78° N at its edges, the pole in its middle
    path = polar(tmp_path / "arctic", "cap.tif", (-1_200_000, -1_200_000, 1_200_000, 1_200_000), (240, 240))
    info = DataLoader(DatasetConfig("cap", [path])).describe()
    assert info["bounds_4326"][3] == pytest.approx(85.0511, abs=1e-3)
    assert info["bounds_4326"][0] == -180 and info["bounds_4326"][2] == 180
    srv = start(tmp_path, model, specs=[f"cap={tmp_path / 'arctic'}"])
    try:
        t = mercantile.tile(-45, 80, 6)
        status, _, body = call(srv, f"/tiles/cap/{t.z}/{t.x}/{t.y}.png")
        assert status == 200 and (png(body)[..., 3] == 255).mean() > 0.5
        x, y = mercantile.xy(-45, 80)
        ext = {"xmin": x - 20_000, "ymin": y - 20_000, "xmax": x + 20_000, "ymax": y + 20_000}
        reply = ok(srv, "/predPatch", {"extent": ext})
        assert (png(reply["input_naip"])[..., 3] == 255).mean() > 0.9
        beyond = {"xmin": -1, "ymin": 85.5, "xmax": 1, "ymax": 86, "spatialReference": {"latestWkid": 4326}}
        status, _, reply = call(srv, "/predPatch", {"extent": beyond})
        assert status == 400 and "85.05" in reply["error"] and "web map" in reply["error"]
    finally:
        srv.close()


def test_a_raster_beyond_the_web_maps_latitudes_is_skipped_saying_so(tmp_path, caplog):
    far_north = polar(tmp_path, "pole.tif", (-200_000, -200_000, 200_000, 200_000))  # within 1.8° of the pole
    from web_tool.errors import ConfigError

    with pytest.raises(ConfigError):
        DataLoader(DatasetConfig("pole", [far_north]))
    assert "beyond 85.05° latitude, which web maps (EPSG:3857) cannot show" in caplog.text


def test_a_geographic_raster_with_longitudes_beyond_180_reads_on_both_sides(tmp_path):
    from web_tool.geometry import Extent
    from web_tool.rendering.imagery_tiles import tile_grid

    path = make_geotiff(tmp_path / "g.tif", (179.999, 44.999, 180.001, 45.001), crs=4326, size=(64, 64))
    loader = DataLoader(DatasetConfig("g", [str(path)]))
    assert loader.describe()["bounds_4326"] == pytest.approx([179.999, 44.999, 180.001, 45.001])
    _, y = mercantile.xy(180, 45)
    unwrapped = loader.read(loader.grid_for(Extent(WORLD - 30, y - 30, WORLD + 30, y + 30)))
    assert unwrapped.valid.all()
    for lon in (179.9995, -179.9995):
        t = mercantile.tile(lon, 45.0, 19)
        assert loader.read(tile_grid(t.z, t.x, t.y)).valid.all(), lon
