# tiler: `make demo` and `make test` set everything up in .venv on a machine with Python 3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test check browser lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,train]'
	touch $(STAMP)

install: $(STAMP)

## demo: generate the synthetic 8000 x 8000 field and run the plant pipeline on it and on a real tile
demo: $(STAMP)
	$(BIN)/tiler demo --out demo-output

## test: the checks, then the whole suite (property tests against the whole-image reference,
## CLI, clusters, the report rendered in headless Chromium)
test: check browser
	$(BIN)/python -m pytest

## check: ruff (lint and format) and mypy, strict on the pure layers ([tool.mypy] in pyproject.toml)
TYPED := $(wildcard tiler/kernels tiler/tiling tiler/steps tiler/cnn tiler/stand)
check: lint
	$(BIN)/mypy $(TYPED)

## browser: Chromium for the report's rendering test (Debian's package, when missing)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; } || \
	{ echo "make test needs Chromium to render the report: apt-get install chromium"; exit 1; }

lint: $(STAMP)
	$(BIN)/ruff check tiler tests benchmarks
	$(BIN)/ruff format --check tiler tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format tiler tests benchmarks
	$(BIN)/ruff check --fix tiler tests benchmarks

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis .ruff_cache *.egg-info

.PHONY: bench bench-scale bench-10gp profile bench-yield

## bench: tiler vs the whole-image reference vs rioxarray + dask-image on a 64 MP synthetic field
## (BENCH_ARGS="--tiler-at REF" adds tiler as of another commit, for before/after in one run)
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python -m benchmarks.bench --megapixels 64 --chunk 2048 --out benchmarks/results $(BENCH_ARGS)

## bench-scale: tiler alone on a 32768 x 32768 (1.07 GP) synthetic field and on the 64 MP one
bench-scale: $(STAMP)
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python -m benchmarks.scale --size 32768 --base-size 8000 --chunk 2048 --out benchmarks/results

.PHONY: accuracy

## accuracy: tiler's objects scored against ground truth (8 NAIP tiles with tree points, a synthetic field),
## then classical and CNN presets side by side (urban-trees val split, NAIP, unseen synthetic fields)
accuracy: $(STAMP)
	$(BIN)/python -m benchmarks.accuracy --out benchmarks/results
	$(BIN)/python -m benchmarks.accuracy_side_by_side --out benchmarks/results

.PHONY: fuzz

## fuzz: a fuzz campaign of `tiler run` on mutated GeoTIFFs (FUZZ_CASES=2000, FUZZ_SEED, FUZZ_JOBS,
## FUZZ_TIMEOUT, FUZZ_MEMORY_MB): outcomes per mutation kind; failing files in fuzz-failures/
fuzz: $(STAMP)
	$(BIN)/python tests/fuzz_tiff.py --out fuzz-failures

.PHONY: bench-striped

## bench-striped: striped (untiled) vs tiled GeoTIFF inputs, 2048 x 2048 tiles vs tiles that follow the strips
bench-striped: $(STAMP)
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python -m benchmarks.striped --size 8000 --wide 4096x32768 --extra 2048x8000,1024x4096 \
		--wide-extra 512x8192,128x32768 --repeats 3 --out benchmarks/results

## profile: a cProfile of each pass of a default run on the 1 GP field (benchmarks/results/profile-passes.md)
profile: $(STAMP)
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python -m benchmarks.profile_passes

## bench-10gp: bench-scale, then the 1 GP field placed ten times by a VRT (10.7 GP, no copy written)
bench-10gp: $(STAMP)
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python -m benchmarks.scale --size 32768 --base-size 8000 --chunk 2048 --tenfold --out benchmarks/results

## bench-yield: tiler yield calibrate/predict on a 64 MP field with 2000 simulated monitor records
## against its known yield, then the cell features of the 1 GP run (run bench-scale first)
bench-yield: $(STAMP)
	$(BIN)/python -m benchmarks.yield_calibration --out benchmarks/results
	$(BIN)/python -m benchmarks.yield_features --out benchmarks/results
