"""Where the tool's files are unless the command line says otherwise: one definition for the server,
the batch CLI and the validate CLI, so that all three find the same state, datasets and model."""

from __future__ import annotations

from pathlib import Path

#: the package folder: the page's files, datasets.json, data/
WEB_ROOT = Path(__file__).resolve().parent
#: named datasets (--datasets_json)
DATASETS_JSON = WEB_ROOT / "datasets.json"
#: the demo model `make demo` trains (--model_fn; .keras or .h5 is found without the extension)
DEMO_MODEL = WEB_ROOT / "data" / "demo_model"
#: the demo imagery `make demo` builds
DEMO_DATA = WEB_ROOT / "data" / "demo"
#: sessions, corrections, checkpoints, jobs and their downloads, validation samples (--state_dir)
STATE_DIR = WEB_ROOT / "data" / "state"
