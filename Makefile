# blast-grpc: every target bootstraps what it needs (venv, packages, protobuf code, Chromium).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROTOS := $(shell find protos -name '*.proto')
GEN    := blast_grpc/_proto/.stamp
BUF    := .cache/buf/node_modules/.bin/buf
CONFIG ?= config.yaml
MINIWOB := .cache/miniwob/html/miniwob/click-button.html

.PHONY: serve test test-unit demo proto lint lint-proto chromium pydocs miniwob bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(GEN): $(STAMP) $(PROTOS) blast_grpc/protogen.py
	$(BIN)/python -m blast_grpc.protogen
	touch $@

proto: $(STAMP)
	$(BIN)/python -m blast_grpc.protogen
	touch $(GEN)

chromium: $(STAMP)
	@$(BIN)/python -m blast_grpc.chromium --install

## make pydocs: Python's HTML docs (Debian python3-doc), the long real pages of the extraction tests
pydocs: $(STAMP)
	@$(BIN)/python -m blast_grpc.pydocs --install

## make miniwob: MiniWoB++ 1.1.0's html/ folder (pinned wheel, no dependencies) in .cache/miniwob
$(MINIWOB): | $(STAMP)
	$(BIN)/python -m blast_grpc.miniwob

miniwob: $(MINIWOB)

## make serve: the engine with config.yaml (coordinator + browser workers)
serve: $(GEN) chromium
	$(BIN)/blast-grpc serve --config $(CONFIG)

## make demo: simulated model + demo site + engine + one task, streamed
demo: $(GEN) chromium
	$(BIN)/blast-grpc demo

$(BUF):
	mkdir -p .cache/buf
	cd .cache/buf && npm install --silent --no-audit --no-fund @bufbuild/buf

lint-proto: $(BUF)
	$(BUF) lint

lint: $(GEN)
	$(BIN)/ruff check blast_grpc gateway tests
	$(BIN)/mypy blast_grpc gateway

## make test: lint, type-check, buf lint, then the whole suite against real processes
test: $(GEN) chromium pydocs $(MINIWOB) lint lint-proto
	$(BIN)/pytest

## make test-unit: the fast tier only (tests/unit: fakes, no Chromium, no engine), in seconds
test-unit: $(GEN)
	$(BIN)/pytest tests/unit -q

## make bench: the benchmark suite (real Chromium, simulated model); writes bench/results/
## (BENCH_ARGS="--quick", "--only fanout", "--seed 2", ...)
bench: $(GEN) chromium pydocs $(MINIWOB)
	$(BIN)/python -m blast_grpc.bench $(BENCH_ARGS)

clean:
	rm -rf blast_grpc/_proto .cache .pytest_cache
