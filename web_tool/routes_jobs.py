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

import bottle

from web_tool import api
from web_tool.admission import Gate
from web_tool.errors import TooLargeError
from web_tool.jobs import JobCancelled, JobContext, JobResult
from web_tool.mapping import (
    MapCancelled,
    MapPlan,
    check_weights,
    clip_to_imagery,
    default_window_px,
    outputs_beside,
    plan_map,
    predict_window,
    render_map,
)
from web_tool.schemas import parse, query_session
from web_tool.schemas_jobs import PredTileRequest

#: share of a job's progress given to predicting windows (the rest: COG, preview, statistics)
PREDICT_SHARE = 0.95
MEDIA_TYPES = {".tif": "image/tiff", ".png": "image/png", ".json": "application/json", ".csv": "text/csv"}


def gated_results(gate: Gate, loader, model, plan: MapPlan, weights):
    """Each window predicted in this thread, in its turn at `gate`: interactive predictions and
    retrains take turns with the job rather than share the CPU (and memory) with it."""
    for task in plan.tasks():
        with gate.turn(refusable=False):
            classes = predict_window(loader, model, task, weights)
        yield task.window, classes


def map_job(loader, model, plan: MapPlan, weights, gate: Gate):
    """The job that maps `plan` with `model` into the job's downloads (run in the job thread)."""

    def run(ctx: JobContext) -> JobResult:
        outputs = outputs_beside(ctx.path(".tif"))

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
                model.classes,
                on_window=report,
                cancelled=ctx.cancelled,
            )
        except MapCancelled:
            raise JobCancelled() from None
        return JobResult(outputs, stats.to_dict(plan.grid))

    return run


def check_area(area_km2: float, cap_km2: float) -> None:
    """TooLargeError (413) naming the cap and the batch CLI when the area is over the cap."""
    if area_km2 > cap_km2:
        raise TooLargeError(
            f"the area (where there is imagery) is {area_km2:.2f} km²; /predTile maps at most {cap_km2:g} km²"
            " (the server's --max_tile_km2). Map larger areas offline with the batch CLI: python -m"
            " web_tool.batch --dataset PATH --aoi area.geojson --out map.tif"
        )


def job_json(job: dict) -> dict:
    return {**job, "outputs": {kind: f"/downloads/{name}" for kind, name in job["outputs"].items()}}


def add_routes(app: bottle.Bottle, config) -> None:
    """Declare the job routes on `app` (nothing when `config.jobs` is None)."""
    jobs = config.jobs
    if jobs is None:
        return

    def owner() -> str | None:
        """The session of a GET or DELETE (`?session=`); the job manager checks that it exists."""
        return query_session(bottle.request.query)

    @app.post("/predTile")
    def pred_tile():
        req = parse(PredTileRequest, api.read_json(config.max_body_bytes))
        loader = config.loader(req.dataset)
        model = config.model_for(req.session).clone()  # later retraining does not change this job's map
        aoi = clip_to_imagery(loader, req.to_aoi(config.max_vertices))  # where imagery is; 404 if nowhere
        area = aoi.area_km2()
        check_area(area, jobs.max_km2)
        check_weights(req.weights, model.n_classes)
        plan = plan_map(loader, aoi, jobs.window_px or default_window_px(model))
        info = {"dataset": loader.name, "area_km2": round(area, 6), "windows": len(plan.windows)}
        job = jobs.submit(map_job(loader, model, plan, req.weights, config.gate), info, req.session)
        return api.json_response({"job": job}, status=202)

    @app.get("/jobs")
    def list_jobs():
        return api.json_response([job_json(j) for j in jobs.recent(owner())])

    @app.get("/jobs/<job_id>")
    def get_job(job_id):
        return api.json_response(job_json(jobs.get(job_id, owner())))

    @app.delete("/jobs/<job_id>")
    def cancel_job(job_id):
        return api.json_response(job_json(jobs.cancel(job_id, owner())))

    @app.get("/downloads/<name>", url_token=True)
    def download(name):
        path = jobs.download(name)
        media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
        return bottle.static_file(
            path.name,
            root=str(path.parent),
            mimetype=media,
            download=path.name if path.suffix != ".png" else False,
        )
