# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
LAYER := layers/deps/build/.built

# asl-validator (npm) validates the synthesized Step Functions definition; installed only where npm exists.
ASL_TOOLS := tools/asl/node_modules/.installed
ASL_IF_NPM := $(if $(shell command -v npm),$(ASL_TOOLS))

FOCUS_VENV := .venv-focus
FOCUS_VALIDATOR := $(FOCUS_VENV)/.installed

.PHONY: run test test-fast bench synth layers lint clean focus-validator router-eval router-train spot-backtest asl-tools

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Lambda layer with the runtime dependencies, built from manylinux wheels for the Lambda runtime.
$(LAYER): pyproject.toml layers/deps/build.py infra/runtime.py $(INSTALLED)
	$(PY) layers/deps/build.py

layers: $(LAYER)

# The FinOps Foundation's focus-validator, in its own virtualenv: 1.0.0 (the release for Python 3.11) pins
# numpy<2, pandas<3, sqlglot<19 and pandera 0.17, which the project's own venv cannot hold; on Python 3.11 it
# only imports with multimethod<1.11. The chargeback tests call it by subprocess.
$(FOCUS_VALIDATOR):
	$(PYTHON) -m venv $(FOCUS_VENV)
	$(FOCUS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FOCUS_VENV)/bin/python -m pip install --quiet "focus-validator==1.0.0" "multimethod<1.11"
	touch $@

focus-validator: $(FOCUS_VALIDATOR)

$(ASL_TOOLS): tools/asl/package.json tools/asl/package-lock.json
	npm ci --prefix tools/asl --no-audit --no-fund --silent
	touch $@

asl-tools: $(ASL_TOOLS)

## Run the gateway locally: moto on 127.0.0.1:4566, simulated providers, gateway on 127.0.0.1:$${PORT:-8080}.
run: $(INSTALLED)
	$(VENV)/bin/finops local

## Run every test (unit, integration, infra, e2e).
test: $(INSTALLED) $(LAYER) $(FOCUS_VALIDATOR) $(ASL_IF_NPM)
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup

test-fast: $(INSTALLED) $(FOCUS_VALIDATOR) $(ASL_IF_NPM)
	$(PY) -m pytest -q -x -m "not infra and not e2e"

## Synthesize the CDK app offline into cdk.out/ (cdk-nag runs on every synth).
synth: $(INSTALLED) $(LAYER)
	$(PY) infra/app.py

## Router: evaluate on the held-out sets (writes docs/router.md and docs/router_curve.png); retrain the artifact.
router-eval: $(INSTALLED)
	$(PY) scripts/router_eval.py

router-train: $(INSTALLED)
	$(PY) scripts/train_router.py

## Spot: replay a ~$400 Llama-3-8B fine-tune on the 2022-05-31 Spot prices (hunter vs cheapest vs On-Demand).
spot-backtest: $(INSTALLED)
	$(VENV)/bin/finops spot-backtest

bench: $(INSTALLED)
	$(PY) bench/run.py

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

clean:
	rm -rf cdk.out layers/deps/build .local .pytest_cache $(FOCUS_VENV)
