"""HTTP routes of large-area mapping: `/predTile` jobs, their state, and their downloads.

    POST   /predTile          → 202 {"job": id}   (413 beyond the area cap, 503 when the queue is full)
    GET    /jobs               → the session's most recent jobs
    GET    /jobs/<id>          → {"state", "progress", "message", "outputs": {kind: "/downloads/<file>"}, ...}
    DELETE /jobs/<id>          → cancels a queued or running job; the job afterwards
    GET    /downloads/<file>   → an output of a finished job (looked up in the job database)

A job belongs to the session that submitted it (`"session"` in the body; `?session=` on the GETs
and the DELETE). The map itself is made by `mapping` (the same code the batch CLI runs), in the job
manager's thread, window by window, each window in its turn at the heavy-request gate.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import bottle

from web_tool.DataLoader import DataLoader
from web_tool.errors import ClassIndexError, NotTrainedError, TooLargeError
from web_tool.http import api
from web_tool.http.admission import Gate
from web_tool.http.schemas import PredTileRequest, parse, query_session
from web_tool.mapping.jobs import JobCancelled, JobContext, JobResult, Work
from web_tool.mapping.pipeline import (
    MapCancelled,
    MapPlan,
    WindowResult,
    clip_to_imagery,
    default_window_px,
    map_tags,
    outputs_beside,
    plan_map,
    predict_window,
    render_map,
)
from web_tool.rendering.images import check_weights
from web_tool.ServerModels.base import ServerModel, untrained_message

if TYPE_CHECKING:
    from web_tool.http.config import AppConfig

#: share of a job's progress given to predicting windows (the rest: COG, preview, statistics)
PREDICT_SHARE = 0.95
MEDIA_TYPES = {
    ".tif": "image/tiff",
    ".png": "image/png",
    ".json": "application/json",
    ".csv": "text/csv",
    ".qml": "text/xml",
    ".xml": "text/xml",
    ".gpkg": "application/geopackage+sqlite3",
    ".geojson": "application/geo+json",
}


def file_stem(dataset: str, checkpoint: str | None) -> str:
    """The part of a map's file names after the job id: dataset, date, checkpoint (or "base")."""
    safe = re.sub(r"[^A-Za-z0-9]+", "", dataset)[:40] or "map"
    return f"_{safe}_{time.strftime('%Y%m%d')}_{checkpoint or 'base'}"


def gated_results(
    gate: Gate, loader: DataLoader, model: ServerModel, plan: MapPlan, weights: list[float] | None
) -> Iterator[WindowResult]:
    """Each window predicted in this thread, in its turn at `gate`: interactive predictions and
    retrains take turns with the job rather than share the CPU (and memory) with it."""
    for task in plan.tasks():
        with gate.turn(refusable=False):
            classes = predict_window(loader, model, task, weights)
        yield task.window, classes


def map_job(
    loader: DataLoader,
    model: ServerModel,
    plan: MapPlan,
    weights: list[float] | None,
    gate: Gate,
    classes: list[dict[str, Any]] | None = None,
    tags: dict[str, str | None] | None = None,
    vector: bool = False,
) -> Work:
    """The job that maps `plan` with `model` into the job's downloads (run in the job thread), its
    windows in their turns at `gate`, its outputs named after the dataset, the date and the
    checkpoint in `tags`."""

    def run(ctx: JobContext) -> JobResult:
        stem = file_stem(loader.name, (tags or {}).get("checkpoint"))
        outputs = outputs_beside(ctx.path(f"{stem}.tif"), vector=vector, overlay=True)

        def report(done: int, total: int) -> None:
            if done < total:
                ctx.progress(PREDICT_SHARE * done / total, f"window {done} of {total}")
            else:
                ctx.progress(PREDICT_SHARE, "writing the COG, preview and statistics", force=True)

        try:
            stats = render_map(
                plan,
                gated_results(gate, loader, model, plan, weights),
                outputs,
                classes or model.classes,
                on_window=report,
                cancelled=ctx.cancelled,
                tags=tags,
            )
        except MapCancelled:
            raise JobCancelled() from None
        return JobResult(outputs, stats.to_dict(plan.grid))

    return run


def check_area(area_km2: float, cap_km2: float, command: str = "python -m web_tool.batch --help") -> None:
    """TooLargeError (413) naming the cap and the batch CLI `command` when the area is over the cap."""
    if area_km2 > cap_km2:
        raise TooLargeError(
            f"the area (where there is imagery) is {area_km2:.2f} km²; this server maps at most"
            f" {cap_km2:g} km² at a time (its --max_tile_km2). Save the area as area.geojson and map"
            f" it offline with the same model and corrections: {command}"
        )


