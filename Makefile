# segbench: every target installs what it needs first (the .venv stamp), so a fresh clone
# needs only `make bench` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

METHOD ?= headline
MODELS ?=
DATASET ?= synthetic
BUDGET ?= quick
SEEDS ?= 1
DEVICE ?= auto
EXECUTOR ?= local
RESULTS ?= results/local
REFERENCE = results/reference/$(DATASET)-$(BUDGET)
ARGS ?=
DRY_RUN ?=

.PHONY: bench reference verify-reference docs-results leaderboard verify tables plots test perf \
	lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-cache-dir --upgrade pip
	$(BIN)/python -m pip install --quiet --no-cache-dir -e ".[dev]"
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/python -m bench run --method "$(METHOD)" $(if $(MODELS),--model "$(MODELS)") \
		--dataset "$(DATASET)" --budget "$(BUDGET)" --seeds "$(SEEDS)" --device "$(DEVICE)" \
		--executor "$(EXECUTOR)" --results "$(RESULTS)" $(if $(DRY_RUN),--dry-run) $(ARGS)

# maintainers: regenerate the committed reference (run records, leaderboard, figures)
reference: $(STAMP)
	$(MAKE) bench RESULTS="$(REFERENCE)" ARGS="--update-reference $(ARGS)"
	$(BIN)/python -m bench plots --results "$(REFERENCE)" --update-reference

verify-reference: $(STAMP)
	$(BIN)/python -m bench verify --reference

# rewrite the reference excerpts quoted in README.md and docs/*.md from the reference's records
docs-results: $(STAMP)
	$(BIN)/python -m bench excerpts --update

leaderboard: $(STAMP)
	$(BIN)/python -m bench leaderboard --results "$(RESULTS)"

tables: $(STAMP)
	$(BIN)/python -m bench tables --budget "$(BUDGET)" --dataset "$(DATASET)" \
		--device "$(DEVICE)" --executor "$(EXECUTOR)" --results "$(RESULTS)" $(ARGS)

plots: $(STAMP)
	$(BIN)/python -m bench plots --results "$(RESULTS)" $(ARGS)

verify: $(STAMP)
	$(BIN)/python -m bench verify --results "$(RESULTS)"

test: $(STAMP)
	$(BIN)/python -m pytest -q

perf: $(STAMP)
	$(BIN)/python -m pytest tests/perf -m perf -o addopts="" --benchmark-enable \
		--benchmark-columns=min,median,iqr,rounds -q -s

lint: $(STAMP)
	$(BIN)/ruff check bench methods models tests

clean:
	rm -rf results/local \
		.pytest_cache .ruff_cache .benchmarks
