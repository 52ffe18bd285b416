# lstmgen: every target says why it exists.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS := $(VENV)/.extras

.PHONY: venv demo test generate lint bench accuracy limits sanitize fuzz clean

# The venv with lstmgen installed editable plus the test tools; rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e ".[test]"
	touch $(STAMP)
venv: $(STAMP)

# First contact: generate C for an example, build it with cffi, run it against the numpy golden.
demo: $(STAMP)
	$(VENV)/bin/lstmgen demo --out demo_out

# The optional Python extras the suite exercises (torch CPU wheel, onnx, onnxruntime, dask, atheris, expecttest):
# installed into the venv once, so `make test` runs every test a fresh machine can run.
$(EXTRAS): $(STAMP)
	$(VPY) -m pip install -q -e ".[test,extras]"
	touch $(EXTRAS)

# The whole suite (goldens, parity, schedules, standalone C, packaging). CI runs exactly this.
# It ends with one line naming what was skipped and why (system tools such as cross compilers).
test: $(EXTRAS)
	$(VPY) -m pytest -q

# Hostile input and faults, the long way (make test runs a bounded part of each): the generated C
# over 49 configs under gcc and clang ASan+UBSan (-O1/-O2/-O3), clang MSan and valgrind; 60 random
# specs against the reference; every fuzzer for 30-60 s; the 100k-step sequence against the reference.
sanitize: $(STAMP)
	$(VPY) -m pip install -q atheris
	LSTMGEN_FULL=1 $(VPY) -m pytest -q -s tests/test_sanitize.py tests/test_fuzz.py tests/test_hostile.py tests/test_cache.py tests/test_inputs.py

# Coverage-guided fuzzing only, as long as you like (make fuzz FUZZ_SECONDS=600); crashes land in
# fuzz/regressions/, which make test replays.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(VPY) -m pip install -q atheris onnx
	$(VPY) fuzz/run.py --seconds $(FUZZ_SECONDS)

# Speed against numpy, torch and onnxruntime (1 thread) on issue 3's five configs, plus this core's
# FMA peak; prints the README's "Speed" table and writes benchmarks/results.json (a few minutes).
# Not part of make test: tests never time things. `make bench BENCH_ARGS=--quick` for a quick look.
bench: $(STAMP)
	$(VPY) benchmarks/bench.py $(BENCH_ARGS)

# Float32 error against float64 torch on long sequences (issue 11): trained, adversarial and
# trained-like models at T = 100 .. 10000, B = 1 and 4, for lstmgen's default math, libm, torch
# float32 and onnxruntime; prints the README's accuracy table (about 5 minutes). Needs torch and
# onnxruntime (make test's extras). `make accuracy ACCURACY_ARGS=--quick` for a quick look.
accuracy: $(EXTRAS)
	$(VPY) benchmarks/accuracy/run.py $(ACCURACY_ARGS)

# Why the one-row recurrence step takes what it takes here: activation and FMA latency, and the
# step's time and W_hh bandwidth for H = 16 .. 512 (benchmarks/limits.py; under a minute).
limits: $(STAMP)
	$(VPY) benchmarks/limits.py

# Regenerate the checked-in C in generated/ (a test fails when it is stale).
generate: $(STAMP)
	$(VPY) examples/make_generated.py

# Style and obvious bugs in the Python.
lint: $(STAMP)
	$(VPY) -m pip install -q ruff
	$(VPY) -m ruff check lstmgen tests

clean:
	rm -rf $(VENV) demo_out build *.egg-info
