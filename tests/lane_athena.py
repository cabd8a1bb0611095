"""The Athena saved queries' SQL run by Spark SQL over the Delta tables, registered as the Glue catalog has them.

    spark-submit tests/lane_athena.py spec.json     (by tests/aws_lane.py, on the lane's cluster)

spec.json: {"catalog": [{"database", "table", "location"}], "queries": {name: sql}}. Double-quoted identifiers
("db"."table") are read as Athena reads them (ANSI mode). Prints one line `ATHENA {json}`: rows per query.
"""

import json
import sys

from pyspark.sql import SparkSession

with open(sys.argv[1]) as f:
    spec = json.load(f)
spark = (
    SparkSession.builder.appName("lane-athena")
    .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
    .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
    .config("spark.sql.ansi.enabled", "true")
    .config("spark.sql.ansi.doubleQuotedIdentifiers", "true")
    .config("spark.sql.session.timeZone", "UTC")
    .getOrCreate()
)
for entry in spec["catalog"]:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{entry['database']}`")
    name = f"`{entry['database']}`.`{entry['table']}`"
    spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING delta LOCATION '{entry['location']}'")
results = {name: spark.sql(sql).count() for name, sql in spec["queries"].items()}
print("ATHENA " + json.dumps(results), flush=True)
spark.stop()
