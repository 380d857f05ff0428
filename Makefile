# Two set-up commands for a fresh machine (see README):
#   make demo   - install, ingest the bundled sample into the embedded store, learn, run a category query
#   make test   - install with the test extras and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STORE ?= $(CURDIR)/artifacts/sample.db

.PHONY: install install-test demo test clean es-up es-down os-up os-down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# PyPI's torch wheel brings ~3 GB of nvidia-* wheels; one dropped connection used to fail the
# whole install. pip resumes a broken download (--resume-retries) and the install is tried up
# to three times; pip's cache keeps what already arrived.
PIP_INSTALL = scripts/pip-install $(BIN)/pip

# torch first and pinned: an unpinned torch pulls whatever is newest (see README).
# ./native (ctir_es_native, Rust: the tantivy engine's BM25F scorer) is built by cargo through
# maturin, which pip fetches for the build; not on PyPI, so it is installed from here first.
install: $(BIN)/python
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) ./native
	$(PIP_INSTALL) -e ".[train]"

install-test: $(BIN)/python
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) ./native
	$(PIP_INSTALL) -e ".[train,test]"

# learn: measured on the sample, it wins (P@10 16.9 vs 15.5 on held-out products) in ~40 s on
# 2 cores, so the demo serves what a shop would (docs/learning.md)
demo: install
	$(BIN)/ctir-es ingest sample --store $(STORE)
	$(BIN)/ctir-es learn --store $(STORE)
	$(BIN)/ctir-es query "Kitchen & Dining > Cookware" --store $(STORE)
	@echo
	@echo "Next, in this shell:  . $(BIN)/activate && export CTIR_ES_STORE=$(STORE)"
	@echo "  then try:           ctir-es query 'Watches > Wrist Watches'   (or: ctir-es serve, then open http://127.0.0.1:8000)"

test: install-test
	$(BIN)/python -m pytest -q

# A Docker-free local Elasticsearch (Maven Central's test distribution; see README):
#   make es-up    fetch once, start a node on 127.0.0.1, print CTIR_ES_TEST_URL=...
#   make es-down  stop it (ES_VERSION=9.2.4 / ES_NODES=3 select another version / size)
ES_VERSION ?= 8.19.21
ES_NODES ?= 1
es-up:
	scripts/elasticsearch-local up --version $(ES_VERSION) --nodes $(ES_NODES)

es-down:
	scripts/elasticsearch-local down

# A Docker-free local OpenSearch 2.19.1 with the k-NN plugin (Lucene engine) and lang-painless,
# on 127.0.0.1:9400 (docs/opensearch.md, "Local node"):
#   make os-up    fetch once, start the node, print CTIR_ES_OS_URL=...
#   make os-down  stop it
os-up:
	scripts/opensearch-local up

os-down:
	scripts/opensearch-local down

clean:
	rm -rf $(VENV) artifacts .pytest_cache
