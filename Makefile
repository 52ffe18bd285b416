# lstmgen: every target says why it exists.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test generate lint bench sanitize clean

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

# The whole suite (goldens, parity, schedules, standalone C, packaging). CI runs exactly this.
test: $(STAMP)
	$(VPY) -m pytest -q

# Regenerate the checked-in C in generated/ (a test fails when it is stale).
generate: $(STAMP)
	$(VPY) examples/make_generated.py

# Style and obvious bugs in the Python.
lint: $(STAMP)
	$(VPY) -m pip install -q ruff
	$(VPY) -m ruff check lstmgen tests

clean:
	rm -rf $(VENV) demo_out build *.egg-info
