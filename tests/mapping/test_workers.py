"""The batch CLI on a real Dask cluster: `dask scheduler` and `dask worker` processes on loopback,
started from this virtualenv in another folder and without PYTHONPATH, so that they import web_tool
from the installed package, as on any machine of a cluster. Slow: each worker loads TensorFlow.

Nothing here waits on a clock to get the order of events right: a worker is killed while the CLI is
held between two windows, after the windows in flight have finished on the workers and before the
CLI has collected them, so the killed worker always takes finished windows with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import rasterio
from shapely.geometry import box, mapping

from tests.conftest import UTM18
from web_tool import batch

pytestmark = pytest.mark.slow

DASK = Path(sys.executable).with_name("dask")
#: bound on waiting for processes to start or for the scheduler to see a change (not a speed limit)
PATIENCE_S = 300
X0, Y0 = 500_000, 4_300_000  # the tiny dataset: 128 x 128 m at 1 m, UTM 18N


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {PATIENCE_S} s: {what}"
        time.sleep(0.1)


class DaskCluster:
    """`dask scheduler` + `dask worker` subprocesses (each in its own process group: a nanny and
    its worker die together, as when a machine goes away)."""

    def __init__(self, folder: Path, *scheduler_args: str):
        self.folder = folder
        self.procs: list[subprocess.Popen] = []
        scheduler_file = folder / "scheduler.json"
        self.start(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
            *scheduler_args,
        )
        wait_until(lambda: scheduler_file.exists() and scheduler_file.stat().st_size, "the scheduler file")
        wait_until(lambda: self._read_address(scheduler_file), "the scheduler's address")

    def _read_address(self, scheduler_file: Path) -> bool:
        try:
            self.address = json.loads(scheduler_file.read_text())["address"]
            return True
        except (ValueError, KeyError):  # written as we read it
            return False

    def start(self, *args: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
        with open(self.folder / f"{args[0]}-{len(self.procs)}.log", "w") as log:  # the child keeps it open
            proc = subprocess.Popen(
                [str(DASK), *args],
                cwd=self.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def add_worker(self, *args: str) -> subprocess.Popen:
        return self.start(
            "worker",
            self.address,
            "--nthreads",
            "1",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            "--death-timeout",
            "60",
            *args,
        )

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=60)

    def workers(self, client) -> set[str]:
        return set(client.scheduler_info(n_workers=-1)["workers"])

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-threaded workers, started the ordinary way."""
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        cluster.add_worker()
        cluster.add_worker()
        with cluster.client() as client:
            client.wait_for_workers(2, timeout=PATIENCE_S)
        yield cluster
    finally:
        cluster.close()


def write_aoi(folder: Path) -> Path:
    path = folder / "aoi.geojson"
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32618"}}
    geometry = mapping(box(X0 + 3, Y0 + 2, X0 + 125, Y0 + 126))
    path.write_text(json.dumps({"type": "Feature", "crs": crs, "geometry": geometry}))
    return path


def cli(tiny_dataset_dir, model_fn, tmp_path: Path, out: str, *extra: str) -> list[str]:
    return [
        "--dataset",
        str(tiny_dataset_dir),
        "--aoi",
        str(write_aoi(tmp_path)),
        "--aoi_crs",
        "32618",
        "--model_fn",
        str(model_fn),
        "--out",
        str(tmp_path / out),
        "--window",
        "16",
        "--quiet",
        *extra,
    ]


def read_map(path: Path):
    with rasterio.open(path) as src:
        return src.read(1), src.transform, src.crs


def kill_a_worker_holding_windows(client) -> dict:
    """With the CLI held between two windows: let the windows in flight finish, then kill -9 (with its
    nanny) a worker that holds finished windows the CLI has not collected yet."""
    wait_until(lambda: not any(client.processing().values()), "the windows in flight to finish")
    held = Counter(address for holders in client.who_has().values() for address in holders)
    victim, windows = held.most_common(1)[0]
    group = client.run(os.getpgrp, workers=[victim])[victim]
    os.killpg(group, signal.SIGKILL)
    wait_until(
        lambda: victim not in client.scheduler_info(n_workers=-1)["workers"], "the scheduler to notice"
    )
    return {"worker": victim, "windows": windows}


