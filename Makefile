# freshdb's vocabulary. `make test` and `make demo` each run whatever setup is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BENCH_VENV := .bench-venv
# The oldest SQLAlchemy line freshdb supports: `make test` pins its use of SQLAlchemy's
# engine set-up (see src/freshdb/engine_factory.py) on it as well.
SA20_VENV := .venv-sqlalchemy20

# Every server freshdb is tested on. Each runs its local stand-in for the official
# image (built from Debian packages where no registry is reachable, see docker/)
# when present; otherwise freshdb pulls the official image.
MATRIX := postgres:15 postgres:17 postgres:18 mariadb:10.11 mariadb:11.8 mysql:9
local_or_official = $(shell docker image inspect freshdb-local/$(1) >/dev/null 2>&1 && echo freshdb-local/$(1) || echo $(1))
MATRIX_IMAGES = $(foreach server,$(MATRIX),$(call local_or_official,$(server)))
# The defaults: `make test` runs the whole suite on them, and the compatibility
# subset on the rest of the matrix.
POSTGRES_IMAGE = $(call local_or_official,postgres:17)
MARIADB_IMAGE = $(call local_or_official,mariadb:10.11)
MYSQL_IMAGE = $(call local_or_official,mysql:9)
IMAGE_ENV = FRESHDB_POSTGRES_IMAGE=$(POSTGRES_IMAGE) FRESHDB_MARIADB_IMAGE=$(MARIADB_IMAGE) \
            FRESHDB_MYSQL_IMAGE=$(MYSQL_IMAGE) FRESHDB_MATRIX_IMAGES="$(MATRIX_IMAGES)"

.PHONY: setup venv engine images test test-matrix test-unit demo lint format bench clean

setup: venv engine images

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	bash docker/ensure-build-headers.sh
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(SA20_VENV)/.installed: pyproject.toml
	test -x $(SA20_VENV)/bin/python || $(PYTHON) -m venv $(SA20_VENV)
	$(SA20_VENV)/bin/python -m pip install -q --upgrade pip
	$(SA20_VENV)/bin/python -m pip install -q -e '.[dev]' 'sqlalchemy>=2.0,<2.1'
	touch $@

engine:
	bash docker/ensure-engine.sh

images: engine
	@if command -v debootstrap >/dev/null 2>&1 || [ -f /etc/debian_version ]; then \
	  bash docker/build-images.sh all; \
	else \
	  echo "freshdb setup: not building local images here; the official images will be pulled"; \
	fi

# The whole suite on the defaults, then the compatibility subset on every other server,
# then the engine set-up pins on SQLAlchemy 2.0.
test: setup $(SA20_VENV)/.installed
	env $(IMAGE_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS)
	env $(IMAGE_ENV) $(BIN)/python -m tests.matrix --marker compat \
	  --images "$(filter-out $(POSTGRES_IMAGE) $(MARIADB_IMAGE),$(MATRIX_IMAGES))" $(MATRIX_ARGS)
	env $(IMAGE_ENV) $(SA20_VENV)/bin/python -m pytest -q tests/integration/test_database.py

# Every server-behaviour test on every server of the matrix, with a summary per server.
test-matrix: setup
	env $(IMAGE_ENV) $(BIN)/python -m tests.matrix --marker server --copies 9 \
	  --images "$(MATRIX_IMAGES)" $(MATRIX_ARGS)

test-unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

demo: setup
	env $(IMAGE_ENV) $(BIN)/python examples/demo.py

lint: venv
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy src

format: venv
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

bench: setup
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e '.[dev]' -r benchmarks/requirements.txt
	env $(IMAGE_ENV) $(BENCH_VENV)/bin/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(SA20_VENV) .mypy_cache .ruff_cache build src/*.egg-info
