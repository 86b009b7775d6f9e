"""The test suite, a package whose folders mirror web_tool/'s (imagery/, ServerModels/, rendering/,
learning/, mapping/, validate/, http/, demo/) plus browser/; top-level modules and cross-cutting
behaviour (CLI, start-up, faults, limits, load, packaging, bench smoke tests) stay here.

Being a package, every test module has a dotted name (tests.http.test_api, tests.validate.test_api),
so equal file names in two folders do not clash and tests/http/ does not shadow the standard
library's `http`; shared helpers are imported as `tests.conftest` and `tests.hitl_support`."""
