# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
MODELS := $(CURDIR)/models
DEMO_GRPC_PORT ?= 8500
DEMO_REST_PORT ?= 8501

.PHONY: demo test typecheck install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Quiet: pip's per-package lines and the build backend's notes are nothing a newcomer can act on;
# errors still print.
$(STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing tfstack and its dependencies into $(VENV) (a few minutes the first time)..."
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfstack train --base-path $(MODELS) --model-name digits
	MODELS=$(MODELS) GRPC_PORT=$(DEMO_GRPC_PORT) REST_PORT=$(DEMO_REST_PORT) BIN=$(BIN) bash scripts/demo-serve.sh

test: typecheck
	$(BIN)/python -m pytest -q

# mypy sees the packages under their installed names (tfstack.serving, ...) through a tree of
# links: the folders stay at the top of the repository, mapped by package-dir in pyproject.toml.
typecheck: $(STAMP)
	mkdir -p .mypy-src/tfstack
	for p in training export serving client; do ln -sfn ../../$$p .mypy-src/tfstack/$$p; done
	ln -sfn ../../tfstack/cli.py .mypy-src/tfstack/cli.py
	cd .mypy-src && MYPYPATH=. ../$(BIN)/python -m mypy --config-file ../pyproject.toml --cache-dir ../.mypy_cache \
		-p tfstack.training -p tfstack.export -p tfstack.serving -p tfstack.client -m tfstack.cli

clean:
	rm -rf $(VENV) runs models .pytest_cache .mypy-src .mypy_cache
