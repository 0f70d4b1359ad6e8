# Two commands on a fresh machine: `make demo` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
KUBEBOOK := $(VENV)/bin/kubebook

.PHONY: setup binaries browser lab demo test unit lab-test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# setuptools announces every editable install with a warning nobody can act on: filtered
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Build (or reuse from ~/.cache/kubebook) etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl and kwok from their Go modules.
binaries: setup
	$(KUBEBOOK) lab build

# The classroom: start (or reuse) a lab, then JupyterLab on 127.0.0.1 at runbooks/ (prints the URL).
# `make lab LAB=student-07 PORT=8888` for another lab or a fixed port.
lab: binaries
	$(KUBEBOOK) jupyter $(if $(LAB),--lab $(LAB)) $(if $(PORT),--port $(PORT))

# Headless Chromium for the browser tests: Debian's package (Playwright's own browser download is
# not reachable from these machines). Where it cannot be installed the browser tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium could not be installed: the browser tests will be skipped"

demo: binaries
	$(KUBEBOOK) demo --output-dir runs

# Lab tests wait on controllers as much as they compute: six workers, each with its own lab, share
# the two cores (measured on a clean clone: 4 workers 836 s, 6 workers 755 s, the cores 96-100 % busy
# with 6 until the last groups). A test module (or a runbook topic) stays on one worker, in order;
# the longest groups start first (tests/conftest.py LONGEST_GROUPS), not xdist's most-tests-first.
TEST_WORKERS ?= 6
test: binaries browser
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=20

unit: setup
	KUBEBOOK_SKIP_LAB=1 $(PY) -m pytest -q

bench: binaries
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache
