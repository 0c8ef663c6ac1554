# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Quiet, offline-friendly Prefect defaults; override from the environment.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: install run test lint ui bench-accuracy bench-speed clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Train, evaluate and register a model on the bundled sample (extra options: ARGS="--set model.epochs=20").
run: $(STAMP)
	$(BIN)/travel-forecast train $(ARGS)

## The whole test suite (extra pytest options: PYTEST_ARGS="-k config").
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Format check and lint (ruff, configured in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

## The MLflow UI on the local store: http://127.0.0.1:5000 (one worker and no job runners: a browser is its only client)
ui: export MLFLOW_SERVER_ENABLE_JOB_EXECUTION = false
ui: $(STAMP)
	@echo "training runs: http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host 127.0.0.1 --port 5000 --workers 1

## Accuracy of the default LSTM, baselines and statsforecast peers on the development set, two series at a time
## (~60 min; ARGS="--seeds 1", "--data my_city.csv --config my_city.toml", "--validation").
bench-accuracy: $(STAMP)
	$(BIN)/python benchmarks/accuracy.py --jobs 2 $(ARGS)

## Whole-process times as ratios to the notebook recipe run as a plain Keras script (~20 min).
bench-speed: $(STAMP)
	$(BIN)/python benchmarks/speed.py $(ARGS)

clean:
	rm -rf $(VENV) outputs
