# Set-up and the two everyday commands. `make train` and `make test` create the virtual
# environment on first use: torch first, pinned to the CPU build (an unpinned torch pulls
# gigabytes of CUDA packages), then the package with its extras under the same constraint.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[train,serve,cluster,dev]"
	touch $(STAMP)

# Train, evaluate and export a router on the bundled sample (pipelines/sample/mmlu_pro_sample.jsonl.gz).
train: $(STAMP)
	$(BIN)/router train $(if $(CONFIG),--config $(CONFIG))

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_embed.py

clean:
	rm -rf $(VENV) .cache mlruns mlruns.db
