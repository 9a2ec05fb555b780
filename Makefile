PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Two cores on CI: one pytest worker per core.
PYTEST_WORKERS ?= 2

.PHONY: demo test test-tensorflow test-jax install install-test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(VENV)/bin/python
	$(PIP) install -q -e ".[tensorflow,jax,data,plot,eval]"

install-test: $(VENV)/bin/python
	$(PIP) install -q -e ".[test]"

demo: install
	$(PY) -m keras_unitscale.cli demo

# The whole suite on TensorFlow, then on JAX; fails if either fails.
test: install-test
	$(MAKE) test-tensorflow
	$(MAKE) test-jax

test-tensorflow:
	KERAS_BACKEND=tensorflow $(PY) -m pytest -n $(PYTEST_WORKERS) -q tests

test-jax:
	KERAS_BACKEND=jax $(PY) -m pytest -n $(PYTEST_WORKERS) -q tests

clean:
	rm -rf $(VENV) build dist *.egg-info
