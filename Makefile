# The two commands: `make pipeline` (the whole pipeline through `dvc repro`) and `make test`.
# Both create .venv and install the pinned dependencies first, and are safe to run again.
# Also: `make compare`, the experiments side by side in 120 columns.

VENV := .venv
STAMP := $(VENV)/.installed-stamp
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# No telemetry, no update checks, no hub look-ups for the offline default.
export DVC_NO_ANALYTICS := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install pipeline test compare

$(STAMP): pyproject.toml requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(STAMP)

pipeline: $(STAMP)
	dvc repro
	@python -m ravdess_ser.report experiments/metrics.json experiments/crossval/metrics.json
	@dvc plots show --out experiments/plots/html >/dev/null && \
		echo "Plots: experiments/plots/html/index.html (works offline; data: experiments/plots/*.csv; or run 'dvc plots show')"

test: $(STAMP)
	python -m pytest

compare: $(STAMP)
	@python -m ravdess_ser.compare
