# Two commands set up a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint info clean

$(STAMP): pyproject.toml
	@echo "== setup: virtual environment and install into $(VENV) (first run only; a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel first: a bare `torch` requirement resolved first would pull CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	@echo "== demo: training, evaluation, prediction (each phase announced with the time left)"
	$(PY) -m rtseg demo $(if $(DATA),--data $(DATA))

test: $(STAMP)
	@echo "== tests: pytest in two worker processes (pytest-xdist, whole files per worker), a dot a test"
	@echo "   and the share done so far ([ NN%]); about 5–7 min on a quiet 2-core CPU (1,068 tests in 273 s, 2026-12-02), longer while other work shares it"
	$(PY) -m pytest -n 2 --dist loadfile

test-fast: $(STAMP)
	@echo "== tests, the quick tier (tests marked slow left out): about a minute"
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

info: $(STAMP)
	$(PY) -m rtseg info --size 1024 2048 --size 360 480

clean:
	rm -rf $(VENV) runs
