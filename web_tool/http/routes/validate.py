"""HTTP routes of accuracy assessment. A validation sample belongs to the `/predTile` job whose map
it assesses, so every route lives under that job:

    POST /jobs/<job>/samples                       {total?, min_per_class?, seed?} → 201 the sample
    GET  /jobs/<job>/samples                       the job's samples, newest first
    GET  /jobs/<job>/samples/<sample>              design, progress, next point, every point
    POST /jobs/<job>/samples/<sample>/answers      {point, answer: class index | "unsure" | "skip"}
    GET  /jobs/<job>/samples/<sample>/report       the report of the answers so far (.csv: as CSV)
    POST /jobs/<job>/reference                     {labels: true | raster: base64 GeoTIFF | points:
                                                    GeoJSON, property?, codes?, format?} → a report

`finished_map` is the one place that decides whether a caller may see a job's map.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bottle
import rasterio
from rasterio.errors import RasterioIOError

from web_tool.errors import RequestError
from web_tool.http import api
from web_tool.http.schemas import AnswerRequest, ReferenceRequest, SampleRequest, parse
from web_tool.validate import assess, reference
from web_tool.validate.report import to_csv

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

    from web_tool.http.config import AppConfig
    from web_tool.mapping.jobs import JobManager


def finished_map(jobs: JobManager, job_id: str, session: str | None) -> tuple[dict[str, Any], Path]:
    """(job, path of its class map) if the caller may assess `job_id`'s map: the job exists and is
    done, and the caller's `session` made it (404 otherwise, as for any job). Every validation route
    asks here."""
    job = jobs.get(job_id, session)
    if job["state"] != "done":
        raise RequestError(f"job {job_id} is {job['state']}: a validation sample needs a finished map")
    if "cog" not in job["outputs"]:
        raise RequestError(f"job {job_id} made no class map to assess")
    return job, jobs.download(job["outputs"]["cog"])


def job_classes(job: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The classes the job's map was made with (None: read them from the map itself)."""
    rows = (job.get("stats") or {}).get("classes")
    return [{"name": r["name"], "color": r["color"]} for r in rows] if rows else None


def caller_session() -> str | None:
    """The session a GET names (`?session=`)."""
    session: str | None = bottle.request.query.get("session") or None
    if session is not None and len(session) > 64:
        raise RequestError("session: at most 64 characters")
    return session


@contextmanager
def open_raster(encoded: str) -> Iterator[DatasetReader]:
    """The uploaded reference GeoTIFF (base64) as an open dataset, while the block runs."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("raster must be a GeoTIFF file encoded as base64") from None
    with rasterio.MemoryFile(data) as memfile:
        try:
            src = memfile.open()
        except RasterioIOError:
            raise RequestError("raster is not a GeoTIFF (or another raster format GDAL reads)") from None
        with src:
            yield src


def csv_response(text: str, name: str) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(
        text, content_type="text/csv; charset=utf-8", Content_Disposition=f'attachment; filename="{name}"'
    )


def add_routes(app: api.Router, config: AppConfig) -> None:
    """Declare the validation routes on `app` (none without jobs or a sample store)."""
    jobs, store = config.jobs, config.validation
    if jobs is None or store is None:
        return
    limit = config.max_body_bytes

    @app.post("/jobs/<job_id>/samples", heavy=True)  # reads the whole map: takes a turn (admission.py)
    def create_sample(job_id: str) -> bottle.HTTPResponse:
        req = parse(SampleRequest, api.read_json(limit, if_empty={}))
        job, cog = finished_map(jobs, job_id, req.session)
        sample_id = assess.new_sample(
            store, job_id, cog, job_classes(job), req.total, req.min_per_class, req.seed
        )
        return api.json_response(store.describe(job_id, sample_id), status=201)

    @app.get("/jobs/<job_id>/samples")
    def list_samples(job_id: str) -> bottle.HTTPResponse:
        finished_map(jobs, job_id, caller_session())
        return api.json_response(store.list(job_id))

    @app.get("/jobs/<job_id>/samples/<sample_id>")
    def get_sample(job_id: str, sample_id: str) -> bottle.HTTPResponse:
        finished_map(jobs, job_id, caller_session())
        return api.json_response(store.describe(job_id, sample_id, with_points=True))

    @app.post("/jobs/<job_id>/samples/<sample_id>/answers")
    def answer(job_id: str, sample_id: str) -> bottle.HTTPResponse:
        req = parse(AnswerRequest, api.read_json(limit))
        finished_map(jobs, job_id, req.session)
        point = store.answer(job_id, sample_id, req.point, req.answer)
        progress = store.progress(sample_id)
        return api.json_response({"point": point, "progress": progress, "next": store.next_point(sample_id)})

    @app.get("/jobs/<job_id>/samples/<sample_id>/report")
    def sample_report(job_id: str, sample_id: str) -> bottle.HTTPResponse:
        finished_map(jobs, job_id, caller_session())
        return api.json_response(assess.stored_sample_report(store, job_id, sample_id))

    @app.get("/jobs/<job_id>/samples/<sample_id>/report.csv")
    def sample_report_csv(job_id: str, sample_id: str) -> bottle.HTTPResponse:
        finished_map(jobs, job_id, caller_session())
        report = assess.stored_sample_report(store, job_id, sample_id)
        return csv_response(to_csv(report), f"accuracy_{job_id}_{sample_id}.csv")

    @app.post("/jobs/<job_id>/reference", heavy=True)
    def against_reference(job_id: str) -> bottle.HTTPResponse:
        req = parse(ReferenceRequest, api.read_json(limit))
        job, cog = finished_map(jobs, job_id, req.session)
        classes = job_classes(job)
        if req.points is not None:
            report = assess.points_report(cog, classes, req.points, req.property, req.crs, req.codes)
        elif req.labels:
            read = reference.labels_reader(config.loader(job.get("dataset")))
            report = assess.raster_report(cog, classes, read, req.codes)
        else:
            assert req.raster is not None  # _one_reference
            with open_raster(req.raster) as src:
                report = assess.raster_report(cog, classes, reference.raster_reader(src), req.codes)
        if req.format == "csv":
            return csv_response(to_csv(report), f"accuracy_{job_id}_reference.csv")
        return api.json_response(report)
