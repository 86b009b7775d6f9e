"""Start-up checks with the datasets and models users have, then every endpoint a user touches:
`/datasets`, `/tiles`, `/getInput`, `/predPatch`, a correction + retrain and a `/predTile`. A
configuration mistake is a start-up warning (or a refusal to start), never a 500 later."""

from __future__ import annotations

import base64
import json
import time

import cv2
import mercantile
import numpy as np
import pytest
import rasterio

from tests.conftest import UTM18, InProcessServer, four_tiles, make_geotiff
from tests.http.test_api import call
from web_tool import server
from web_tool.errors import ConfigError
from web_tool.imagery import datasets

X0, Y0 = 500_000, 4_300_000


def small_network(bands=4, classes=4, fixed=None, bn_last=False, seed=0):
    """A tiny real Keras segmentation network of the given shape."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((fixed, fixed, bands))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(classes, 1, name="logits")(x)
    if bn_last:
        x = keras.layers.BatchNormalization()(x)
    return keras.Model(inp, keras.layers.Activation("softmax")(x))


def save(network, path):
    network.save(path)
    return path


def start(tmp_path, model_fn, specs=(), datasets_json=None, model="keras") -> InProcessServer:
    """make_app() of the server's own arguments, answered in-process."""
    argv = ["--model", model, "--model_fn", str(model_fn), "--state_dir", str(tmp_path / "state")]
    argv += [a for spec in specs for a in ("--dataset", spec)]
    if datasets_json is not None:
        argv += ["--datasets_json", str(datasets_json)]
    config = server.build_config(server.parse_args(argv))
    return InProcessServer(server.make_app(config), config)


def write_json(tmp_path, entries) -> str:
    path = tmp_path / "datasets.json"
    path.write_text(json.dumps(entries))
    return path


def png(payload) -> np.ndarray:
    data = base64.b64decode(payload) if isinstance(payload, str) else payload
    return cv2.cvtColor(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA
    )


def centre_extent(info: dict, half: float = 20.0) -> dict:
    x0, y0, x1, y1 = info["bounds_3857"]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return {
        "xmin": cx - half,
        "ymin": cy - half,
        "xmax": cx + half,
        "ymax": cy + half,
        "spatialReference": {"latestWkid": 3857},
    }


def ok(srv, path, body=None, status=200, method=None):
    got, headers, reply = call(srv, path, body, method=method)
    assert got == status, (path, got, reply)
    return reply


