#!/usr/bin/env bash
# EMR bootstrap action of the EMR flow's transient cluster: install the lakehouse wheel (and its
# dependencies from PyPI) into the Python that PySpark uses, on every node.
# Usage (set by deploy/stepfunctions/emr_flow.asl.json): install-wheel.sh s3://<artifacts>/wheels/<wheel>.whl
set -euo pipefail

wheel_uri="${1:?usage: install-wheel.sh s3://<bucket>/wheels/<lakehouse wheel>.whl}"
workdir="$(mktemp -d)"
aws s3 cp "$wheel_uri" "$workdir/"
# EMR points PYSPARK_PYTHON at /usr/bin/python3; pyspark and delta come from the cluster, not the wheel.
sudo /usr/bin/python3 -m pip install --quiet "$workdir/$(basename "$wheel_uri")"
rm -rf "$workdir"
