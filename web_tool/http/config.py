"""`AppConfig`: everything a running app needs (datasets, model, sessions, jobs, limits), built by
`web_tool.server.main()` from the command line or by tests, and read by every route group."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from web_tool.DataLoader import DataLoader
from web_tool.errors import NotFoundError
from web_tool.geometry import MAX_VERTICES
from web_tool.http import admission, api
from web_tool.learning.sessions import MAX_CLASSES, SessionManager
from web_tool.mapping.jobs import JobManager
from web_tool.paths import STATE_DIR
from web_tool.ServerModels import ServerModel
from web_tool.validate.samples import SampleStore


@dataclass
class AppConfig:
    """Everything a running app needs; built by `main()` or by tests."""

    loaders: dict[str, DataLoader]
    model: ServerModel
    fine_tune: str = "last_layer"
    state_dir: Path = STATE_DIR
    max_body_bytes: int = api.MAX_BODY_BYTES
    #: human-in-the-loop state; None = every request uses `model`
    sessions: SessionManager | None = None
    #: large-area jobs; None = no /predTile
    jobs: JobManager | None = None
    #: shared secret every API call must carry (auth.py); None = no auth
    token: str | None = None
    #: validation samples of finished maps; None = no accuracy routes
    validation: SampleStore | None = None
    #: how the batch CLI makes the same model and reads the same datasets (its command-line hints)
    model_kind: str = "nips_hr"
    model_fn: str | None = None
    dataset_args: dict[str, list[str]] = field(default_factory=dict)
    #: the address the server binds to, and other pages' origins allowed to call it (origins.py)
    host: str = "127.0.0.1"
    cors_origins: tuple[str, ...] = ()
    #: most vertices of a GeoJSON area in a request
    max_vertices: int = MAX_VERTICES
    #: most classes a session may have (export writes class indices as uint8, 255 = nodata)
    max_classes: int = MAX_CLASSES
    #: turns for heavy requests (admission.py)
    gate: admission.Gate = field(default_factory=admission.Gate)

    @property
    def default_dataset(self) -> str:
        return next((n for n, d in self.loaders.items() if d.config.default), next(iter(self.loaders)))

    def model_for(self, session: str | None) -> ServerModel:
        """The model that serves `session` (the base model when sessions are off)."""
        return self.sessions.model(session) if self.sessions is not None else self.model

    def loader(self, name: str | None) -> DataLoader:
        name = name or self.default_dataset
        if name not in self.loaders:
            raise NotFoundError(f"unknown dataset {name!r}; available: {', '.join(self.loaders)}")
        return self.loaders[name]