def batch_command(config: AppConfig, dataset: str, checkpoint: str | None) -> str:
    """The batch CLI line that maps an area with this server's model, dataset and `checkpoint`."""
    dataset_args = config.dataset_args.get(dataset, ["--dataset", dataset])
    args = [
        "python",
        "-m",
        "web_tool.batch",
        *dataset_args,
        "--aoi",
        "area.geojson",
        "--model",
        config.model_kind,
        "--model_fn",
        str(config.model_fn or ""),
    ]
    if checkpoint:
        args += ["--checkpoint", checkpoint, "--state_dir", str(config.state_dir)]
    return shlex.join([*args, "--out", "map.tif"])


def snapshot(config: AppConfig, session: str | None, name: str) -> str | None:
    """A checkpoint of the session's current model (None without sessions), so that a map names
    the model that made it and the batch CLI can make it again."""
    return config.sessions.save_checkpoint(session, name) if config.sessions is not None else None


def job_json(job: dict[str, Any]) -> dict[str, Any]:
    return {**job, "outputs": {kind: f"/downloads/{name}" for kind, name in job["outputs"].items()}}


def add_routes(app: api.Router, config: AppConfig) -> None:
    """Declare the job routes on `app` (nothing when `config.jobs` is None)."""
    jobs = config.jobs
    if jobs is None:
        return

    @app.post("/predTile")
    def pred_tile() -> bottle.HTTPResponse:
        req = parse(PredTileRequest, api.read_json(config.max_body_bytes))
        loader = config.loader(req.dataset)
        model = config.model_for(req.session)  # models never change: later retraining makes a new one
        if not model.trained:
            raise NotTrainedError(untrained_message(model))
        aoi = clip_to_imagery(loader, req.to_aoi(config.max_vertices))  # where imagery is; 404 if nowhere
        area = aoi.area_km2()
        when = time.strftime("%Y-%m-%d %H:%M")
        if area > jobs.max_km2:
            checkpoint = snapshot(config, req.session, f"for the batch CLI, {loader.name} {when}")
            check_area(area, jobs.max_km2, batch_command(config, loader.name, checkpoint))
        check_weights(req.weights, model.n_classes)
        classes = [c.model_dump() for c in req.classes] if req.classes else None
        if classes is not None and len(classes) != model.n_classes:
            raise ClassIndexError(
                f"classes has {len(classes)} entries but the model has {model.n_classes} classes"
            )
        checkpoint = snapshot(config, req.session, f"export {loader.name} {when}")
        plan = plan_map(loader, aoi, jobs.window_px or default_window_px(model))
        info = {
            "dataset": loader.name,
            "area_km2": round(area, 6),
            "windows": len(plan.windows),
            "checkpoint": checkpoint,
        }
        tags = map_tags(config.model_kind, config.model_fn, checkpoint, loader.name)
        work = map_job(loader, model, plan, req.weights, config.gate, classes, tags, req.vector)
        return api.json_response({"job": jobs.submit(work, info, req.session)}, status=202)

    def caller() -> str | None:
        """The session of a GET or DELETE (`?session=`); the job manager checks that it exists."""
        return query_session(bottle.request.query)

    @app.get("/jobs")
    def list_jobs() -> bottle.HTTPResponse:
        return api.json_response([job_json(j) for j in jobs.recent(caller())])

    @app.get("/jobs/<job_id>")
    def get_job(job_id: str) -> bottle.HTTPResponse:
        return api.json_response(job_json(jobs.get(job_id, caller())))

    @app.delete("/jobs/<job_id>")
    def cancel_job(job_id: str) -> bottle.HTTPResponse:
        return api.json_response(job_json(jobs.cancel(job_id, caller())))

    @app.get("/downloads/<name>", url_token=True)
    def download(name: str) -> bottle.HTTPResponse:
        path = jobs.download(name)
        media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
        named = path.name.partition("_")[2] or path.name  # without the job id (a secret)
        media = MEDIA_TYPES.get("." + path.name.rsplit(".", 1)[-1], media)
        return bottle.static_file(
            path.name,
            root=str(path.parent),
            mimetype=media,
            download=named if path.suffix != ".png" else False,
        )
