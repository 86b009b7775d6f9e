"""The command line: --help, and the seed's launch line serving the demo as a real process."""

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import DEMO_DIR, DEMO_MODEL, REPO, free_port

SEED_LINE = [
    "web_tool/server.py",
    "--model",
    "nips_hr",
    "--model_fn",
    "web_tool/data/demo_model",
    "--fine_tune",
    "last_layer",
]
SEED_EXTENT = {
    "xmax": -8573000,
    "xmin": -8573500,
    "ymax": 4705500,
    "ymin": 4705000,
    "spatialReference": {"latestWkid": 3857},
}


def test_help_explains_every_flag():
    out = subprocess.run(
        [sys.executable, "web_tool/server.py", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--model", "--model_fn", "--fine_tune", "--host", "--port", "--dataset", "--datasets_json"):
        assert flag in out
    assert "127.0.0.1" in out and "4444" in out


def wait_for(url: str, proc: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("server did not start in time")


@pytest.mark.slow
def test_the_seed_launch_line_serves_the_seed_example(tmp_path):
    if not (DEMO_DIR / "scene.json").exists() or not DEMO_MODEL.exists():
        pytest.skip("demo not built: run `make demo-data`")
    port = free_port()
    cmd = [sys.executable, *SEED_LINE, "--port", str(port), "--state_dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/predPatch",
            data=json.dumps({"extent": SEED_EXTENT, "weights": [0.25] * 4}).encode(),
            headers={"Content-Type": "application/json"},
        )
        body = json.load(urllib.request.urlopen(req, timeout=60))
        assert body["model_name"] == "demo_model"
        assert {"input_naip", "output_hard", "output_soft"} <= set(body)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_missing_model_exits_with_a_message_not_a_traceback(tmp_path, tiny_dataset_dir):
    cmd = [
        sys.executable,
        "web_tool/server.py",
        "--model_fn",
        str(tmp_path / "none"),
        "--dataset",
        str(tiny_dataset_dir),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"no model found at '{tmp_path / 'none'}'" in proc.stderr


def test_an_empty_folder_is_named_and_the_server_does_not_start(tmp_path, tiny_model_path):
    proc = subprocess.run(
        [
            sys.executable,
            "web_tool/server.py",
            "--model_fn",
            str(tiny_model_path),
            "--dataset",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"no raster file at '{tmp_path}'; the folder holds no raster file" in proc.stderr
    assert "no dataset to serve" in proc.stderr and "make demo" not in proc.stderr
