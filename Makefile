# `make run` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
CONFIG ?= config/local.yaml

.PHONY: run test check test-search test-spark4 test-athena test-aws bench clean java postgres deploy-artifacts

java:
	@command -v java >/dev/null 2>&1 || { echo "Java 17 is required (Spark 3.5 runs on Java 8/11/17): install it, e.g. 'apt-get install openjdk-17-jre-headless', then retry." >&2; exit 1; }
	@java -version 2>&1 | grep -Eq 'version "(1\.8|11|17)' || { echo "Found $$(java -version 2>&1 | head -1); Spark 3.5 needs Java 8, 11 or 17 (17 recommended). Point JAVA_HOME/PATH at a Java 17 and retry." >&2; exit 1; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local,dev]'
	touch $@

# The non-PHI zone has no default masking key: `make run` makes a random one for this checkout.
MASKING_KEY_FILE ?= data/.masking-key

$(MASKING_KEY_FILE):
	@mkdir -p $(dir $@) && umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_hex(32))" > $@
	@echo "created a random masking key for this checkout in $@ (on AWS the key comes from Secrets Manager)"

run: java $(VENV)/.installed $(MASKING_KEY_FILE)
	LAKEHOUSE_MASKING_KEY="$${LAKEHOUSE_MASKING_KEY:-$$(cat $(MASKING_KEY_FILE))}" $(VENV)/bin/lakehouse --config $(CONFIG) run

# Offline validators of the deploy folder: asl-validator (npm) and checkov (own venv: it pins an old boto3).
deploy/node_modules/.installed: deploy/package.json deploy/package-lock.json
	npm ci --prefix deploy --no-audit --no-fund --silent
	touch $@

.venv-checkov/.installed:
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --upgrade pip
	.venv-checkov/bin/python -m pip install --quiet 'checkov==3.3.30'
	touch $@

# After `terraform apply` in deploy/terraform: build the wheel, render config/aws.yaml with Terraform's
# outputs and upload them, the job scripts, the EMR bootstrap, Delta's log store jar and the RDS CA bundle
# to the artifacts bucket (deploy/artifacts.py; DEPLOY_ARGS="--outputs saved.json" without terraform here).
TERRAFORM_DIR ?= deploy/terraform
DEPLOY_ARGS   ?= --terraform-dir $(TERRAFORM_DIR)

deploy-artifacts: $(VENV)/.installed
	$(PY) deploy/artifacts.py $(DEPLOY_ARGS)

# The deployed shape end to end on this machine (tests/aws_lane.py): moto for the AWS APIs, a Spark
# standalone cluster, S3A, the real router, Glue flow and job scripts, PostgreSQL with TLS. Its log also
# goes to build/aws-lane.log. Not part of `make test` (it takes minutes of its own).
test-aws: java postgres $(VENV)/.installed
	$(PY) -m pytest tests/aws_lane.py -s

# PostgreSQL server binaries for the export tests (Debian's package; the tests start their own server).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql (the export tests start a real server from its binaries)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; }

# Two test processes (pytest-xdist), a test file's tests in one of them: one process leaves a core idle while its
# Spark waits (job scheduling, Delta commits, JVM starts); two keep both cores busy (67 -> ~40 minutes). Files go
# out longest first (tests/durations.json, see tests/conftest.py), not xdist's most-tests-first, which handed out
# the long privacy files (a quarter of the run in one file) last: no long file starts near the end.
TEST_WORKERS ?= 2

test: java postgres $(VENV)/.installed deploy/node_modules/.installed .venv-checkov/.installed
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

check: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The Spark 4 lane: the same code and tests on Spark 4.0 + Delta 4.0 (Glue 6 / EMR Spark 8 line).
.venv-spark4/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-spark4
	.venv-spark4/bin/python -m pip install --quiet --upgrade pip
	.venv-spark4/bin/python -m pip install --quiet -e '.[dev]' 'pyspark==4.0.1' 'delta-spark==4.0.1' 'pandas==2.2.3' 'pyarrow==18.1.0'
	touch $@

# The Spark 4 lane: the Spark tests (parsers, deploy validation and the Postgres sink do not change with it).
# CI runs a core subset of it to stay well inside its time limit: `make test-spark4 SPARK4_TESTS="..."`.
# It runs with Spark's generated code and the JVM's full JIT, as production does (`make test` interprets
# Spark's expressions and stops at the first JIT tier, faster on small tables: tests/conftest.py).
SPARK4_SKIP = test_athena test_deploy_asl test_deploy_lambdas test_deploy_terraform test_postgres_sink test_opais_parse \
              test_dms_files test_demo test_config test_jobs test_snapshot_files test_metrics
SPARK4_TESTS ?= tests $(foreach t,$(SPARK4_SKIP),--ignore=tests/$(t).py)

test-spark4: java postgres .venv-spark4/.installed
	LAKEHOUSE_TEST_CODEGEN=1 .venv-spark4/bin/python -m pytest -m "not slow" $(SPARK4_TESTS)

# Long randomized searches: many Hypothesis examples of the property tests (LAKEHOUSE_PROPERTY_EXAMPLES=N for more).
test-search: java postgres $(VENV)/.installed
	$(PY) -m pytest -m "search or long"

# The Athena lane: a real Trino 476 (Athena engine 3 is built on Trino) reads every table of a demo run and
# runs the project's "as of" SQL. Trino needs Java 24+ (TRINO_JAVA_HOME, else the newest JDK in /usr/lib/jvm);
# Maven fetches its tarball once (~800 MB, checksum-verified) and it is unpacked into ~/.cache/lakehouse.
test-athena: java $(VENV)/.installed
	$(PY) -m pytest -m athena -s tests/test_athena.py

bench: java $(VENV)/.installed
	$(PY) -m benchmarks.apply_bench

clean:
	rm -rf data spark-warehouse metastore_db derby.log .pytest_cache
