# Set-up and everyday commands. The two a newcomer needs:
#   make demo   install what is missing, build the demo (imagery + model), serve it on :4444
#   make test   install what is missing, lint, and run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 4444
DEMO_DIR := web_tool/data/demo
DEMO_MODEL := web_tool/data/demo_model.keras
export KERAS_BACKEND := tensorflow
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test venv node system-deps demo-data demo-model serve lint format bench evaluate screenshot clean help

help:
	@echo "make demo       install, build the demo dataset and serve the tool on http://localhost:$(PORT)/"
	@echo "make test       install, lint and run the tests (browser tests need Debian's chromium)"
	@echo "make bench      run the benchmarks under bench/ and print their tables (~45 minutes; more the first time)"
	@echo "make evaluate   accuracy and mean IoU of the demo model on held-out ground"
	@echo "make demo-model retrain the demo model (the committed weights are used otherwise)"
	@echo "make screenshot render the README's pictures (docs/*.png) through the real page"

# The pinned packages, then this project itself in editable mode (web_tool importable from anywhere,
# e.g. by `dask scheduler` / `dask worker` started from this venv), built with the pinned setuptools.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@echo "== installing Python packages into $(VENV)/ (first time: a few minutes)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

node_modules/.installed: package.json package-lock.json
	@echo "== installing pinned frontend packages (Leaflet) into node_modules/"
	npm ci --no-audit --no-fund --silent
	touch $@

node: node_modules/.installed

# Debian's chromium for the browser tests; installed only where we may (root with apt-get).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "== installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "== chromium not found and cannot be installed here: browser tests will be skipped"; fi; }

$(DEMO_DIR)/scene.json: web_tool/demo/scene.py | venv
	@echo "== generating the demo scene into $(DEMO_DIR)/"
	$(PY) -m web_tool.demo.scene --out $(DEMO_DIR)

demo-data: $(DEMO_DIR)/scene.json

$(DEMO_MODEL): | demo-data
	$(PY) -m web_tool.demo.train --data $(DEMO_DIR) --out $(DEMO_MODEL)

demo-model: demo-data
	$(PY) -m web_tool.demo.train --data $(DEMO_DIR) --out $(DEMO_MODEL)

demo: venv node demo-data $(DEMO_MODEL) serve

serve:
	@echo "== serving on http://localhost:$(PORT)/ (Ctrl+C to stop)"
	$(PY) web_tool/server.py --model nips_hr --model_fn web_tool/data/demo_model --fine_tune last_layer --port $(PORT)

# ruff, then mypy type-checks web_tool/ (settings in pyproject.toml): nothing may reach past a
# ServerModel's contract (ServerModels/base.py)
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# pytest workers: on 2 cores the suite waits on servers, browsers and subprocesses for much of its
# time, and two workers take it from about 12 to 9 minutes (each loads TensorFlow). A module's tests
# stay together on one worker (loadscope), so its module-scoped servers start once, not on both.
TEST_WORKERS ?= 2
test: venv node system-deps demo-data lint
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS) --dist loadscope

evaluate: venv demo-data
	$(PY) -m web_tool.demo.evaluate --data $(DEMO_DIR) --model_fn web_tool/data/demo_model

bench: venv node demo-data
	$(PY) bench/predpatch.py
	$(PY) bench/predpatch.py --precision bf16
	$(PY) bench/browser.py
	$(PY) bench/hitl.py
	$(PY) bench/hitl_real.py
	$(PY) bench/load.py
	$(PY) bench/limits.py
	$(PY) bench/throughput.py
	$(PY) bench/tiles.py
	$(PY) bench/validate.py
	$(PY) bench/resolution.py --res 0.3

screenshot: venv node demo-data $(DEMO_MODEL)
	$(PY) scripts/screenshot.py
	if [ -d ../shared/data/chesapeake-wv-dev ]; then $(PY) scripts/screenshot_real.py; fi

clean:
	rm -rf $(DEMO_DIR) web_tool/data/state test-artifacts .pytest_cache .mypy_cache
