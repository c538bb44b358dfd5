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

venv: $(STAMP)

# apt packages, per target (scripts/install-system-deps.sh): `demo` only wants fonts for the plots
# and needs no root; `test` installs what the suite starts for real (Debian's Rust crates and cargo
# for clients/rust, PostgreSQL, Chromium).
system-deps:
	@sh scripts/install-system-deps.sh test

demo: venv
	@sh scripts/install-system-deps.sh demo
	$(VENV)/bin/lbml demo

test: system-deps venv
	cd clients/rust && $(CARGO) test --release --quiet
	$(PY) -m pytest -q

bench: venv
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) runs build *.egg-info clients/rust/target
