"""`lakehouse onboard dms`: the YAML table entries of a DMS task, from what AWS already has about it.

Inputs are what the AWS CLI prints and what the source database's catalog lists:
`aws dms describe-endpoints` (the S3 target's settings, the source's engine), `aws dms
describe-replication-tasks` (the task's table mappings: selection and transformation rules) and the
source tables' columns (information_schema / ALL_TAB_COLUMNS as CSV or JSON). The output is the
`tables:` section: columns in file order with Spark types, the timestamp, change-seq and before-image
columns, keys and the landing path, validated by the same models `load_config` uses.
"""

from lakehouse.onboard.entries import onboard_dms

__all__ = ["onboard_dms"]
