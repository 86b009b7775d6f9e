"""Imagery read where it lives: a COG over HTTP range requests, s3:// and gs:// through GDAL's /vsi
handlers, in the batch CLI and in the server; local rasters keep their side-car files."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import box, mapping

from tests.conftest import UTM18, InProcessServer, build_app, make_geotiff
from web_tool import batch
from web_tool.DataLoader import DataLoader
from web_tool.geometry import WEB_MERCATOR, Extent
from web_tool.imagery.datasets import DatasetConfig, from_cli, from_json, remote_path

X0, Y0 = 500_000, 4_300_000
COG_SIDE = 1024  # 1 m pixels
COG_KEY = "bucket/naip/scene.tif"  # served at http://127.0.0.1:PORT/bucket/naip/scene.tif


@pytest.fixture(scope="module")
def cog_root(tmp_path_factory) -> Path:
    """A folder holding one 1024 x 1024 px, 4-band COG of noise (incompressible: a read of part of
    it must fetch only part of it), 256 px tiles, with overviews."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    root = tmp_path_factory.mktemp("www")
    data = np.random.default_rng(0).integers(1, 255, (4, COG_SIDE, COG_SIDE), dtype=np.uint8)
    src = make_geotiff(
        root / "src.tif", (X0, Y0, X0 + COG_SIDE, Y0 + COG_SIDE), size=(COG_SIDE,) * 2, data=data
    )
    (root / COG_KEY).parent.mkdir(parents=True)
    profile = {**cog_profiles.get("deflate"), "blockxsize": 256, "blockysize": 256}
    cog_translate(src, root / COG_KEY, profile, quiet=True)
    src.unlink()
    return root


class RangeServer:
    """tests/imagery/range_server.py in a subprocess, serving `root`; `requests()` are those it logged."""

    def __init__(self, root: Path, log: Path):
        self.log = log
        script = Path(__file__).with_name("range_server.py")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(root), str(log)], stdout=subprocess.PIPE, text=True
        )
        self.port = int(self.proc.stdout.readline())  # printed once it listens
        self.url = f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[list]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def range_server(cog_root, tmp_path):
    server = RangeServer(cog_root, tmp_path / "requests.jsonl")
    yield server
    server.close()


def fetched_bytes(requests_logged: list[list], size: int) -> int:
    total = 0
    for _method, _path, byte_range in requests_logged:
        start, _, end = byte_range.removeprefix("bytes=").partition("-")
        total += min(int(end or size - 1), size - 1) - int(start) + 1
    return total


def write_aoi(path: Path, geometry) -> Path:
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32618"}}
    path.write_text(json.dumps({"type": "Feature", "crs": crs, "geometry": mapping(geometry)}))
    return path


def map_with_cli(dataset: str, aoi: Path, model: Path, out: Path) -> np.ndarray:
    args = [
        "--dataset",
        dataset,
        "--aoi",
        str(aoi),
        "--model_fn",
        str(model),
        "--out",
        str(out),
        "--workers",
        "0",
        "--quiet",
    ]
    assert batch.main(args) == 0
    with rasterio.open(out) as src:
        return src.read(1)


# --------------------------------------------------------------------------------------------


def test_urls_become_gdal_paths_and_local_paths_stay_local(tmp_path):
    assert remote_path("https://example.com/naip/a.tif") == "/vsicurl/https://example.com/naip/a.tif"
    assert remote_path("s3://naip-bucket/md/a.tif") == "/vsis3/naip-bucket/md/a.tif"
    assert remote_path("gs://bucket/a.tif") == "/vsigs/bucket/a.tif"
    assert remote_path("/vsizip/x.zip/a.tif") == "/vsizip/x.zip/a.tif"
    assert remote_path(str(tmp_path / "a.tif")) is None and remote_path("a.tif") is None
    # a signed URL's own "=" is not a NAME=PATH
    signed = from_cli(["https://host/naip/m_3807.tif?X-Amz-Signature=ab=="])[0]
    assert signed.name == "m_3807" and signed.paths == [
        "/vsicurl/https://host/naip/m_3807.tif?X-Amz-Signature=ab=="
    ]
    named = from_cli(["county=s3://bucket/county.vrt"])[0]
    assert named.name == "county" and named.paths == ["/vsis3/bucket/county.vrt"]
    # datasets.json: URLs are not relative to the file
    (tmp_path / "datasets.json").write_text(json.dumps({"web": {"paths": ["gs://bucket/a.tif"]}}))
    assert from_json(tmp_path / "datasets.json")[0].paths == ["/vsigs/bucket/a.tif"]


