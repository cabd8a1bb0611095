# `make run` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
CONFIG ?= config/local.yaml

.PHONY: run test check test-spark4 bench clean java

java:
	@command -v java >/dev/null 2>&1 || { echo "Java 17 is required (Spark 3.5 runs on Java 8/11/17): install it, e.g. 'apt-get install openjdk-17-jre-headless', then retry." >&2; exit 1; }
	@java -version 2>&1 | grep -Eq 'version "(1\.8|11|17)' || { echo "Found $$(java -version 2>&1 | head -1); Spark 3.5 needs Java 8, 11 or 17 (17 recommended). Point JAVA_HOME/PATH at a Java 17 and retry." >&2; exit 1; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local,dev]'
	touch $@

run: java $(VENV)/.installed
	$(VENV)/bin/lakehouse --config $(CONFIG) run

test: java $(VENV)/.installed
	$(PY) -m pytest

check: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The Spark 4 lane: the same code and tests on Spark 4.0 + Delta 4.0 (Glue 6 / EMR Spark 8 line).
.venv-spark4/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-spark4
	.venv-spark4/bin/python -m pip install --quiet --upgrade pip
	.venv-spark4/bin/python -m pip install --quiet -e '.[dev]' 'pyspark==4.0.1' 'delta-spark==4.0.1' 'pandas==2.2.3' 'pyarrow==18.1.0'
	touch $@

test-spark4: java .venv-spark4/.installed
	.venv-spark4/bin/python -m pytest -m "not slow"

bench: java $(VENV)/.installed
	$(PY) -m benchmarks.apply_bench

clean:
	rm -rf data spark-warehouse metastore_db derby.log .pytest_cache