def exercise(srv, name: str) -> dict:
    """Every endpoint a user touches, on dataset `name`; each must answer as it should."""
    info = next(d for d in ok(srv, "/datasets") if d["name"] == name)
    ext = centre_extent(info)
    x0, y0, x1, y1 = info["bounds_4326"]
    tile = mercantile.tile((x0 + x1) / 2, (y0 + y1) / 2, 17)
    status, headers, body = call(srv, f"/tiles/{name}/{tile.z}/{tile.x}/{tile.y}.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    get_input = ok(srv, "/getInput", {"extent": ext, "dataset": name})
    n = len(info["classes"])
    patch = ok(
        srv, "/predPatch", {"extent": ext, "dataset": name, "classes": info["classes"], "weights": [1] * n}
    )
    small = {**ext, "xmax": ext["xmin"] + 4, "ymax": ext["ymin"] + 4}
    session = ok(srv, "/sessions", {})["session"]
    ok(srv, "/recordCorrection", {"extent": small, "value": n - 1, "dataset": name, "session": session})
    other = {**small, "xmin": small["xmin"] + 8, "xmax": small["xmax"] + 8}
    ok(srv, "/recordCorrection", {"extent": other, "value": 0, "dataset": name, "session": session})
    ok(srv, "/retrainModel", {"session": session})
    job = ok(srv, "/predTile", {"extent": ext, "dataset": name, "session": session}, status=202)["job"]
    deadline = time.monotonic() + 60
    while (state := ok(srv, f"/jobs/{job}?session={session}"))["state"] not in (  # the session's job
        "done",
        "failed",
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state["state"] == "done", state
    stats = ok(srv, state["outputs"]["stats_json"])
    return {
        "info": info,
        "tile": png(body),
        "input": png(get_input["input_naip"]),
        "patch": patch,
        "stats": stats,
    }


# --- datasets.json mistakes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, words",
    [
        (
            {"paths": ["t"], "band": [1, 2, 3]},
            "unknown key 'band' (did you mean 'bands'?); the valid keys are: paths,",
        ),
        ({"path": ["t"]}, "unknown key 'path' (did you mean 'paths'?)"),
        ({"paths": ["t"], "bands": [0, 1, 2, 3]}, "band numbers start at 1 (got 0)"),
        ({"paths": ["t"], "bands": "1,2,3,4"}, "bands is '1,2,3,4': expected the 1-based source bands"),
        (
            {"paths": ["t"], "classes": [{"name": "W", "colour": "#00f"}]},
            "unknown key 'colour' in classes[0]",
        ),
        ({"paths": ["t"], "scale": {"min": 0}}, 'give both "min" and "max"'),
        ({"paths": ["t"], "resolution": "1 m"}, "resolution is '1 m': expected ground metres per pixel"),
        ({"paths": ["t"], "resolution": 0}, "resolution is 0: expected ground metres per pixel"),
        ({"paths": ["imagry/*.tif"]}, "no raster file matches \"paths\" ['imagry/*.tif']"),
        (["t"], "its settings must be an object"),
    ],
)
def test_a_datasets_json_mistake_skips_that_dataset_with_a_message_naming_it(tmp_path, caplog, entry, words):
    four_tiles(tmp_path / "t")
    path = write_json(tmp_path, {"good": {"paths": ["t"]}, "bad": entry})
    configs = datasets.from_json(path)
    assert [c.name for c in configs] == ["good"]
    assert "skipping dataset 'bad': " in caplog.text and words in caplog.text


def test_a_datasets_json_that_is_not_an_object_is_refused_saying_the_format(tmp_path):
    path = tmp_path / "datasets.json"
    path.write_text('[{"paths": ["t"]}]')
    with pytest.raises(ConfigError, match="must be a JSON object from dataset names to their settings"):
        datasets.from_json(path)


def test_a_misspelt_labels_glob_is_named_not_ignored(tmp_path, caplog):
    four_tiles(tmp_path / "t")
    (config,) = datasets.from_json(write_json(tmp_path, {"d": {"paths": ["t"], "labels": ["lables/*.tif"]}}))
    assert (
        config.label_paths == [] and "\"labels\" entry 'lables/*.tif' matches no raster file" in caplog.text
    )


# --- bad datasets skipped, good ones served ----------------------------------------------------


@pytest.fixture(scope="module")
def model4(tmp_path_factory):
    return save(small_network(), tmp_path_factory.mktemp("m4") / "m4.keras")


def test_bad_datasets_are_skipped_with_one_warning_each_and_the_rest_serve(tmp_path, model4, caplog):
    four_tiles(tmp_path / "good")
    make_geotiff(tmp_path / "rgb" / "ortho.tif", (X0, Y0, X0 + 64, Y0 + 64), bands=3)
    tiles = four_tiles(tmp_path / "vrt")
    import rasterio.shutil

    rasterio.shutil.copy(tiles[0], tmp_path / "broken.vrt", driver="VRT")
    tiles[0].unlink()
    entries = {
        "good": {"paths": ["good"], "default": True},
        "rgb": {"paths": ["rgb"]},
        "typo": {"paths": ["good"], "band": [1, 2, 3, 4]},
        "empty": {"paths": ["nothing/*.tif"]},
        "vrt": {"paths": ["broken.vrt"]},
    }
    srv = start(tmp_path, model4, datasets_json=write_json(tmp_path, entries))
    try:
        assert [d["name"] for d in ok(srv, "/datasets")] == ["good"]
        for name, words in [
            ("rgb", "nothing feeds the model's NIR"),
            ("typo", "unknown key 'band'"),
            ("empty", "nothing/*.tif"),
            ("vrt", "t_00.tif do not exist"),
        ]:
            assert f"skipping dataset '{name}'" in caplog.text and words in caplog.text
        exercise(srv, "good")
        status, _, reply = call(srv, "/tiles/rgb/17/0/0.png")
        assert status == 404 and "unknown dataset 'rgb'; available: good" in reply["error"]
    finally:
        srv.close()


def test_the_server_refuses_to_start_only_when_no_dataset_is_left(tmp_path, model4):
    make_geotiff(tmp_path / "rgb" / "ortho.tif", (X0, Y0, X0 + 64, Y0 + 64), bands=3)
    with pytest.raises(ConfigError, match="no dataset left to serve"):
        start(tmp_path, model4, specs=[str(tmp_path / "rgb")])


# --- band layouts, pixel types and classes, end to end -----------------------------------------


def test_an_rgb_orthophoto_serves_end_to_end_with_a_3_band_model(tmp_path):
    model = save(small_network(bands=3), tmp_path / "rgb_model.keras")
    make_geotiff(tmp_path / "rgb" / "ortho.tif", (X0, Y0, X0 + 128, Y0 + 128), size=(128, 128), bands=3)
    srv = start(tmp_path, model, specs=[f"ortho={tmp_path / 'rgb'}"])
    try:
        seen = exercise(srv, "ortho")
        assert seen["info"]["bands"] == [1, 2, 3]
    finally:
        srv.close()


def test_uint16_imagery_predicts_what_its_8_bit_twin_does_and_shows_a_2_98_cut(tmp_path, model4):
    yy, xx = np.mgrid[0:128, 0:128]
    waves = [(np.sin(xx / (5 + b)) + np.cos(yy / (7 - b)) + 2) / 4 for b in range(4)]  # smooth, 0..1
    data8 = (np.stack(waves) * 255).round().astype(np.uint8)
    data8[:, 0, 0], data8[:, 0, 1] = 0, 255  # both ends present: min/max scaling maps it onto itself
    bounds = (X0, Y0, X0 + 128, Y0 + 128)
    make_geotiff(tmp_path / "u8" / "a.tif", bounds, size=(128, 128), data=data8)
    make_geotiff(
        tmp_path / "u16" / "a.tif", bounds, size=(128, 128), data=data8.astype(np.uint16) * 40, dtype="uint16"
    )
    srv = start(tmp_path, model4, specs=[f"u8={tmp_path / 'u8'}", f"u16={tmp_path / 'u16'}"])
    try:
        eight, sixteen = exercise(srv, "u8"), exercise(srv, "u16")
        hard8, hard16 = png(eight["patch"]["output_hard"]), png(sixteen["patch"]["output_hard"])
        assert (hard8 == hard16).all(axis=-1).mean() > 0.97
        shown = sixteen["input"][..., :3].astype(float)
        assert shown.std() >= eight["input"][..., :3].std() and 100 < shown.mean() < 160  # stretched
        assert (shown == 0).mean() == pytest.approx(0.02, abs=0.015)  # the 2 % cut
    finally:
        srv.close()


def test_a_6_class_model_is_named_the_same_on_the_page_and_in_exports(tmp_path, tiny_dataset_dir, caplog):
    model = save(small_network(classes=6), tmp_path / "six.keras")
    srv = start(tmp_path, model, specs=[f"tiny={tiny_dataset_dir}"])
    try:
        seen = exercise(srv, "tiny")
        names = [f"Class {i}" for i in range(6)]
        assert [c["name"] for c in seen["info"]["classes"]] == names
        assert [row["name"] for row in seen["stats"]["classes"]] == names
        assert "lists 4 classes (Water, Forest, Field, Built) but the model 'six' predicts 6" in caplog.text
    finally:
        srv.close()


def test_a_6_class_dataset_with_a_4_class_model_serves_the_models_classes(tmp_path, model4, caplog):
    four_tiles(tmp_path / "t")
    six = [{"name": n, "color": "#123456"} for n in ("A", "B", "C", "D", "E", "F")]
    srv = start(
        tmp_path, model4, datasets_json=write_json(tmp_path, {"six": {"paths": ["t"], "classes": six}})
    )
    try:
        seen = exercise(srv, "six")  # the page sends the classes /datasets gave it: no 400
        assert len(seen["info"]["classes"]) == 4
        assert "dataset 'six' lists 6 classes" in caplog.text
    finally:
        srv.close()


# --- model files, end to end -----------------------------------------------------------------


def keras2_model(tmp_path):
    from tests.ServerModels.test_keras_io import write_keras2_pair

    write_keras2_pair(tmp_path)
    return tmp_path / "seed"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(keras2_model, id="keras2-json-and-weights"),
        pytest.param(lambda p: save(small_network(bn_last=True), p / "bn.keras"), id="batchnorm-last"),
        pytest.param(lambda p: save(small_network(fixed=32), p / "fixed.keras"), id="fixed-size-32"),
    ],
)
def test_each_kind_of_model_file_serves_end_to_end(tmp_path, tiny_dataset_dir, make):
    srv = start(tmp_path, make(tmp_path), specs=[f"tiny={tiny_dataset_dir}"])
    try:
        seen = exercise(srv, "tiny")
        assert sum(row["pixels"] for row in seen["stats"]["classes"]) > 0
    finally:
        srv.close()


