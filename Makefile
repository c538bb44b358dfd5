# Two commands do everything: `make demo` and `make test`. Both create/refresh .venv.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The Rust client's toolchain: cargo on PATH, else rustup's default location.
CARGO  ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)

.PHONY: demo test bench venv system-deps clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "python3.11 is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: system-deps $(STAMP)

# apt packages: fonts for matplotlib/quantstats (avoids Arial fallback noise); libzmq, Debian's
# Rust crates (and cargo when absent) for the reference client in clients/rust.
system-deps:
	@sh scripts/install-system-deps.sh

demo: venv
	$(VENV)/bin/lbml demo

test: venv
	cd clients/rust && $(CARGO) test --release --quiet
	$(PY) -m pytest -q

bench: venv
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) runs build *.egg-info clients/rust/target
