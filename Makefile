# Two commands: `make run` (the whole system on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/pip

.PHONY: run test peers bench check-config clean

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	$(PY) app.py

test: $(VENV)/.installed peers
	$(PY) -m pytest -q $(PYTEST_ARGS)

# the tests' third-party peers (tests/peers/<name>/, npm), when npm is there; without them
# their tests are skipped with the reason
peers:
	@for d in tests/peers/*/; do \
	  if [ -f "$${d}package-lock.json" ] && [ ! -d "$${d}node_modules" ] && command -v npm >/dev/null; then \
	    npm ci --prefix "$$d" --no-audit --no-fund --loglevel=error; fi; done

check-config: $(VENV)/.installed
	$(PY) app.py check-config

# one benchmark: make bench NAME=ingest (see bench/*.py and docs/performance.md)
NAME ?= ingest
bench: $(VENV)/.installed
	$(PY) -m bench.$(NAME)

clean:
	rm -rf $(VENV) data .pytest_cache
