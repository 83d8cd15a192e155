# matfact: two commands on a fresh machine.
#   make demo   sets up .venv and runs `matfact demo`
#   make test   sets up .venv with the test tools and runs the suite
# Both are idempotent: a stamp file per dependency set, reinstalled only when
# pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

# Real datasets live beside the project (never inside it); honour a caller's choice.
SHARED_DATA := $(abspath $(CURDIR)/../shared/data)
ifeq ($(strip $(MATFACT_DATA)),)
ifneq ($(wildcard $(SHARED_DATA)),)
export MATFACT_DATA := $(SHARED_DATA)
endif
endif

.PHONY: demo test test-slow soak bench bench-quick docs lint clean help browser

help:
	@echo "make demo       set up and run the demo (ML-100K if present)"
	@echo "make test       set up and run the test suite (< 10 min on 2 cores)"
	@echo "make test-slow  the slow profile: long fuzzing, kill loops, wheel install"
	@echo "make soak       10-minute service soak + 30M-rating fit memory (by hand, not in CI)"
	@echo "make bench      install the peer libraries and regenerate docs/benchmarks.md"
	@echo "make bench-quick  every benchmark suite on small sizes (a smoke test, a few minutes)"
	@echo "make docs       build the user guide and API reference (MkDocs, strict)"
	@echo "make lint       ruff"

$(PY):
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "matfact needs Python >= 3.10"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PIP) install -e .
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(PY)
	$(PIP) install -e '.[dev]'
	@touch $@ $(VENV)/.stamp-base

# The peers, side by side with matfact in one venv. LightFM 1.17 only builds
# through the legacy setup.py path (its PEP 517 build fails with
# "'dict' object has no attribute '__LIGHTFM_SETUP__'"), which pip < 25.3 still
# offers; myFM imports pkg_resources, gone from setuptools >= 82.
$(VENV)/.stamp-bench: pyproject.toml $(VENV)/.stamp-dev
	$(PIP) install "pip<25.3" "setuptools<82" wheel
	$(PIP) install -e '.[bench]'
	$(PIP) install --no-build-isolation --no-use-pep517 "lightfm>=1.17"
	@touch $@

demo: $(VENV)/.stamp-base
	$(VENV)/bin/matfact demo

# The browser test drives Debian's chromium (Playwright's own download is unreachable here):
# install it with apt where we can (root); elsewhere that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && { apt-get install -y -q chromium >/dev/null 2>&1 \
	       || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } \
	  || echo "note: chromium is not installed; the browser test will skip"

test: $(VENV)/.stamp-dev browser
	$(PY) -m pytest

# pytest exits 5 when no test is selected; the slow profile may be empty on a branch.
test-slow: $(VENV)/.stamp-dev
	$(PY) -m pytest -m slow || test $$? -eq 5

# By hand and with the benchmarks, not in .ci/run: a 10-minute soak of the service (mixed
# reads and writes, a retrain + hot swap a minute, RSS sampled) and the peak memory of a fit
# on 30M synthetic ratings. Figures go to docs/reliability.md. SOAK_ARGS="--minutes 1" for short.
soak: $(VENV)/.stamp-dev
	$(PY) -m benchmarks.soak --json $(VENV)/soak.json $(SOAK_ARGS)

bench: $(VENV)/.stamp-bench
	$(PY) -m benchmarks all

# Every suite on small sizes (a few minutes): a smoke test that leaves docs/benchmarks.md alone.
bench-quick: $(VENV)/.stamp-bench
	$(PY) -m benchmarks all --quick --out $(VENV)/bench-quick

# The user guide and API reference (MkDocs, strict: a broken link fails), into .venv/site.
docs: $(VENV)/.stamp-dev
	$(VENV)/bin/mkdocs build --strict

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
