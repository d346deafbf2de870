# The two commands: `make demo` (runs the main job on the embedded dataset) and `make test`.
# Both create .venv and install the project into it first when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA_ROOT ?=
# ImageNet weights for the table trainings (spl weights convert's output; README "Real datasets").
PRETRAINED ?=
PRETRAINED_SET = $(if $(PRETRAINED),--set pretrained=$(PRETRAINED))
SEEDS ?= 1
RUNS ?= runs
PYTEST_ARGS ?=
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo demo-full test lint bench tables

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: 5 replicates by default, each with its own GAN (issue #19); DEMO_SEED_START=5 runs the second seed set.
DEMO_SEEDS ?= 5
DEMO_SEED_START ?= 0
# Independent steps at once, 1 torch thread each (README "Parallel steps"); DEMO_JOBS=1 runs them one by one.
DEMO_JOBS ?= 2
demo: $(STAMP)
	$(BIN)/spl experiment run tables/specs/demo.yaml --runs $(RUNS) --seeds $(DEMO_SEEDS) --seed-start $(DEMO_SEED_START) --jobs $(DEMO_JOBS)
	$(BIN)/spl tables render tables/specs/demo.yaml --runs $(RUNS) --seeds $(DEMO_SEEDS) --seed-start $(DEMO_SEED_START)

# Issue #19's reproduction check: the demo on a second seed set (5-9), then every verdict compared
# between the two sets (tables/out/demo_reproduce.md; a verdict that flips is reported as unstable).
.PHONY: demo-reproduce
demo-reproduce: $(STAMP)
	$(BIN)/spl experiment run tables/specs/demo.yaml --runs $(RUNS) --seeds $(DEMO_SEEDS) --seed-start $(DEMO_SEEDS) --jobs $(DEMO_JOBS)
	$(BIN)/spl tables reproduce tables/specs/demo.yaml --runs $(RUNS) --seeds $(DEMO_SEEDS) --seed-sets 0,$(DEMO_SEEDS)

# Everything the demo leaves out for time: WGAN-GP rows and the λ sensitivity rows (shares the demo's cached steps).
demo-full: $(STAMP)
	$(BIN)/spl experiment run tables/specs/demo-full.yaml --runs $(RUNS) --seeds $(DEMO_SEEDS) --jobs $(DEMO_JOBS)
	$(BIN)/spl tables render tables/specs/demo-full.yaml --runs $(RUNS) --seeds $(DEMO_SEEDS)

# demo-full on the second seed set (5-9; its DCGAN rows are demo-reproduce's), every verdict compared between
# the two sets → tables/out/demo-full_reproduce.md.
.PHONY: demo-full-reproduce
demo-full-reproduce: $(STAMP)
	$(BIN)/spl experiment run tables/specs/demo-full.yaml --runs $(RUNS) --seeds $(DEMO_SEEDS) --seed-start $(DEMO_SEEDS) --jobs $(DEMO_JOBS)
	$(BIN)/spl tables reproduce tables/specs/demo-full.yaml --runs $(RUNS) --seeds $(DEMO_SEEDS) --seed-sets 0,$(DEMO_SEEDS)

# The study beyond the paper (issues #13, #19): Δ mAP of SPL, smooth and the real ceiling vs the baseline against
# the labelled-set size → tables/out/study.md, .csv, .png. STUDY_SEEDS (optional) overrides the spec's `seeds`.
STUDY ?= tables/specs/study.yaml
STUDY_JOBS ?= 2
STUDY_SEEDS ?=
.PHONY: study
study: $(STAMP)
	$(BIN)/spl study run $(STUDY) --runs $(RUNS) --jobs $(STUDY_JOBS) $(if $(STUDY_SEEDS),--seeds $(STUDY_SEEDS))
	$(BIN)/spl study render $(STUDY) --runs $(RUNS) $(if $(STUDY_SEEDS),--seeds $(STUDY_SEEDS))

# The study on a second, disjoint seed set (STUDY_SET seeds from STUDY_SET), every size's and row's verdict compared
# between the two sets → tables/out/study_reproduce.md (a verdict that flips is unstable).
STUDY_SET ?= 5
.PHONY: study-reproduce
study-reproduce: $(STAMP)
	$(BIN)/spl study run $(STUDY) --runs $(RUNS) --jobs $(STUDY_JOBS) --seeds $(STUDY_SET) --seed-start $(STUDY_SET)
	$(BIN)/spl study reproduce $(STUDY) --runs $(RUNS) --seeds $(STUDY_SET) --seed-sets 0,$(STUDY_SET)

# pytest-xdist: TEST_WORKERS processes (2 = the 2 cores CI has); TEST_WORKERS=0 runs in one process.
# --dist loadfile keeps each test file on one worker, so a module-scoped fixture (a trained model) is built once.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# ruff (settings in ruff.toml); .ci/run calls it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .

# Chaos (issue #21): `spl experiment run` SIGKILLed at CHAOS_KILLS seeded random instants, restarted each time;
# the metrics and table must equal an uninterrupted run's (benchmarks/chaos.py). CHAOS_SPEC=tables/specs/demo.yaml
# CHAOS_ARGS=--exec for the larger run. The test suite runs the tiny spec with 20 kills.
CHAOS_SPEC ?= tests/fixtures/chaos_tiny.yaml
CHAOS_KILLS ?= 20
CHAOS_SEED ?= 0
CHAOS_ARGS ?=
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python benchmarks/chaos.py $(CHAOS_SPEC) --work $(RUNS)/chaos --kills $(CHAOS_KILLS) --seed $(CHAOS_SEED) $(CHAOS_ARGS)

bench: $(STAMP)
	$(BIN)/spl bench loader
	$(BIN)/spl bench metrics
	$(BIN)/spl bench kernels
	$(BIN)/spl bench gan
	$(BIN)/spl bench train

# Every GPU path in one call (≤ 8 min on an H200; README "GPU check"). Without CUDA the CUDA stages skip.
# GPU_CHECK_ARGS: e.g. --dry-run, --stages kernels,train, --budget-scale 2.
GPU_CHECK_ARGS ?=
.PHONY: gpu-check
gpu-check: $(STAMP)
	$(BIN)/spl bench gpu-check $(GPU_CHECK_ARGS)

tables/out/table1.md: tables/specs/table1.yaml $(STAMP)
	test -n "$(DATA_ROOT)" || (echo "set DATA_ROOT=/path/to/WIDER-Attribute" >&2; exit 2)
	$(BIN)/spl experiment run tables/specs/table1.yaml --data-root "$(DATA_ROOT)" --seeds $(SEEDS) --runs $(RUNS) \
		$(PRETRAINED_SET)
	$(BIN)/spl tables render tables/specs/table1.yaml --runs $(RUNS) $(PRETRAINED_SET)

tables/out/table2.md: tables/specs/table2.yaml $(STAMP)
	test -n "$(DATA_ROOT)" || (echo "set DATA_ROOT=/path/to/NUS-WIDE" >&2; exit 2)
	$(BIN)/spl experiment run tables/specs/table2.yaml --data-root "$(DATA_ROOT)" --seeds $(SEEDS) --runs $(RUNS) \
		$(PRETRAINED_SET)
	$(BIN)/spl tables render tables/specs/table2.yaml --runs $(RUNS) $(PRETRAINED_SET)

tables/out/table3.md: tables/specs/table3.yaml $(STAMP)
	test -n "$(DATA_ROOT)" || (echo "set DATA_ROOT=/path/to/coco2014" >&2; exit 2)
	$(BIN)/spl experiment run tables/specs/table3.yaml --data-root "$(DATA_ROOT)" --seeds $(SEEDS) --runs $(RUNS) \
		$(PRETRAINED_SET)
	$(BIN)/spl tables render tables/specs/table3.yaml --runs $(RUNS) $(PRETRAINED_SET)

.PHONY: table1 table2 table3
table1: tables/out/table1.md
table2: tables/out/table2.md
table3: tables/out/table3.md

# Each table needs its own dataset: WIDER_ROOT, NUS_ROOT, COCO_ROOT.
tables: $(STAMP)
	$(MAKE) table1 DATA_ROOT="$(WIDER_ROOT)"
	$(MAKE) table2 DATA_ROOT="$(NUS_ROOT)"
	$(MAKE) table3 DATA_ROOT="$(COCO_ROOT)"
