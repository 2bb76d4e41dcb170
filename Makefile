# The two commands: `make pipeline` (the whole pipeline through `dvc repro`) and `make test`.
# Both create .venv and install the pinned dependencies first, and are safe to run again.
# Also: `make compare` (experiments side by side in 120 columns) and `make test-fast` (the tests that build no DVC
# project, start no server and take under 3 s each).

VENV := .venv
STAMP := $(VENV)/.installed-stamp
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# No telemetry, no update checks, no hub look-ups for the offline default.
export DVC_NO_ANALYTICS := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install pipeline test test-fast compare

$(STAMP): pyproject.toml requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(STAMP)

# Each timed command's wall time and machine go to benchmarks/results/timings.json (benchmarks/timed.py).
TIMED := python benchmarks/timed.py

# dvc repro with dvc.lock rewritten stage by stage instead of whole after every stage (ravdess_ser/dvc_cli.py).
pipeline: $(STAMP)
	$(TIMED) "make pipeline: dvc repro" -- python -m ravdess_ser.dvc_cli repro
	@python -m ravdess_ser.report experiments/train/metrics.json experiments/crossval/metrics.json
	@dvc plots show --out experiments/plots >/dev/null && \
		echo "Plots: experiments/plots/index.html (works offline; or run 'dvc plots show')"

# pytest-xdist workers, each taking a whole test module at a time (a DVC module's tests share the project its
# module fixture builds, in order), the longest first (LONGEST_MODULES in tests/conftest.py): 2 fit 2 cores;
# `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(TIMED) "make test" -- python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# Every test but those marked dvc, server or slow (pyproject.toml): about a minute on 2 cores (docs/development.md).
test-fast: $(STAMP)
	$(TIMED) "make test-fast" -- python -m pytest -m "not dvc and not server and not slow"

compare: $(STAMP)
	@python -m ravdess_ser.compare
