#!/usr/bin/env bash
# EMR bootstrap action of the EMR flow's transient cluster, on every node: Python 3.11 (EMR 7's python3 is
# 3.9; the wheel needs >= 3.11) and the lakehouse wheel with what EMR does not ship for it (pandas, pyarrow:
# the `emr` extra). The cluster's spark-defaults point PySpark at /usr/bin/python3.11
# (spark.pyspark.python, spark.pyspark.driver.python; deploy/stepfunctions/emr_flow.asl.json); pyspark and
# Delta come from the cluster, never from the wheel.
# Usage (set by the EMR flow): install-wheel.sh s3://<artifacts>/wheels/<wheel>.whl
set -euo pipefail

wheel_uri="${1:?usage: install-wheel.sh s3://<bucket>/wheels/<lakehouse wheel>.whl}"
python=/usr/bin/python3.11

if ! command -v "$python" >/dev/null 2>&1; then
  sudo dnf install -y -q python3.11 python3.11-pip
fi
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
aws s3 cp --only-show-errors "$wheel_uri" "$workdir/"
wheel="$workdir/$(basename "$wheel_uri")"
sudo "$python" -m pip install --quiet "${wheel}[emr]"
"$python" -c "import lakehouse, pandas, pyarrow, sys; print('lakehouse installed for Python', sys.version.split()[0])"
