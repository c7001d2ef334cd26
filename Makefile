# Two entry points on a fresh machine with Python 3.11:
#   make demo   install into .venv and run the main job
#   make test   install into .venv and run the test suite (what CI runs)
# Both install the exact versions (and hashes) of requirements.lock; `make lock` refreshes it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
LOCK_VENV := .lock-venv

.PHONY: demo test lint bench clean lock

# The lock pins every runtime, test and dask dependency and the build backend; the project itself is then
# installed without dependencies and without build isolation (its build backend comes from the lock too),
# and so are the example plugins (tests run them through `tumblebench demo`).
$(STAMP): $(LOCK) pyproject.toml examples/plugins/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e examples/plugins
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tumblebench demo --out demo_run --overwrite

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Re-resolve pyproject.toml's ranges to the newest versions on the public index and record every file's hash.
# pip-tools lives in a throwaway venv; local pip configuration (extra indexes, find-links, constraints) is
# ignored so that the lock is what any machine sees. Keep existing pins instead: make lock UPGRADE=
UPGRADE ?= --upgrade
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock" \
		sh -c '$(LOCK_VENV)/bin/pip install --quiet pip-tools && \
		$(LOCK_VENV)/bin/pip-compile --quiet $(UPGRADE) --generate-hashes --allow-unsafe --strip-extras \
			--extra test --extra dask --build-deps-for editable --no-emit-index-url --no-emit-find-links \
			--output-file $(LOCK) pyproject.toml'
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(LOCK_VENV) demo_run build *.egg-info