def test_an_unsuitable_model_stops_the_server_saying_why(tmp_path, tiny_dataset_dir):
    import keras

    inp = keras.Input((None, None, 4))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    save(keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x)), tmp_path / "classifier.keras")
    from web_tool.errors import ModelError

    with pytest.raises(ModelError, match="not a segmentation network"):
        start(tmp_path, tmp_path / "classifier.keras", specs=[str(tiny_dataset_dir)])


def test_help_states_the_model_contract(capsys):
    with pytest.raises(SystemExit):
        server.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "The model contract:" in text and "1x1 convolution" in text and "fixed one" in text
    assert "Every dataset and the model are checked against each other before the server listens" in text


def test_statistics_land_in_the_state_folder(tmp_path, model4):
    make_geotiff(tmp_path / "u16" / "a.tif", (X0, Y0, X0 + 64, Y0 + 64), dtype="uint16")
    srv = start(tmp_path, model4, specs=[str(tmp_path / "u16")])
    srv.close()
    assert list((tmp_path / "state" / "imagery").glob("stats-*.json"))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_raster_that_is_not_georeferenced_is_named(tmp_path, model4, caplog):
    four_tiles(tmp_path / "t")
    with rasterio.open(
        tmp_path / "t" / "plain.tif", "w", driver="GTiff", width=8, height=8, count=4, dtype="uint8"
    ) as dst:
        dst.write(np.ones((4, 8, 8), np.uint8))
    srv = start(tmp_path, model4, specs=[str(tmp_path / "t")])
    srv.close()
    assert "skipping " + str(tmp_path / "t" / "plain.tif") + ": it has no CRS" in caplog.text
    assert UTM18  # the other four files serve