def test_a_cog_over_http_maps_like_the_local_file_with_a_few_range_requests(
    range_server, cog_root, tiny_model_path, tmp_path
):
    aoi = write_aoi(tmp_path / "aoi.geojson", box(X0 + 300, Y0 + 300, X0 + 420, Y0 + 420))
    local = map_with_cli(str(cog_root / COG_KEY), aoi, tiny_model_path, tmp_path / "local" / "map.tif")
    remote = map_with_cli(
        f"{range_server.url}/{COG_KEY}", aoi, tiny_model_path, tmp_path / "remote" / "map.tif"
    )
    assert remote.shape == (120, 120) and (remote == local).all()

    logged = range_server.requests()
    gets = [r for r in logged if r[0] == "GET"]
    assert gets and all(byte_range for _, _, byte_range in gets), "every GET asks for a byte range"
    assert {path for _, path, _ in logged} == {COG_KEY}, "no side-car probes, no directory listing"
    size = (cog_root / COG_KEY).stat().st_size
    assert fetched_bytes(gets, size) < size / 3, "a small AOI fetches a small part of the COG"


@pytest.mark.parametrize(
    "url, env",
    [
        (
            "s3://" + COG_KEY,
            {
                "AWS_S3_ENDPOINT": "127.0.0.1:{port}",
                "AWS_HTTPS": "NO",
                "AWS_VIRTUAL_HOSTING": "FALSE",
                "AWS_NO_SIGN_REQUEST": "YES",
            },
        ),
        ("gs://" + COG_KEY, {"CPL_GS_ENDPOINT": "http://127.0.0.1:{port}/", "GS_NO_SIGN_REQUEST": "YES"}),
    ],
    ids=["s3", "gs"],
)
def test_s3_and_gs_urls_are_read_with_gdals_usual_environment_variables(
    url, env, range_server, cog_root, monkeypatch
):
    for key, value in env.items():  # a bucket endpoint on loopback instead of the cloud's
        monkeypatch.setenv(key, value.format(port=range_server.port))
    remote = DataLoader(from_cli([url])[0])
    local = DataLoader(DatasetConfig("local", [str(cog_root / COG_KEY)]))
    grid = local.grid_for(Extent(X0 + 500, Y0 + 500, X0 + 600, Y0 + 600, crs=UTM18))
    assert (remote.read(grid).data == local.read(grid).data).all()
    assert all(path == COG_KEY for _, path, _ in range_server.requests())


def test_the_server_serves_a_remote_dataset_like_a_local_one(
    range_server, cog_root, tiny_model_path, tmp_path
):
    ext = Extent(X0 + 200, Y0 + 200, X0 + 456, Y0 + 456, crs=UTM18).to_crs(WEB_MERCATOR)
    body = {
        "extent": {
            "xmin": ext.xmin,
            "ymin": ext.ymin,
            "xmax": ext.xmax,
            "ymax": ext.ymax,
            "spatialReference": {"latestWkid": 3857},
        }
    }
    answers = []
    for spec, state in ((f"web={range_server.url}/{COG_KEY}", "a"), (f"disk={cog_root / COG_KEY}", "b")):
        app, _ = build_app([spec], tiny_model_path, tmp_path / state)
        server = InProcessServer(app)
        try:
            datasets = server.get("/datasets", timeout=60).json()
            assert [d["files"] for d in datasets] == [1]
            resp = server.post("/predPatch", json=body, timeout=120)
            assert resp.status_code == 200, resp.text
            answers.append(resp.json())
        finally:
            server.close()
    remote, local = answers
    assert remote["output_hard"] == local["output_hard"] and remote["input_naip"] == local["input_naip"]


def test_the_batch_command_a_server_offers_names_a_remote_dataset_whole(
    range_server, tiny_model_path, tmp_path
):
    """An over-size export's hint gives the batch CLI the URL as the server was told, its "=" included."""
    from web_tool.http.routes.jobs import batch_command

    spec = f"{range_server.url}/{COG_KEY}?version=2"
    _, config = build_app([spec], tiny_model_path, tmp_path)
    (name,) = config.loaders
    command = shlex.split(batch_command(config, name, None))
    assert command[command.index("--dataset") + 1] == spec
    assert batch.dataset_for(spec, str(tmp_path / "none.json")).paths == config.loaders[name].config.paths


def test_local_rasters_keep_their_side_car_masks(tmp_path):
    """The remote-read settings (no directory listing) apply to remote files only."""
    path = tmp_path / "masked.tif"
    make_geotiff(path, (X0, Y0, X0 + 64, Y0 + 64))
    mask = np.full((64, 64), 255, np.uint8)
    mask[:, :32] = 0  # the western half has no data
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=False), rasterio.open(path, "r+") as dst:
        dst.write_mask(mask)
    assert os.path.exists(f"{path}.msk")
    loader = DataLoader(DatasetConfig("masked", [str(path)]))
    patch = loader.read(loader.native_grid(Extent(X0, Y0, X0 + 64, Y0 + 64, crs=UTM18)))
    assert not patch.valid[:, :30].any() and patch.valid[:, 34:].all()
