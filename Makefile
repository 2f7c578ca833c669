# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
MODELS := $(CURDIR)/models
DEMO_GRPC_PORT ?= 8500
DEMO_REST_PORT ?= 8501

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfstack train --base-path $(MODELS) --model-name digits
	MODELS=$(MODELS) GRPC_PORT=$(DEMO_GRPC_PORT) REST_PORT=$(DEMO_REST_PORT) BIN=$(BIN) bash scripts/demo-serve.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs models .pytest_cache
