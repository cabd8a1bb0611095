"""The consent policy: built from consent records, stored (DynamoDB or local), joined to changes."""

from lakehouse.policy.build import FLAG_COL, FLAG_DATE_COL, MISSING_COL, build_policy, flag_changes
from lakehouse.policy.snapshot import PolicySnapshot, policy_frame, policy_rows
from lakehouse.policy.store import DynamoDbPolicyStore, LocalPolicyStore, PolicyRow, PolicyStore, WriteStats

__all__ = [
    "FLAG_COL",
    "FLAG_DATE_COL",
    "MISSING_COL",
    "DynamoDbPolicyStore",
    "LocalPolicyStore",
    "PolicyRow",
    "PolicySnapshot",
    "PolicyStore",
    "WriteStats",
    "build_policy",
    "flag_changes",
    "policy_frame",
    "policy_rows",
]
