"""Prediction tiles (`GET /predTiles/...`): the session's model as XYZ tiles, cached per model version,
without seams, recoloured without the model, coarser zooms without a full-resolution read."""

from __future__ import annotations

import cv2
import mercantile
import numpy as np
import pytest
import requests
from rasterio.warp import transform

from tests.conftest import InProcessServer, build_app, make_geotiff
from tests.hitl_support import X0, Y0, correct_box, post
from web_tool.rendering.images import hex_to_rgb
from web_tool.rendering.prediction_tiles import BLOCK_LEVELS, BLOCK_PX, BlockCache, native_zoom, predict_block

pytestmark = pytest.mark.slow


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"] == "image/png"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)


@pytest.fixture(scope="module")
def srv(scene, stripes_model, tmp_path_factory):
    app, config = build_app([f"stripes={scene}"], stripes_model, tmp_path_factory.mktemp("tiles_state"))
    server = InProcessServer(app, config)
    server.tiles = app.config["landcover.pred_tiles"]
    yield server
    server.close()


def scene_tile(z: int) -> mercantile.Tile:
    lon, lat = transform("EPSG:32618", "EPSG:4326", [X0 + 64], [Y0 + 64])
    return mercantile.tile(lon[0], lat[0], z)


def get_tile(srv, z: int, tile=None, **query) -> requests.Response:
    t = tile or scene_tile(z)
    return srv.get(f"/predTiles/stripes/{z}/{t.x}/{t.y}.png", params=query, timeout=120)


def test_native_zoom_is_the_zoom_nearest_the_imagery_resolution():
    assert native_zoom(1.0, 38.9) == 17  # z17 pixels are 0.93 m there
    assert native_zoom(0.6, 47.0) == 17  # 0.81 m beats z18's 0.41 m
    assert native_zoom(10.0, 0.0) == 14  # 9.6 m
    assert native_zoom(1.0, 0.0) == 17


def test_native_tile_shows_the_models_classes_and_a_second_request_runs_no_model(srv):
    cache = srv.tiles.cache
    before = cache.computed
    image = png(get_tile(srv, 17))
    assert cache.computed == before + 1  # one block predicted, however many tiles it holds
    opaque = image[..., 3] > 0
    assert opaque.sum() > 1000  # the scene covers part of the tile; the rest is transparent
    palette = [hex_to_rgb(c) for c in ("#0000FF", "#008000", "#80FF80", "#806060")]
    colours = {tuple(int(v) for v in px) for px in image[opaque][:, :3]}
    assert colours <= set(palette) and len(colours) >= 3  # hard output: class colours, the stripes
    png(get_tile(srv, 17))
    assert cache.computed == before + 1
    neighbour = scene_tile(17)
    png(get_tile(srv, 17, tile=mercantile.Tile(neighbour.x ^ 1, neighbour.y, 17)))  # same block
    assert cache.computed == before + 1


def test_colours_weights_and_style_rerender_without_running_the_model(srv):
    png(get_tile(srv, 17))
    cache = srv.tiles.cache
    before = cache.computed
    hard = png(get_tile(srv, 17))
    red = png(get_tile(srv, 17, colors="ff0000"))  # the first class red, the others the model's
    water = (hard[..., :3] == hex_to_rgb("#0000FF")).all(axis=-1) & (hard[..., 3] > 0)
    assert water.any()
    assert (red[water][:, :3] == (255, 0, 0)).all()
    assert (red[~water] == hard[~water]).all()
    no_water = png(get_tile(srv, 17, weights="0,1,1,1"))
    assert not ((no_water[..., :3] == hex_to_rgb("#0000FF")).all(axis=-1) & (no_water[..., 3] > 0)).any()
    soft = png(get_tile(srv, 17, style="soft"))
    assert (soft[..., 3] == hard[..., 3]).all() and not (soft == hard).all()
    uncertain = png(get_tile(srv, 17, style="uncertainty"))
    assert uncertain[..., 3].max() > 0
    assert cache.computed == before


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"style": "pretty"}, "style must be one of"),
        ({"colors": "ff0000,00ff00,0000ff,ffffff,000000"}, "colors has 5 entries"),
        ({"colors": "zzz"}, "not of the form"),
        ({"weights": "1,1"}, "weights must be 4"),
        ({"weights": "0,0,0,0"}, "weights must be 4"),
        ({"weights": "a,b,c,d"}, "weights must be numbers"),
    ],
)
def test_bad_style_parameters_are_refused_in_words(srv, query, words):
    r = get_tile(srv, 17, **query)
    assert r.status_code == 400 and words in r.json()["error"]


def test_unknown_tiles_datasets_and_sessions_are_json_errors(srv):
    assert srv.get("/predTiles/stripes/3/9/0.png", timeout=30).status_code == 400
    assert srv.get("/predTiles/nope/17/0/0.png", timeout=30).status_code == 404
    r = get_tile(srv, 17, session="0123456789abcdef")
    assert r.status_code == 404 and "session" in r.json()["error"]


