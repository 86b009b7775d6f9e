"""Dask preload for test_workers: this scheduler or worker process cannot import web_tool, like a
machine where the package was never installed
(`dask worker ADDRESS --preload tests/mapping/no_web_tool.py`)."""

import sys
from importlib.abc import MetaPathFinder


class NoWebTool(MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "web_tool":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


for module in [m for m in sys.modules if m.split(".")[0] == "web_tool"]:
    del sys.modules[module]
sys.meta_path.insert(0, NoWebTool())
