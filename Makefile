# Set-up and the two everyday commands. `make train` and `make test` create the virtual
# environment on first use: torch first, pinned to the CPU build (an unpinned torch pulls
# gigabytes of CUDA packages), then the package with its extras under the same constraint.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test bench clean

install: $(STAMP)

# Each step says what it does; pip's own progress bars show on a terminal only (a CI log gets the step lines).
PIP = $(BIN)/pip install $$([ -t 1 ] || echo --quiet)

$(STAMP): pyproject.toml constraints.txt
	@echo "[install 1/3] virtual environment $(VENV), latest pip"
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	@echo "[install 2/3] torch 2.13.0, CPU build (about 200 MB: a few minutes on a first install)"
	$(PIP) -c constraints.txt torch==2.13.0
	@echo "[install 3/3] learned-router and its extras (train, serve, cluster, dev)"
	$(PIP) -c constraints.txt -e ".[train,serve,cluster,dev]"
	touch $(STAMP)
	@echo "[install] done: $(VENV)"

# Train, evaluate and export a router on the bundled sample (data/mmlu_pro_sample.jsonl.gz).
train: $(STAMP)
	$(BIN)/router train $(if $(CONFIG),--config $(CONFIG))

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_embed.py

clean:
	rm -rf $(VENV) .cache mlruns mlflow.db
