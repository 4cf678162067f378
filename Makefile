# Two commands: `make run` (the whole system on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/pip

.PHONY: run test bench check-config clean

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	$(PY) app.py

test: $(VENV)/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

check-config: $(VENV)/.installed
	$(PY) app.py check-config

# one benchmark: make bench NAME=ingest (see bench/*.py and docs/performance.md)
NAME ?= ingest
bench: $(VENV)/.installed
	$(PY) -m bench.$(NAME)

clean:
	rm -rf $(VENV) data .pytest_cache
