# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DATA_DIR ?= data
DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: demo test lint ui mlflow-ui screenshots install clean up down status

# constraints.txt pins every transitive package to the versions the suite was last run with.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,kafka]'
	touch $(STAMP)

install: $(STAMP)

# The local instance gets the project's dagster.yaml (run queue, one-writer pools); storage stays sqlite.
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/learning-pipeline demo --data-dir $(DATA_DIR) --dagster-home $(DAGSTER_HOME)

# The venv's bin first on PATH, as if activated: tests start servers (mlflow, uvicorn) by name.
test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -n 2 -q

# Lint and format check (CI runs it before the tests); `$(BIN)/ruff format .` fixes the formatting.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/dg check defs

ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME) LEARNING_PIPELINE_DATA_DIR=$(abspath $(DATA_DIR)) $(BIN)/dagster dev -w workspace.yaml

# The MLflow UI over the demo's store, at http://127.0.0.1:5000 (where the links in asset metadata point).
mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(DATA_DIR))/mlflow.db --host 127.0.0.1 --port 5000

# After `make demo`: open the Dagster and MLflow UIs in headless Chromium, fail on a page error, and write
# the README's screenshots (needs /usr/bin/chromium: apt-get install chromium).
screenshots: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m learning_pipeline.cli.browser_check \
		--data-dir $(DATA_DIR) --dagster-home $(DAGSTER_HOME) --out docs/screenshots

# The production-like stack on loopback (deploy/stack.py): Dagster webserver (:3000) and daemon on PostgreSQL,
# MLflow (:5000) on PostgreSQL, the Learning API (:8000); pid files, logs and data under $(STACK_DIR).
# STACK_ARGS passes more options, e.g. STACK_ARGS="--api-port 8001".
STACK_DIR ?= .stack
STACK_ARGS ?=

up: $(STAMP)
	$(BIN)/python deploy/stack.py up --state-dir $(STACK_DIR) $(STACK_ARGS)

down:
	$(BIN)/python deploy/stack.py down --state-dir $(STACK_DIR)

status:
	$(BIN)/python deploy/stack.py status --state-dir $(STACK_DIR) $(STACK_ARGS)

clean:
	rm -rf $(DATA_DIR) $(DAGSTER_HOME)