def test_a_worker_that_cannot_load_the_model_is_named_before_any_window(
    cluster, tiny_dataset_dir, tmp_path, capsys
):
    missing = tmp_path / "models" / "unet"
    args = cli(tiny_dataset_dir, missing, tmp_path, "map.tif", "--scheduler", cluster.address)
    assert batch.main(args) == 2
    err = capsys.readouterr().err
    with cluster.client() as client:
        for worker in cluster.workers(client):
            assert f"worker {worker}: cannot load the model: no model found at {str(missing)!r}" in err
    assert "Traceback" not in err and not (tmp_path / "map.tif").exists()


def test_a_worker_without_the_package_is_named_before_any_window(
    cluster, tiny_dataset_dir, tiny_model_path, tmp_path, capsys
):
    with cluster.client() as client:
        ready = cluster.workers(client)
        bare = cluster.add_worker("--preload", str(Path(__file__).with_name("no_web_tool.py")))
        try:
            client.wait_for_workers(len(ready) + 1, timeout=PATIENCE_S)
            (newcomer,) = cluster.workers(client) - ready
            args = cli(tiny_dataset_dir, tiny_model_path, tmp_path, "map.tif", "--scheduler", cluster.address)
            assert batch.main(args) == 2
            err = capsys.readouterr().err
            assert f"worker {newcomer}: cannot import web_tool: install this package there" in err
            assert err.count("worker tcp://") == 1, err  # the others have everything
        finally:
            os.killpg(bare.pid, signal.SIGKILL)
            bare.wait()
            wait_until(lambda: cluster.workers(client) == ready, "the bare worker to leave")


def test_a_scheduler_without_the_package_is_named(tiny_dataset_dir, tiny_model_path, tmp_path, capsys):
    bare = DaskCluster(tmp_path, "--preload", str(Path(__file__).with_name("no_web_tool.py")))
    try:
        bare.add_worker()
        args = cli(tiny_dataset_dir, tiny_model_path, tmp_path, "map.tif", "--scheduler", bare.address)
        assert batch.main(args) == 2
        assert "the Dask scheduler cannot import web_tool: install this package" in capsys.readouterr().err
    finally:
        bare.close()


def test_the_map_equals_one_process_pixel_for_pixel_even_when_a_worker_is_killed(
    cluster, tiny_dataset_dir, tiny_model_path, tmp_path, monkeypatch
):
    assert batch.main(cli(tiny_dataset_dir, tiny_model_path, tmp_path, "single.tif", "--workers", "0")) == 0
    on_cluster = cli(tiny_dataset_dir, tiny_model_path, tmp_path, "dask.tif", "--scheduler", cluster.address)
    assert batch.main(on_cluster) == 0

    killed: dict = {}
    windows_seen = []
    all_windows = batch.dask_results

    def results_with_a_worker_killed(client, key, plan):
        for i, result in enumerate(all_windows(client, key, plan)):
            if i == 3:  # held here, between two windows
                killed.update(kill_a_worker_holding_windows(client))
            windows_seen.append((result[0].col_off, result[0].row_off))
            yield result

    monkeypatch.setattr(batch, "dask_results", results_with_a_worker_killed)
    on_cluster = cli(
        tiny_dataset_dir, tiny_model_path, tmp_path, "killed.tif", "--scheduler", cluster.address
    )
    assert batch.main(on_cluster) == 0

    assert killed["windows"] >= 1, "the killed worker held finished windows"
    with cluster.client() as client:
        assert killed["worker"] not in cluster.workers(client) and len(cluster.workers(client)) == 1
    assert len(windows_seen) == len(set(windows_seen)) == 8 * 8, "every window once"
    single = read_map(tmp_path / "single.tif")
    stats = json.loads((tmp_path / "single_stats.json").read_text())
    for name in ("dask", "killed"):
        classes, transform, crs = read_map(tmp_path / f"{name}.tif")
        assert (classes == single[0]).all() and transform == single[1] and crs == single[2] == UTM18
        assert json.loads((tmp_path / f"{name}_stats.json").read_text()) == stats
