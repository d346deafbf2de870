# The two commands: `make demo` (runs the main job on the embedded dataset) and `make test`.
# Both create .venv and install the project into it first when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA_ROOT ?=
SEEDS ?= 1
PYTEST_ARGS ?=

.PHONY: install demo test bench tables clean-runs

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/spl demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/spl bench loader
	$(BIN)/spl bench metrics
	$(BIN)/spl bench kernels
	$(BIN)/spl bench gan
	$(BIN)/spl bench train

tables/out/table1.md: $(STAMP)
	test -n "$(DATA_ROOT)" || (echo "set DATA_ROOT=/path/to/WIDER-Attribute" >&2; exit 2)
	$(BIN)/spl experiment run tables/specs/table1.yaml --data-root "$(DATA_ROOT)" --seeds $(SEEDS)
	$(BIN)/spl tables render tables/specs/table1.yaml

tables/out/table2.md: $(STAMP)
	test -n "$(DATA_ROOT)" || (echo "set DATA_ROOT=/path/to/NUS-WIDE" >&2; exit 2)
	$(BIN)/spl experiment run tables/specs/table2.yaml --data-root "$(DATA_ROOT)" --seeds $(SEEDS)
	$(BIN)/spl tables render tables/specs/table2.yaml

tables/out/table3.md: $(STAMP)
	test -n "$(DATA_ROOT)" || (echo "set DATA_ROOT=/path/to/coco2014" >&2; exit 2)
	$(BIN)/spl experiment run tables/specs/table3.yaml --data-root "$(DATA_ROOT)" --seeds $(SEEDS)
	$(BIN)/spl tables render tables/specs/table3.yaml

.PHONY: table1 table2 table3
table1: tables/out/table1.md
table2: tables/out/table2.md
table3: tables/out/table3.md
tables: table1 table2 table3
