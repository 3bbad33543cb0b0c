# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
LAYER := layers/deps/build/.built

.PHONY: run test test-fast bench synth layers lint clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Lambda layer with the runtime dependencies, built from manylinux wheels for the Lambda runtime.
$(LAYER): pyproject.toml layers/deps/build.py infra/runtime.py $(INSTALLED)
	$(PY) layers/deps/build.py

layers: $(LAYER)

## Run the gateway locally: moto on 127.0.0.1:4566, simulated provider, gateway on 127.0.0.1:$${PORT:-8080}.
run: $(INSTALLED)
	$(VENV)/bin/finops local

## Run every test (unit, integration, infra, e2e).
test: $(INSTALLED) $(LAYER)
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup

test-fast: $(INSTALLED)
	$(PY) -m pytest -q -x -m "not infra and not e2e"

## Synthesize the CDK app offline into cdk.out/ (cdk-nag runs on every synth).
synth: $(INSTALLED) $(LAYER)
	$(PY) infra/app.py

bench: $(INSTALLED)
	$(PY) bench/run.py

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

clean:
	rm -rf cdk.out layers/deps/build .local .pytest_cache
