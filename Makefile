# The README's two commands: `make demo` (the main job) and `make test`.
# Both create .venv on first use and install torch's CPU build first (plain `torch` from PyPI
# would pull a multi-GB CUDA build), then this package with its test tools.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test demo clean

DEMO_MODEL ?= examples/demo-model
DEMO_DIR ?= .demo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

# The main job: detection on example images with the demo model, then metrics on labelled data.
# Until the trained demo model is shipped in examples/demo-model, a random tiny model stands in
# (said loudly: its scores mean nothing) and the images are constructed checkerboard/smooth pairs.
demo: install
	@mkdir -p $(DEMO_DIR)
	@if [ -d "$(DEMO_MODEL)" ]; then echo "$(DEMO_MODEL)" > $(DEMO_DIR)/model; else \
	  echo "NOTE: no trained demo model in $(DEMO_MODEL) yet; using a random tiny model (its scores mean nothing)."; \
	  $(VENV)/bin/deepvrm init --preset tiny --output $(DEMO_DIR)/random-model > /dev/null 2>&1; \
	  echo "$(DEMO_DIR)/random-model" > $(DEMO_DIR)/model; fi
	@$(PY) -m deepvrm.analysis.synthetic --output $(DEMO_DIR)/labelled --per-class 8 > /dev/null
	@if ls examples/*.* > /dev/null 2>&1; then echo examples > $(DEMO_DIR)/images; else echo $(DEMO_DIR)/labelled > $(DEMO_DIR)/images; fi
	$(VENV)/bin/deepvrm detect $$(cat $(DEMO_DIR)/images) --model $$(cat $(DEMO_DIR)/model) --no-progress
	$(VENV)/bin/deepvrm evaluate $(DEMO_DIR)/labelled --model $$(cat $(DEMO_DIR)/model)

clean:
	rm -rf $(VENV) .pytest_cache $(DEMO_DIR)
