# aspects-sink: everyday commands. `make demo` and `make test` do all their own set-up.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# Python 3.12 runs the demo and the newest pins; 3.11 is Open edX Sumac/Teak's interpreter.
PYTHON312 ?= $(shell ./scripts/find-python 3.12)
PYTHON311 ?= $(shell ./scripts/find-python 3.11)
VENV := .venv
VENV_STAMP := $(VENV)/.installed
PIP_COMPILE = $(VENV)/bin/pip-compile --quiet --allow-unsafe --strip-extras --resolver=backtracking --no-emit-index-url --no-emit-find-links

.PHONY: help demo test quality format requirements upgrade clean dev-env system-packages

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# pip installs uv (pinned in requirements/dev.txt), and uv the rest: a minute or two less than pip alone.
$(VENV_STAMP): requirements/dev.txt setup.py
	$(PYTHON312) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "$$(grep '^uv==' requirements/dev.txt)"
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python -r requirements/dev.txt -e .
	touch $(VENV_STAMP)

dev-env: $(VENV_STAMP) ## create .venv (Python 3.12) with everything a developer needs

demo: $(VENV_STAMP) ## run the main job on embedded defaults: local ClickHouse, embedded broker, real worker, SQLite LMS
	$(VENV)/bin/python devstack/demo.py

system-packages: ## install the Debian packages the tests use (promtool, chromium, chromium-driver) if missing
	./scripts/install-system-packages

test: $(VENV_STAMP) system-packages ## run the whole tox matrix (py311-django42, py312-django52, site, faults-sqlite, faults-mariadb, quality)
	# All environments run side by side (quality, the switch-over and the fault matrix too): their tests mostly wait on processes, and each devstack has its
	# own state directory, MariaDB database and Celery queue.
	# .venv/bin last on the PATH: its uv builds the switch-over's virtualenv of platform-plugin-aspects.
	PATH="$(dir $(PYTHON312)):$(dir $(PYTHON311)):$$PATH:$(CURDIR)/$(VENV)/bin" $(VENV)/bin/tox run-parallel --parallel 6 --parallel-live

quality: $(VENV_STAMP) ## lint, format check, and the import layers (.importlinter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(VENV_STAMP) ## reformat the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

requirements: $(VENV_STAMP) ## recompile the pinned requirements/*.txt from the .in files
	$(PIP_COMPILE) -o requirements/base.txt requirements/base.in
	$(PIP_COMPILE) -o requirements/quality.txt requirements/quality.in
	$(PIP_COMPILE) -o requirements/test.txt requirements/test.in
	$(PIP_COMPILE) -o requirements/dev.txt requirements/dev.in
	$(PYTHON311) -m venv .venv-py311-tools && .venv-py311-tools/bin/pip install --quiet pip-tools
	.venv-py311-tools/bin/pip-compile --quiet --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
		-o requirements/test-py311.txt requirements/test.in
	rm -rf .venv-py311-tools
	# tox picks the Django version per environment
	sed -i '/^[dD]jango==/d' requirements/test.txt requirements/test-py311.txt

upgrade: ## recompile the pins with the newest releases
	$(MAKE) requirements PIP_COMPILE="$(PIP_COMPILE) --upgrade"

clean: ## remove build artefacts, virtualenvs and the demo's state
	rm -rf $(VENV) .tox .devstack build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
