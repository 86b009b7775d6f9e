"""`pip install .` gives a machine everything: the package, the page's files and the demo model. The
wheel is built from the tracked files (as a clean clone has them) with the pinned setuptools, installed
apart from this checkout, and run from another folder: the batch CLI maps and the server serves the
page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow

#: files of the checkout that a plain install must carry (beside every module)
PACKAGE_DATA = [
    "web_tool/index.html",
    "web_tool/endpoints.js",
    "web_tool/datasets.json",
    "web_tool/css/app.css",
    "web_tool/js/main.js",
    "web_tool/data/demo_model.keras",
    "web_tool/data/demo_model.replay.npz",
]


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know its tracked files")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [name for name in out.stdout.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, list[str]]:
    """(site folder with the installed package, names in the wheel)."""
    tmp = tmp_path_factory.mktemp("packaging")
    for name in tracked_files():
        (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp / "src" / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(tmp / "src")]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("landcover_web_tool-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)],
        check=True,
        capture_output=True,
    )
    return tmp / "site", zipfile.ZipFile(wheel).namelist()


def run_env(site: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(site), "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_the_wheel_carries_every_module_and_the_pages_files(installed):
    _, names = installed
    tracked = tracked_files()
    modules = [n for n in tracked if n.startswith("web_tool/") and n.endswith(".py")]
    modules += [n for n in tracked if n.startswith(("web_tool/js/", "web_tool/css/"))]  # the page's too
    assert set(modules) <= set(names)
    assert set(PACKAGE_DATA) <= set(names)
    assert not [n for n in names if n.startswith("web_tool/data/demo/")], "generated demo imagery stays out"


def test_the_installed_batch_cli_maps_with_the_packaged_demo_model(installed, tiny_dataset_dir, tmp_path):
    site, _ = installed
    aoi = tmp_path / "aoi.geojson"
    ring = [[500_010, 4_300_010], [500_100, 4_300_010], [500_100, 4_300_100], [500_010, 4_300_010]]
    aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    code = "import web_tool.batch, sys; print(web_tool.batch.__file__); sys.exit(web_tool.batch.main())"
    args = [
        "--dataset",
        str(tiny_dataset_dir),
        "--aoi",
        str(aoi),
        "--aoi_crs",
        "32618",
        "--out",
        str(tmp_path / "map.tif"),
        "--workers",
        "0",
        "--quiet",
    ]
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        env=run_env(site),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(str(site / "web_tool" / "batch.py"))
    assert (tmp_path / "map.tif").exists() and (tmp_path / "map_stats.json").exists()


def test_the_installed_server_serves_the_page(installed, tiny_dataset_dir, tmp_path):
    site, _ = installed
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "web_tool.server",
            "--dataset",
            str(tiny_dataset_dir),
            "--port",
            str(port),
            "--state_dir",
            str(tmp_path / "state"),
        ],
        cwd=tmp_path,
        env=run_env(site),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        health = wait_for(url + "/health", server)
        assert health["model_name"] == "demo_model"
        for path, words in (("/", "<html"), ("/js/main.js", "import"), ("/css/app.css", "{")):
            with urllib.request.urlopen(url + path, timeout=30) as resp:
                assert resp.status == 200 and words in resp.read().decode(), path
    finally:
        server.terminate()
        server.wait(30)


def wait_for(url: str, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return json.load(resp)
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within 300 s")
