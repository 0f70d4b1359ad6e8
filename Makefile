# Two commands on a fresh machine: `make demo` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
KUBEBOOK := $(VENV)/bin/kubebook

.PHONY: setup binaries demo test unit lab-test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Build (or reuse from ~/.cache/kubebook) etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl and kwok from their Go modules.
binaries: setup
	$(KUBEBOOK) lab build

demo: binaries
	$(KUBEBOOK) demo --output-dir runs

test: binaries
	$(PY) -m pytest -q -rs

unit: setup
	KUBEBOOK_SKIP_LAB=1 $(PY) -m pytest -q

bench: binaries
	$(PY) bench/lab_start.py

clean:
	rm -rf $(VENV) runs .pytest_cache
