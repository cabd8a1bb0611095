"""The consent policy as DataFrames: build it from consent records, and flag changes with it.

A policy row says whether a patient allows enhanced analytics, for one device (``device_id``) or
for all of the patient's devices (``device_id`` NULL). Both functions are pure DataFrame → DataFrame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehouse.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

POLICY_COLUMNS = ("patient_id", "device_id", "allow_enhanced_analytics", "policy_date")
POLICY_SCHEMA = "patient_id bigint, device_id string, allow_enhanced_analytics boolean, policy_date date"

FLAG_COL = "license_agreement_accepted_flag"
FLAG_DATE_COL = "license_agreement_policy_date"
# True when no policy row applies to the change: the caller counts these rows, then drops the column.
MISSING_COL = "_policy_missing"


def build_policy(
    consents: DataFrame, *, patient_col: str, device_col: str | None, allowed_col: str, date_col: str
) -> DataFrame:
    """One policy row per (patient_id, device_id) from consent records: the newest record wins.

    Rules:
    - records are ordered by `date_col` (a date, timestamp or ISO string); the newest wins; on a
      tie of dates a refusal beats a consent, so the result is deterministic and never more
      permissive than the input;
    - a record without a date is read the way that gives the least consent: a refusal without a
      date may be the newest record, so it wins over every record of its scope (its row has a NULL
      ``policy_date``, and `flag_changes` ranks it above the other level's rows too); a grant
      without a date cannot say from when, so every dated record beats it, and alone it is kept
      with a NULL ``policy_date``, which consents to nothing (`flag_changes`);
    - `allowed_col` is cast to boolean (true/false, t/f, y/n, yes/no, 1/0); anything else,
      NULL included, is a refusal: only an explicit yes is consent;
    - a NULL `device_col` (or `device_col=None`) is a patient-level record, for all devices;
    - records without a patient are dropped: they cannot be joined to anything;
    - ``policy_date`` is the winning record's date (a ``date``, UTC day of a timestamp).

    Example: ``build_policy(consents, patient_col="pid", device_col="serial", allowed_col="ok",
    date_col="signed_at")``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    _require_columns(consents, [c for c in (patient_col, device_col, allowed_col, date_col) if c], "consents")
    device = _col(device_col).cast("string") if device_col else F.lit(None).cast("string")
    records = consents.select(
        _col(patient_col).cast("bigint").alias("patient_id"),
        device.alias("device_id"),
        F.coalesce(_col(allowed_col).cast("boolean"), F.lit(False)).alias("allow_enhanced_analytics"),
        _col(date_col).cast("timestamp").alias("_signed_at"),
    ).where(F.col("patient_id").isNotNull())
    undated = F.col("_signed_at").isNull()
    refusal = ~F.col("allow_enhanced_analytics")
    # Undated refusals first, then the dated records newest first, undated grants last (see the rules).
    certainty = F.when(undated & refusal, 0).when(~undated, 1).otherwise(2)
    newest_first = Window.partitionBy("patient_id", "device_id").orderBy(
        certainty.asc(), F.col("_signed_at").desc(), F.col("allow_enhanced_analytics").asc()
    )
    return (
        records.withColumn("_rank", F.row_number().over(newest_first))
        .where(F.col("_rank") == 1)
        .select(
            "patient_id",
            "device_id",
            "allow_enhanced_analytics",
            F.col("_signed_at").cast("date").alias("policy_date"),
        )
    )


def flag_changes(
    changes: DataFrame, policy: DataFrame, *, patient_col: str, device_col: str | None = None
) -> DataFrame:
    """Add the consent flag to each change, from a broadcast policy snapshot.

    Adds ``license_agreement_accepted_flag`` (int, 1 = consented), ``license_agreement_policy_date``
    and ``_policy_missing`` (true when no policy row applies; the caller counts, then drops it).
    A change's applicable rows are its patient's patient-level row and, when `device_col` is given,
    its (patient, device) row; of those the newest wins, on a tie the refusal. A row without a
    ``policy_date`` gives the least consent: a refusal without one wins over both levels' grants
    (it may be the newest), a grant without one loses to every dated row and, chosen, flags 0 with
    a NULL date (it cannot say from when the patient consented, and the non-PHI zone admits a
    version only from the date on). No applicable row → flag 0 and NULL date: no record of consent
    is no consent. So flag 1 always comes with a date. `policy` must hold one row per
    (patient_id, device_id), as `build_policy` and the policy stores give. Row count is unchanged.
    """
    from pyspark.sql import functions as F

    _require_columns(policy, list(POLICY_COLUMNS), "policy")
    _require_columns(changes, [c for c in (patient_col, device_col) if c], "changes")
    clash = sorted({FLAG_COL, FLAG_DATE_COL, MISSING_COL} & set(changes.columns))
    if clash:
        raise ConfigError(f"changes already have columns {clash} that flag_changes adds; drop or rename them first")

    def side(prefix: str, rows: DataFrame) -> DataFrame:
        return F.broadcast(rows.select(*(F.col(c).alias(f"{prefix}{c}") for c in POLICY_COLUMNS)))

    out = changes.join(
        side("_pp_", policy.where(F.col("device_id").isNull())),
        _col(patient_col) == F.col("_pp_patient_id"),
        "left",
    )
    candidates = [_candidate("_pp_")]
    if device_col:
        out = out.join(
            side("_pd_", policy.where(F.col("device_id").isNotNull())),
            (_col(patient_col) == F.col("_pd_patient_id")) & (_col(device_col) == F.col("_pd_device_id")),
            "left",
        )
        candidates.append(_candidate("_pd_"))
    chosen = F.greatest(*candidates) if len(candidates) > 1 else candidates[0]
    helpers = [c for c in out.columns if c.startswith(("_pp_", "_pd_"))]
    return (
        out.withColumn("_policy", chosen)
        .withColumns(
            {
                FLAG_COL: F.when(F.col("_policy.allowed") & F.col("_policy.policy_date").isNotNull(), 1)
                .otherwise(0)
                .cast("int"),
                FLAG_DATE_COL: F.col("_policy.policy_date"),
                MISSING_COL: F.col("_policy").isNull(),
            }
        )
        .drop("_policy", *helpers)
    )


def _candidate(prefix: str) -> Column:
    """A matched policy row as a struct ordered so that `greatest` picks newest, then refusal.

    Without a date, a refusal ranks as the newest and a grant as the oldest (the least consent)."""
    from pyspark.sql import functions as F

    matched = F.col(f"{prefix}patient_id").isNotNull()
    allowed = F.col(f"{prefix}allow_enhanced_analytics")
    policy_date = F.col(f"{prefix}policy_date")
    undated = F.when(allowed, F.lit("0001-01-01")).otherwise(F.lit("9999-12-31")).cast("date")
    return F.when(
        matched,
        F.struct(
            F.coalesce(policy_date, undated).alias("rank_date"),
            (~allowed).alias("refused"),
            allowed.alias("allowed"),
            policy_date.alias("policy_date"),
        ),
    )


def _col(name: str) -> Column:
    """The column called `name`, even when the name has dots."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _require_columns(df: DataFrame, names: list[str], what: str) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise ConfigError(f"{what} have no columns {missing} (they have {df.columns})")