def test_coarser_zooms_never_predict_and_show_what_is_cached(srv):
    session = post(srv, "/sessions")["session"]
    post(srv, "/addClass", {"session": session, "name": "Wetland", "color": "#00aaaa"})  # its own model
    cache = srv.tiles.cache
    zb = 17 - BLOCK_LEVELS
    before = cache.computed
    coarse = png(get_tile(srv, zb - 1, session=session))
    assert cache.computed == before and coarse[..., 3].max() == 0  # nothing predicted there yet
    assert png(get_tile(srv, 10, session=session))[..., 3].max() == 0  # far too coarse: transparent
    png(get_tile(srv, zb, session=session))  # the block tile: predicted (one block)
    assert cache.computed == before + 1
    coarse = png(get_tile(srv, zb - 1, session=session))
    assert cache.computed == before + 1 and coarse[..., 3].max() == 255  # composed from the cache


def test_fresh_sessions_share_the_base_models_blocks(srv):
    png(get_tile(srv, 17))
    before = srv.tiles.cache.computed
    for _ in range(2):
        session = post(srv, "/sessions")["session"]
        r = get_tile(srv, 17, session=session)
        assert r.headers["X-Model-Version"] == "0"
    assert srv.tiles.cache.computed == before


def test_retrain_undo_and_reset_repaint_and_drop_the_old_versions_blocks(srv):
    session = post(srv, "/sessions")["session"]
    cache = srv.tiles.cache
    first = get_tile(srv, 17, session=session)
    version = int(first.headers["X-Model-Version"])
    assert version == 0 and any(k[0] == "base" for k in cache.keys())
    for y in range(8, 120, 8):  # the Field stripe (64..96 m) labelled Water
        correct_box(srv, 0, 70, y, size=20, session=session)
    post(srv, "/retrainModel", {"session": session})
    retrained = get_tile(srv, 17, session=session)
    assert int(retrained.headers["X-Model-Version"]) > version
    assert not (png(retrained) == png(first)).all()
    retrained_version = int(retrained.headers["X-Model-Version"])
    post(srv, "/doUndo", {"session": session})
    undone = get_tile(srv, 17, session=session)
    assert int(undone.headers["X-Model-Version"]) > retrained_version
    assert (png(undone) == png(first)).all()
    assert not any(k[0] == session and k[1] == retrained_version for k in cache.keys())  # dropped
    post(srv, "/resetModel", {"session": session})
    reset = get_tile(srv, 17, session=session)
    assert int(reset.headers["X-Model-Version"]) > int(undone.headers["X-Model-Version"])
    assert len([k for k in cache.keys() if k[0] == session]) == 1


def test_browser_may_keep_a_tile_only_when_its_url_names_the_current_version(srv):
    r = get_tile(srv, 17)
    version = r.headers["X-Model-Version"]
    assert r.headers["Cache-Control"] == "no-store"
    assert get_tile(srv, 17, v=version).headers["Cache-Control"].startswith("private, max-age=")


def test_a_request_whose_client_left_predicts_nothing():
    cache = BlockCache()
    assert cache.get(("s", 1, "d", 0, 0), lambda: pytest.fail("predicted"), cancelled=lambda: True) is None
    assert cache.computed == 0 and len(cache) == 0


def test_cache_memory_is_bounded():
    from web_tool.rendering.prediction_tiles import Block

    block = Block(np.zeros((BLOCK_PX, BLOCK_PX, 4), np.uint8), np.zeros((256, 256, 4), np.uint8))
    cache = BlockCache(max_bytes=3 * block.nbytes)
    for i in range(10):
        cache.get(("s", 1, "d", i, 0), lambda: block, cancelled=lambda: False)
    assert len(cache) == 3 and [k[3] for k in cache.keys()] == [7, 8, 9]


def test_tiles_of_neighbouring_blocks_do_not_seam(tmp_path, stripes_model):
    """Two adjacent blocks, each predicted with its own context, agree at their shared edge with one
    prediction of both blocks at once."""
    from affine import Affine

    from web_tool.DataLoader import DataLoader
    from web_tool.geometry import WEB_MERCATOR, Grid
    from web_tool.imagery.datasets import from_cli
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    zb = 15
    left, right = mercantile.Tile(9370, 12536, zb), mercantile.Tile(9371, 12536, zb)
    lb = mercantile.xy_bounds(*left)
    rng = np.random.default_rng(3)
    data = rng.integers(1, 255, (4, 64, 64), dtype=np.uint8).repeat(8, axis=1).repeat(8, axis=2)
    bounds = (lb.right - 300, lb.top - 400, lb.right + 300, lb.top - 100)
    make_geotiff(tmp_path / "m.tif", bounds, crs="EPSG:3857", size=(512, 512), data=data)
    loader = DataLoader(from_cli([str(tmp_path / "m.tif")])[0])
    classes = [{"name": str(i), "color": "#000000"} for i in range(4)]
    model = KerasSegmentationModel(stripes_model, classes=classes)
    a, b = (predict_block(loader, model, zb, t.x, t.y) for t in (left, right))
    px = (lb.right - lb.left) / BLOCK_PX
    # one pass over the 256 px either side of the edge (one window of the model: no tiling)
    across = Grid(WEB_MERCATOR, Affine(px, 0, lb.right - 256 * px, 0, -px, lb.top), 512, BLOCK_PX)
    pad = model.padding
    whole = model.predict(loader.read(across.padded(pad)).data)[pad:-pad, pad:-pad]
    rows = slice(int(120 / px), int(380 / px))  # inside the imagery, away from its top and bottom
    seam = np.concatenate([a.probs[rows, -48:], b.probs[rows, :48]], axis=1).astype(np.float32) / 255
    diff = np.abs(whole[rows, 256 - 48 : 256 + 48] - seam).max(axis=-1)
    assert diff.max() < 0.01
