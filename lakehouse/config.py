"""YAML configuration parsed once into typed models.

Unknown keys are errors (a misspelt key must not be silently ignored), `${VAR}` and
`${VAR:-default}` are taken from the environment, and every error names the file and the key path.
Adding a table is adding an entry under `tables:`; no code changes.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lakehouse.errors import ConfigError
from lakehouse.masking import MaskMethod
from lakehouse.sources.db_types import EXAMPLES, MAX_DECIMAL, ambiguous, decimal_problem, spark_type

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _spark_types(columns: dict[str, str], dialect: str = "", *, source_db: bool = False) -> dict[str, str]:
    """Column types as Spark SQL types; source database names (numeric(10,2), varchar(40), …) are mapped, as `dialect`
    names them if given. Without one, a DMS table's (`source_db`) type that would lose data silently is refused."""
    if not columns:
        raise ValueError("must list at least one column")
    mapped = {}
    for name, type_ in columns.items():
        problem = None if dialect or not source_db else ambiguous(str(type_), [str(t) for t in columns.values()])
        if problem:
            raise ValueError(f"column {name!r} has type {type_!r}: {problem}")
        spark = spark_type(str(type_), dialect)
        if spark is None:
            raise ValueError(
                f"column {name!r} has type {type_!r}; expected a Spark SQL type such as string, int, bigint, "
                f"double, decimal(18,2), date, timestamp, boolean, or a source database type such as {EXAMPLES}"
            )
        problem = decimal_problem(spark)
        if problem:  # Spark refuses it only when a batch casts: every batch of the table would fail
            raise ValueError(
                f"column {name!r} has type {type_!r}: {problem}; a Spark decimal takes a precision from 1 to "
                f"{MAX_DECIMAL} and a scale from 0 to the precision (wider numbers: string)"
            )
        mapped[name] = spark
    return mapped


# The DMS name of what each DmsSource key configures (S3 target endpoint settings and table-mapping rules):
# config errors name it, and a DMS name written as a key is answered with the key it corresponds to.
DMS_SETTINGS = {
    "path": "S3Settings BucketName + BucketFolder + /<schema>/<table>",
    "format": "S3Settings DataFormat",
    "header": "S3Settings AddColumnName",
    "op_in_full_load": "S3Settings IncludeOpForFullLoad",
    "delimiter": "S3Settings CsvDelimiter",
    "null_value": "S3Settings CsvNullValue",
    "no_sup_value": "S3Settings CsvNoSupValue (with UseCsvNoSupValue=true)",
    "timestamp_column": "S3Settings TimestampColumnName",
    "change_seq_column": "the add-column rule with expression $AR_H_CHANGE_SEQ",
    "before_image_prefix": "the add-before-image-columns rule's column-prefix",
}
DMS_NAMES = {
    "dataformat": "format",
    "addcolumnname": "header",
    "includeopforfullload": "op_in_full_load",
    "csvdelimiter": "delimiter",
    "csvnullvalue": "null_value",
    "csvnosupvalue": "no_sup_value",
    "timestampcolumnname": "timestamp_column",
    "bucketfolder": "path",
    "bucketname": "path",
    "ar_h_change_seq": "change_seq_column",
    "column-prefix": "before_image_prefix",
    "columnprefix": "before_image_prefix",
}
# DMS settings that have no key here, and why.
DMS_WITHOUT_KEY = {
    "compressiontype": "GZIP files are recognised by their .gz name; nothing to configure",
    "cdcinsertsandupdates": "files without D rows need no setting (with IncludeOpForFullLoad=true: without it, "
    "CDC files have no Op column)",
    "cdcinsertsonly": "the engine needs the Op column in CDC files: keep CdcInsertsOnly=false",
    "datepartitionenabled": "dated sub-folders are read recursively; nothing to configure (a DatePartitionTimezone "
    "other than UTC names CDC files in local time: set TimestampColumnName, `lakehouse onboard dms` refuses it "
    "otherwise)",
    "cdcpath": "CDC files are read from the table's `path`",
    "csvrowdelimiter": "records end with a newline (\\n or \\r\\n), as DMS writes them by default; onboarding refuses "
    "another",
    "preservetransactions": "not supported: the transaction-order files are not read",
    "usecsvnosupvalue": "set no_sup_value to the task's CsvNoSupValue",
}


def _earlier_layout(layout: Any, columns: list[str], index: int) -> Any:
    """A previous layout as a full column list: `{without: [c, ...]}` is the current columns minus those."""
    if not isinstance(layout, dict):
        return layout
    if set(layout) != {"without"} or not isinstance(layout["without"], list):
        raise ValueError(
            f"previous_layouts[{index}] must be a list of columns or {{without: [columns added since]}}, not {layout}"
        )
    unknown = [c for c in layout["without"] if c not in columns]
    if unknown:
        raise ValueError(f"previous_layouts[{index}].without names columns not in columns: {unknown}")
    return [c for c in columns if c not in layout["without"]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DmsSource(_Model):
    """Where a table's DMS files land and how the DMS task wrote them."""

    kind: Literal["dms"] = "dms"
    path: str
    format: Literal["csv", "parquet"] = "csv"
    header: bool = False  # DMS AddColumnName=true writes a header row in every CSV file
    op_in_full_load: bool = False  # DMS IncludeOpForFullLoad
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    # DMS CsvNullValue: the text DMS writes for NULL (an empty field is then an empty string); unset: empty is NULL
    null_value: str | None = None
    # DMS CsvNoSupValue (UseCsvNoSupValue=true): the text DMS writes for a column the source's supplemental log lacks
    # (Oracle with PRIMARY KEY logging): an update did not change it, so it keeps the key's value before the update
    no_sup_value: str | None = Field(default=None, min_length=1)
    timestamp_column: str | None = None  # DMS TimestampColumnName (commit time on CDC rows)
    change_seq_column: str | None = None  # an add-column rule with expression $AR_H_CHANGE_SEQ
    before_image_prefix: str | None = None  # add-before-image-columns rule, e.g. "BI_"
    # The source database whose type names `columns` may use (an Oracle DATE is a timestamp); without it a Spark SQL
    # type name is Spark's. `lakehouse onboard dms` writes it.
    dialect: Literal["postgres", "mysql", "oracle", "sqlserver"] | None = None
    columns: dict[str, str]  # file layout after the Op column, in file order: name -> Spark SQL type
    # Older layouts (columns added at the source mid-stream): a full column list, or {without: [added, ...]}.
    previous_layouts: list[list[str]] = []
    optional_columns: list[str] = []  # may be absent from a file with column names (Parquet, header): NULL, counted
    max_files_per_trigger: int = Field(default=200, ge=1)

    @field_validator("columns")
    @classmethod
    def _known_types(cls, columns: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return _spark_types(columns, info.data.get("dialect") or "", source_db=True)

    @field_validator("previous_layouts", mode="before")
    @classmethod
    def _expand_layouts(cls, layouts: Any, info: ValidationInfo) -> Any:
        columns = info.data.get("columns")
        if not isinstance(layouts, list) or not isinstance(columns, dict):
            return layouts
        return [_earlier_layout(layout, list(columns), i) for i, layout in enumerate(layouts)]

    @model_validator(mode="after")
    def _special_columns_exist(self) -> DmsSource:
        folded: dict[str, list[str]] = {}
        for name in self.columns:
            folded.setdefault(name.strip().lower(), []).append(name)
        alike = [names for names in folded.values() if len(names) > 1]
        if alike:
            raise ValueError(
                f"columns {alike[0]} differ only in case or spaces: DMS's column names are matched to `columns` "
                "without them (as Spark matches columns), so one file column would fill both; rename one in the "
                "source, or keep one of them"
            )
        for key in ("timestamp_column", "change_seq_column"):
            name = getattr(self, key)
            if name is not None and name not in self.columns:
                raise ValueError(
                    f"{key} {name!r} (DMS {DMS_SETTINGS[key]}) is not one of the columns {list(self.columns)}"
                )
        for i, layout in enumerate(self.previous_layouts):
            unknown = [c for c in layout if c not in self.columns]
            if unknown:
                raise ValueError(f"previous_layouts[{i}] names columns not in columns: {unknown}")
        unknown = [c for c in self.optional_columns if c not in self.columns]
        if unknown:
            raise ValueError(f"optional_columns names {unknown}, which are not in columns {list(self.columns)}")
        if self.no_sup_value is not None and self.no_sup_value == (self.null_value or ""):
            raise ValueError(
                f"no_sup_value {self.no_sup_value!r} (DMS CsvNoSupValue) is also the text of NULL (null_value): an "
                "unchanged column and a NULL could not be told apart; give DMS a CsvNoSupValue no value holds"
            )
        if self.before_image_prefix and not self.before_image_columns:
            raise ValueError(
                f"before_image_prefix {self.before_image_prefix!r} (DMS {DMS_SETTINGS['before_image_prefix']}) "
                f"matches no column of {list(self.columns)}: add the before-image columns DMS writes "
                f"(e.g. {self.before_image_prefix}<key>) to `columns`, or remove the prefix"
            )
        return self

    @property
    def before_image_columns(self) -> list[str]:
        prefix = self.before_image_prefix
        return [c for c in self.columns if prefix and c.startswith(prefix)]

    @property
    def business_columns(self) -> dict[str, str]:
        """The table's own columns: the layout without DMS metadata and before-image columns."""
        special = {self.timestamp_column, self.change_seq_column, *self.before_image_columns}
        return {c: t for c, t in self.columns.items() if c not in special}


class SnapshotTableSource(_Model):
    """A table filled by a snapshot feed (see `snapshots:`); built from the feed, not written in YAML."""

    kind: Literal["snapshot"] = "snapshot"
    feed: str
    columns: dict[str, str]

    timestamp_column: None = None
    change_seq_column: None = None
    before_image_prefix: None = None
    before_image_columns: list[str] = []

    @property
    def business_columns(self) -> dict[str, str]:
        return dict(self.columns)


class SnapshotDate(_Model):
    """Where a snapshot's own date comes from: the file name (a regex with year, month, day groups) or content.

    The default pattern takes the parts with `-`, `.` or `_` between them, or nothing: OPA_CE_DAILY_PUBLIC_2026-11-23,
    20261123, and PPEF_Enrollment_Extract_2025.10.01 as data.cms.gov names its PECOS files.
    """

    source: Literal["name", "content"] = "name"
    pattern: str = r"(\d{4})[-._]?(\d{2})[-._]?(\d{2})"

    @field_validator("pattern")
    @classmethod
    def _three_groups(cls, pattern: str) -> str:
        try:
            groups = re.compile(pattern).groups
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if groups != 3:
            raise ValueError(f"needs exactly 3 groups (year, month, day); {pattern!r} has {groups}")
        return pattern


class OpaisFeed(_Model):
    """The HRSA 340B OPAIS covered-entity export (daily .zip or .json) → the eight dim_* tables."""

    kind: Literal["opais"] = "opais"
    path: str
    date: SnapshotDate = SnapshotDate()
    # A snapshot that would delete more than this share of a table's live rows (and at least 10 of them, or every
    # row of a smaller table) is refused: a file cut short, emptied or filtered deletes every key it lacks. 1 = off.
    max_delete_fraction: float = Field(default=0.1, gt=0, le=1)

    def tables(self, name: str) -> dict[str, TableConfig]:
        from lakehouse.sources.opais_entities import ENTITIES

        return {
            e.name: TableConfig(
                name=e.name,
                primary_key=list(e.primary_key),
                partition_by=list(e.partition_by),
                source=SnapshotTableSource(feed=name, columns=e.columns),
                change_feed=True,  # the PostgreSQL export reads it
            )
            for e in ENTITIES.values()
        }


class CsvSnapshotFeed(_Model):
    """A full CSV snapshot with a header (e.g. CMS PECOS Doctors and Clinicians) → one table of the feed's name.

    Header names are normalised to snake_case ("Provider Last Name" → provider_last_name) before they
    are matched with `columns`; other header columns are ignored.
    """

    kind: Literal["csv"] = "csv"
    path: str
    date: SnapshotDate = SnapshotDate()
    # A snapshot that would delete more than this share of a table's live rows (and at least 10 of them, or every
    # row of a smaller table) is refused: a file cut short, emptied or filtered deletes every key it lacks. 1 = off.
    max_delete_fraction: float = Field(default=0.1, gt=0, le=1)
    primary_key: list[str] = Field(min_length=1)
    nullable_key_columns: list[str] = []  # key parts that may be empty (compared NULL-safe), e.g. org_pac_id
    partition_by: list[str] = []
    columns: dict[str, str]
    # Older names of a column in the file's header (normalised) → the column they fill, e.g. CMS's headers before
    # 2024 (`lst_nm: provider_last_name`). Used only when the header lacks the column's own name.
    header_aliases: dict[str, str] = {}
    # Columns a release may lack (NULL in its rows): CMS's releases before the `Telehlth` column. No key column.
    optional_columns: list[str] = []
    npi_columns: list[str] = []  # zero-padded to 10 digits and checked with the NPI Luhn rule
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    # The files' text encoding as Java names it (windows-1252, ISO-8859-1, ...), or `auto`: per file, UTF-8 when it
    # decodes as UTF-8, else windows-1252. A file that is UTF-8 text beyond ASCII is refused for a single-byte
    # encoding (read as one, MUÑOZ would be stored garbled and nothing quarantined).
    encoding: str = Field(default="UTF-8", min_length=1)
    # A file that does not end with a line break may have been cut short inside its last record, which still reads
    # with every field (a cut key is a new key, and the real one is deleted): that record is held, quarantined as
    # unterminated_record. false only for a producer whose files never end with a line break.
    require_final_newline: bool = True

    @field_validator("columns")
    @classmethod
    def _known_types(cls, columns: dict[str, str]) -> dict[str, str]:
        return _spark_types(columns)

    @field_validator("encoding")
    @classmethod
    def _auto_in_any_case(cls, encoding: str) -> str:
        return "auto" if encoding.strip().lower() == "auto" else encoding

    @model_validator(mode="after")
    def _columns_exist(self) -> CsvSnapshotFeed:
        for key in ("primary_key", "partition_by", "npi_columns", "optional_columns"):
            unknown = [c for c in getattr(self, key) if c not in self.columns]
            if unknown:
                raise ValueError(f"{key} names {unknown}, which are not in columns {list(self.columns)}")
        keys = [c for c in self.optional_columns if c in self.primary_key]
        if keys:
            raise ValueError(f"optional_columns names key columns {keys}: a row without its key cannot be applied")
        unknown = sorted({c for c in self.header_aliases.values() if c not in self.columns})
        if unknown:
            raise ValueError(f"header_aliases fill {unknown}, which are not in columns {list(self.columns)}")
        if self.date.source == "content":
            raise ValueError("date.source 'content' is not available for CSV snapshots: use 'name'")
        return self

    def tables(self, name: str) -> dict[str, TableConfig]:
        return {
            name: TableConfig(
                name=name,
                primary_key=self.primary_key,
                nullable_key=self.nullable_key_columns,
                partition_by=self.partition_by,
                source=SnapshotTableSource(feed=name, columns=self.columns),
            )
        }


# Added to every change of a table with `consent:`, from the policy snapshot (DESIGN rule 5).
CONSENT_COLUMNS = {"license_agreement_accepted_flag": "int", "license_agreement_policy_date": "date"}


class ConsentSettings(_Model):
    """How a table's changes join the consent policy."""

    patient_column: str
    device_column: str | None = None


class DateShiftSettings(_Model):
    """Dates of the non-PHI zone moved by a keyed per-patient offset (Expert Determination, not Safe Harbor)."""

    shift_days: int = Field(ge=1, le=3650)  # the offset is within ±shift_days, never 0


_DATE_TYPES = ("date", "timestamp", "timestamp_ntz")


def _root(path: str) -> str:
    """A storage root compared as a location: s3a:// and s3n:// are s3://, without a trailing slash; a local path
    absolute (relative to the working directory, as the engine reads it); a glob (`p_date=*/cpap/patients`) cut to
    the folder above its first pattern, which holds every folder it matches."""
    parts = path.split("/")
    glob = next((i for i, part in enumerate(parts) if re.search(r"[*?\[{]", part)), len(parts))
    path = "/".join(parts[:glob]) or "/"
    return re.sub(r"^s3[an]://", "s3://", os.path.abspath(path) if "://" not in path else path.rstrip("/"))


def _overlap(one: str, other: str) -> bool:
    """Whether two storage roots are one, or one holds the other (`s3://b/lake` and `s3a://b/lake/zone`)."""
    one, other = _root(one), _root(other)
    return one == other or one.startswith(other.rstrip("/") + "/") or other.startswith(one.rstrip("/") + "/")


_INTEGER_TYPE = re.compile(r"tinyint|smallint|int|integer|bigint|long|decimal\(\s*\d+\s*(,\s*0\s*)?\)")
_NUMBER_TYPE = re.compile(r"tinyint|smallint|int|integer|bigint|long|float|double|decimal(\(\s*\d+\s*,\s*\d+\s*\))?")
_BIRTH = re.compile(r"birth|dob(?![a-z])|born(?![a-z])")  # a birth date's column name, lowercased: patientDob
# A word of a column name that says it holds a date or time: admit_date, dischargeDt, created_at, dob, visit_ts, and
# the numbers of one: an epoch (ended_at_epoch_ms), a compact date (visit_ymd, admitYYYYMMDD).
_DATE_WORD = re.compile(
    r"(?!(up|candi|man|vali)date)\w*(date|time|dt)|ts|timestamp|dob|dod|birth\w*|born|death|died"
    r"|epoch\w*|unix|ymd|yyyymmdd|yyyymm|mmddyyyy|ddmmyyyy"
)
_LAST_DATE_WORD = re.compile(r"day|at|on")  # only as a name's last word: created_at, updated_on, visit_day
# The unit or zone of a time, after which a name's last word is the one before: created_at_ms, updated_on_utc.
_TIME_UNIT = re.compile(
    r"ms|millis|milliseconds|us|micros|microseconds|ns|nanos|nanoseconds|s|sec|secs|seconds|utc|gmt"
)
# A number so named holds a year or an age, not a date: birth_year, admit_year, age_at_death.
_YEAR_OR_AGE = re.compile(r"years?|yrs?")
# The words that make a number's name a date's: a date or timestamp word, an epoch, a compact date. A bare `time`,
# `birth` or `death` does not (usage_time, birth_weight, days_to_death), nor does `day` (study_day).
_NUMBER_DATE_WORD = re.compile(
    r"(?!(up|candi|man|vali)date)\w*date|dt|ts|timestamp|dob|dod|epoch\w*|unix|ymd|yyyymmdd|yyyymm|mmddyyyy|ddmmyyyy"
)


def _words(column: str) -> list[str]:
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column).lower().split("_")


def _looks_like_a_date(column: str) -> bool:
    """Whether a column's name says it holds a date or time."""
    words = _words(column)
    while len(words) > 1 and _TIME_UNIT.fullmatch(words[-1]):
        words = words[:-1]
    return any(_DATE_WORD.fullmatch(w) for w in words) or bool(_LAST_DATE_WORD.fullmatch(words[-1]))


def _number_looks_like_a_date(column: str) -> bool:
    """Whether a number column's name says it holds a date or time (YYYYMMDD, epoch milliseconds): a date word
    (`session_date_key`, `dischargeDt`, `ended_at_epoch_ms`) or a last word `at` / `on` before any unit
    (`created_at_ms`); never a year (`birth_year`), an age (`mother_age_at_birth`) or a time spent (`usage_time`)."""
    words = _words(column)
    if _YEAR_OR_AGE.fullmatch(words[-1]) or any(w == "age" for w in words):
        return False
    while len(words) > 1 and _TIME_UNIT.fullmatch(words[-1]):
        words = words[:-1]
    return any(_NUMBER_DATE_WORD.fullmatch(w) for w in words) or words[-1] in ("at", "on")


class TableConfig(_Model):
    """One source table and how its history and latest tables are kept."""

    name: str = ""
    primary_key: list[str] = Field(min_length=1)
    # Key columns that may be empty, matched NULL-safe (a snapshot's row identity; never the first key column,
    # whose ranges prune files). A DMS table's key is the source's primary key: never NULL.
    nullable_key: list[str] = []
    source: Annotated[DmsSource | SnapshotTableSource, Field(discriminator="kind")]
    partition_by: list[str] = []
    ignore_changes_in: list[str] = []  # columns whose changes alone do not make a new version
    consent: ConsentSettings | None = None  # flag every change with the patient's consent
    phi_columns: dict[str, MaskMethod] = {}  # masked in the non-PHI zone; a table with none stays PHI-only
    non_phi: bool = False  # write this table to the non-PHI zone (implied by phi_columns)
    # How dates reach the non-PHI zone: as their year (HIPAA Safe Harbor, the default) or shifted per patient.
    non_phi_dates: Literal["year"] | DateShiftSettings = "year"
    # Text and number columns whose names look like dates but hold none (a time zone's name, a wait_time_minutes):
    # `keep` passes them.
    not_dates: list[str] = []
    # Delta's change data feed on history: on for the 340B dimensions (the PostgreSQL export reads it), off
    # elsewhere unless asked for, since it adds the pre- and post-image of every re-closed version to each MERGE.
    change_feed: bool = False

    @model_validator(mode="after")
    def _keys_are_columns(self) -> TableConfig:
        business = self.source.business_columns
        for key in ("primary_key", "partition_by", "ignore_changes_in"):
            unknown = [c for c in getattr(self, key) if c not in business]
            if unknown:
                raise ValueError(f"{key} names {unknown}, which are not business columns {list(business)}")
        if not set(self.nullable_key) <= set(self.primary_key[1:]):
            raise ValueError(
                f"nullable key columns {self.nullable_key} must be primary key columns other than the first "
                f"({self.primary_key[0]!r}, whose ranges prune files)"
            )
        consent = [c for c in (self.consent.patient_column, self.consent.device_column) if c] if self.consent else []
        for key, names in (("consent", consent), ("phi_columns", list(self.phi_columns))):
            unknown = [c for c in names if c not in business]
            if unknown:
                raise ValueError(f"{key} names {unknown}, which are not business columns {list(business)}")
        patient = self.consent.patient_column if self.consent else None
        if patient and not _INTEGER_TYPE.fullmatch(business[patient].strip().lower()):
            raise ValueError(
                f"consent.patient_column {patient!r} is {business[patient]!r}: the consent policy "
                "keys patients by integer id, so a text id such as '0042' would take the consent of 42 while its "
                "pseudonym is that of '0042', and a withdrawal would not find its rows in the zone. Declare it as an "
                "integer type (bigint), cast in the source if need be"
            )
        if self.phi_columns:
            object.__setattr__(self, "non_phi", True)
        return self

    def non_phi_problems(self) -> list[str]:
        """What keeps this table's masking rules from being complete and safe (empty when they are)."""
        business, rules = self.source.business_columns, self.phi_columns
        shifting = isinstance(self.non_phi_dates, DateShiftSettings)

        def named(columns: list[str]) -> str:
            return ", ".join(columns)

        checks = [
            (
                [c for c in business if c not in rules],
                "columns {} have no rule in phi_columns: every column of a table that goes to the non-PHI zone "
                "needs one. Add `keep` for a column that is not PHI (it passes as it is), else one of "
                "pseudonym, redact, year, birth_year, zip3, age_cap, last4, shift",
            ),
            (
                [c for c, m in rules.items() if m == "keep" and business.get(c) in _DATE_TYPES],
                "columns {} are dates marked keep; a date reaches the non-PHI zone only as its year (`year`, "
                "HIPAA Safe Harbor) or shifted per patient (`shift` with non_phi_dates: {{shift_days: N}})",
            ),
            (
                [
                    c
                    for c, m in rules.items()
                    if m in ("keep", "last4")
                    and business.get(c) == "string"
                    and _looks_like_a_date(c)
                    and c not in self.not_dates
                ],
                "columns {} are text whose names say date or time, marked keep or last4: a date kept as text reaches "
                "the non-PHI zone whole. Give them `year` (it reads the year from the text) or `redact`; a column that "
                "holds no date goes in the table's not_dates",
            ),
            (
                [
                    c
                    for c, m in rules.items()
                    if m == "keep"
                    and _NUMBER_TYPE.fullmatch(business.get(c, ""))
                    and _number_looks_like_a_date(c)
                    and c not in self.not_dates
                ],
                "columns {} are numbers whose names say date or time, marked keep: a date kept as a number "
                "(20240131, epoch milliseconds) reaches the non-PHI zone whole. Give them `redact`, or cast them to a "
                "date or timestamp at the source (DMS or the source's view) and declare that type, to publish the "
                "year (`year`) or a shifted date (`shift`); a column that holds no date (a duration) goes in the "
                "table's not_dates",
            ),
            (
                [c for c, m in rules.items() if m == "year" and _BIRTH.search(c.lower())],
                "columns {} look like birth dates marked year; a birth year of someone 90 or older is an identifier "
                "(HIPAA Safe Harbor): use birth_year, which publishes those as one category (the year 90 years ago)",
            ),
            (
                [c for c, m in rules.items() if m == "shift" and not shifting],
                "columns {} say shift, which needs non_phi_dates: {{shift_days: N}} on the table",
            ),
            (
                [c for c, m in rules.items() if m == "shift" and business.get(c) not in _DATE_TYPES],
                "columns {} say shift, which needs a date or timestamp column",
            ),
            (
                [k for k in self.primary_key if rules.get(k, "keep") not in ("keep", "pseudonym")],
                "primary key columns {} must stay distinct in the zone: give them pseudonym (or keep if not PHI)",
            ),
            (
                [c for c in ([self.consent.patient_column] if self.consent else []) if rules.get(c) != "pseudonym"],
                "the consent patient column {} must be a pseudonym: consent changes, forget and re-admission find "
                "a patient's rows by it",
            ),
            (
                ["non_phi_dates"] if shifting and self.consent is None else [],
                "{} shifts dates per patient, which needs consent.patient_column (whose dates move together)",
            ),
        ]
        return [message.format(named(columns)) for columns, message in checks if columns]

    @property
    def columns(self) -> dict[str, str]:
        """The columns history and latest keep: the business columns, plus the consent flags if flagged."""
        return {**self.source.business_columns, **(CONSENT_COLUMNS if self.consent else {})}

    @property
    def tracked_ignore(self) -> list[str]:
        """Columns whose change alone makes no new version (the consent flags follow the policy, not the source)."""
        return [*self.ignore_changes_in, *(CONSENT_COLUMNS if self.consent else [])]


class Paths(_Model):
    landing: str
    lake: str  # the PHI zone (restricted): full rows
    checkpoints: str
    non_phi_lake: str | None = None  # the non-PHI zone: its own root (bucket / account on AWS)


class PolicySettings(_Model):
    """The consent policy: built from a DMS table's latest rows, stored, read back as a broadcast snapshot."""

    source_table: str  # a configured table holding consent records
    patient_column: str
    device_column: str | None = None
    allowed_column: str
    date_column: str
    store: Literal["local", "dynamodb"] = "local"
    local_path: str | None = None  # store: local
    dynamodb_table: str | None = None  # store: dynamodb
    region: str | None = None
    refresh_seconds: float = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _store_named(self) -> PolicySettings:
        if self.store == "local" and not self.local_path:
            raise ValueError("store: local needs local_path (a folder for the policy file)")
        if self.store == "dynamodb" and not self.dynamodb_table:
            raise ValueError("store: dynamodb needs dynamodb_table")
        return self


class PrivacySettings(_Model):
    """The non-PHI zone: where its masking key comes from (never from YAML) and which rows it receives."""

    key_env_var: str | None = "LAKEHOUSE_MASKING_KEY"
    key_secret_id: str | None = None
    key_json_field: str | None = None
    consented_only: bool = True  # only changes with license_agreement_accepted_flag = 1
    # The zone's tables are partitioned by a hash of their key into this many buckets: a batch's MERGE reads the
    # buckets of its keys only (pseudonyms are random, so file statistics cannot narrow it). More: less read per
    # small batch on a big zone; fewer: fewer files (~50 ms each) per batch that touches every bucket. Changing it
    # rebuilds the zone.
    zone_buckets: int = Field(default=8, ge=1, le=1024)


class SparkSettings(_Model):
    master: str | None = None  # None on a cluster: EMR / Glue provide the master
    conf: dict[str, str] = {}
    # Local runs: Spark's scratch folder (shuffle, spill; encrypted), default `spark-local` next to the lake.
    local_dir: str | None = None

    @field_validator("conf")
    @classmethod
    def _session_in_utc(cls, conf: dict[str, str]) -> dict[str, str]:
        zone = conf.get("spark.sql.session.timeZone")
        if zone is not None and zone.strip().upper() not in ("UTC", "ETC/UTC", "Z", "+00:00", "GMT"):
            raise ValueError(
                f"spark.sql.session.timeZone {zone!r}: the engine reads DMS times, dates history and answers as-of "
                "in UTC (a local zone would shift them, and its repeated fall-back hour would reorder changes); "
                "remove the setting"
            )
        return conf


class MetricsSettings(_Model):
    """Where batch records go besides the log: CloudWatch custom metrics on AWS."""

    cloudwatch_namespace: str | None = None  # e.g. "lakehouse"; None: log lines only
    environment_name: str = "local"  # the Environment dimension the alarms filter on
    region: str | None = None


class FileSourceLog(_Model):
    """The file source's metadata log (`<checkpoint>/sources/0`): every file the stream has seen, one line each.

    Spark compacts it every `compact_interval` batches into one file that lists every file ever seen, so
    the compact file grows with the files processed and each compaction rewrites it: a longer interval
    rewrites it less often; restarts read at most that many small files besides it.
    """

    compact_interval: int = Field(default=100, ge=1)  # spark.sql.streaming.fileSource.log.compactInterval
    cleanup_delay_minutes: float = Field(default=10, ge=0)  # ...fileSource.log.cleanupDelay: old log files kept


class StreamSettings(_Model):
    """The long-running stream: its trigger, how its checkpoint is bounded, which files its source takes."""

    trigger_seconds: float = Field(default=10, gt=0)
    # Batches of offsets/commits kept in the checkpoint (spark.sql.streaming.minBatchesToRetain): enough to
    # restart from; Spark deletes older ones after each batch.
    min_batches_to_retain: int = Field(default=100, ge=1)
    # The file source forgets files older than the newest one by this much (its memory of seen files stays
    # bounded) and ignores files landing with a modification time older than that: keep it longer than any
    # delay with which a file can land.
    max_file_age_hours: float = Field(default=7 * 24, gt=0)
    file_source_log: FileSourceLog = FileSourceLog()
    # A trigger-once run (`lakehouse run`) applies the consent source first, then this many tables at once, each
    # under its own lease: one table's planning and commits overlap another's Spark jobs. 1: one after another.
    tables_at_once: int = Field(default=2, ge=1)

    def source_options(self) -> dict[str, str]:
        """Options of every file source: oldest files first (the lag and the total order rely on it), max age."""
        return {"latestFirst": "false", "maxFileAge": f"{round(self.max_file_age_hours * 3600)}s"}

    def spark_conf(self) -> dict[str, str]:
        """The session settings of the stream's checkpoint and file source metadata log."""
        log = self.file_source_log
        return {
            "spark.sql.streaming.minBatchesToRetain": str(self.min_batches_to_retain),
            "spark.sql.streaming.fileSource.log.compactInterval": str(log.compact_interval),
            "spark.sql.streaming.fileSource.log.cleanupDelay": f"{round(log.cleanup_delay_minutes * 60_000)}ms",
        }


class CompactionSettings(_Model):
    """How the small files every batch writes are compacted (`benchmarks/compaction_bench.py` compares the methods).

    `optimize`: the stream runs Delta's OPTIMIZE on a table between its batches when `every_batches` or
    `every_minutes` have passed since the last one, or when the table has `min_files` files. `auto_compact`:
    Delta compacts after a write when a table holds `min_files` small files. `optimize_write`: Delta shuffles
    each write into fewer files. `none`: nothing.
    """

    method: Literal["optimize", "auto_compact", "optimize_write", "none"] = "optimize"
    every_batches: int | None = Field(default=100, ge=1)
    every_minutes: float | None = Field(default=60, gt=0)
    min_files: int = Field(default=100, ge=2)
    target_file_mb: int = Field(default=64, ge=1)  # larger: fewer files to scan; smaller: cheaper MERGE rewrites


class VacuumSettings(_Model):
    """VACUUM: files no version younger than `retention_hours` needs are deleted, every `every_hours`.

    `retention_hours` is the horizon of Delta time travel (`lakehouse latest --version/--timestamp`):
    it is also the tables' `delta.deletedFileRetentionDuration`. Rows a privacy purge deleted are
    physically gone at most `retention_hours + every_hours` after it.
    """

    enabled: bool = True
    retention_hours: float = Field(default=7 * 24, ge=0)
    every_hours: float = Field(default=24, gt=0)


class DeltaLogSettings(_Model):
    """The Delta log of every table: how often it is checkpointed and how long its entries are kept."""

    checkpoint_interval: int = Field(default=10, ge=1)  # delta.checkpointInterval: commits between checkpoints
    log_retention_days: float = Field(default=30, gt=0)  # delta.logRetentionDuration (cleaned at checkpoints)


class MaintenanceSettings(_Model):
    """What the stream does to keep its tables healthy over months: compaction, VACUUM, log retention."""

    compaction: CompactionSettings = CompactionSettings()
    vacuum: VacuumSettings = VacuumSettings()
    log: DeltaLogSettings = DeltaLogSettings()

    @model_validator(mode="after")
    def _time_travel_fits_the_log(self) -> MaintenanceSettings:
        if self.vacuum.retention_hours > self.log.log_retention_days * 24:
            raise ValueError(
                f"vacuum.retention_hours ({self.vacuum.retention_hours:g}) is longer than log.log_retention_days "
                f"({self.log.log_retention_days:g} days): time travel is bounded by the log anyway; keep the log at "
                "least as long"
            )
        return self

    def table_properties(self) -> dict[str, str]:
        """The Delta table properties these settings ask for (none is a reader or writer feature)."""
        compaction = self.compaction.method
        return {
            "delta.checkpointInterval": str(self.log.checkpoint_interval),
            "delta.logRetentionDuration": f"interval {_hours(self.log.log_retention_days * 24)}",
            "delta.deletedFileRetentionDuration": f"interval {_hours(self.vacuum.retention_hours)}",
            "delta.autoOptimize.autoCompact": "true" if compaction == "auto_compact" else "false",
            "delta.autoOptimize.optimizeWrite": "true" if compaction == "optimize_write" else "false",
        }


def _hours(hours: float) -> str:
    """A Delta interval of `hours`, in whole seconds (Delta's interval parser takes integers)."""
    return f"{round(hours * 3600)} seconds"


class HandoffSettings(_Model):
    """The landing router's hourly folders: the DynamoDB control item that names the open one.

    The router copies each DMS file into `p_date=/p_hour=` of the item; a run's first step moves the item on
    and records when (`opened_at`), so a run-once job reads only the files that landed before that moment: the
    closed folders. See deploy/README.md.
    """

    control_table: str
    pipeline: str
    region: str | None = None


class LockSettings(_Model):
    """Where the one-writer-per-table leases live: a lock file next to the checkpoints, or a DynamoDB table."""

    store: Literal["local", "dynamodb"] = "local"
    dynamodb_table: str | None = None
    region: str | None = None
    lease_seconds: float = Field(default=600, ge=30)
    # How long a job waits for a unit another job holds before it gives up. A job killed hard (a Glue timeout, an
    # OOM) cannot release its lease, which expires lease_seconds after its last renewal: a retry that waits longer
    # than that takes the unit over instead of failing on a dead holder. 0 (local): refuse at once, naming it.
    wait_seconds: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _table_named(self) -> LockSettings:
        if self.store == "dynamodb" and not self.dynamodb_table:
            raise ValueError("store: dynamodb needs dynamodb_table (the lease table the deploy creates)")
        return self


class PostgresTarget(_Model):
    """Where dimensions are exported. Credentials never live here: they come from the environment or a secret."""

    credentials: Literal["env", "secret"] = "env"
    secret_id: str | None = None  # Secrets Manager secret in the RDS shape (credentials: secret)
    env_prefix: str = "LAKEHOUSE_PG_"  # <prefix>HOST, <prefix>USER, ... then PGHOST, PGUSER, ...
    db_schema: str = Field(default="lakehouse", alias="schema")
    sslmode: str | None = None
    sslrootcert: str | None = None
    tables: list[str] = []  # default: every table of the opais snapshot feeds
    lock_timeout_seconds: float = Field(default=60, ge=0)

    @model_validator(mode="after")
    def _secret_named(self) -> PostgresTarget:
        if self.credentials == "secret" and not self.secret_id:
            raise ValueError("credentials: secret needs secret_id (the Secrets Manager secret to read)")
        return self


class Config(_Model):
    environment: Literal["local", "aws"] = "local"
    paths: Paths
    spark: SparkSettings = SparkSettings()
    stream: StreamSettings = StreamSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    metrics: MetricsSettings = MetricsSettings()
    handoff: HandoffSettings | None = None
    locks: LockSettings = LockSettings()
    tables: dict[str, TableConfig] = {}
    snapshots: dict[str, Annotated[OpaisFeed | CsvSnapshotFeed, Field(discriminator="kind")]] = {}
    postgres: PostgresTarget | None = None
    policy: PolicySettings | None = None
    privacy: PrivacySettings = PrivacySettings()
    source_file: str = ""

    @field_validator("tables")
    @classmethod
    def _name_tables(cls, tables: dict[str, TableConfig]) -> dict[str, TableConfig]:
        for name, table in tables.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"table name {name!r} must be lower_snake_case")
            object.__setattr__(table, "name", name)
        return tables

    @model_validator(mode="after")
    def _add_snapshot_tables(self) -> Config:
        for feed_name, feed in self.snapshots.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", feed_name):
                raise ValueError(f"snapshot feed name {feed_name!r} must be lower_snake_case")
            for name, table in feed.tables(feed_name).items():
                if name in self.tables:
                    raise ValueError(f"table {name!r} of snapshot feed {feed_name!r} is also configured under tables")
                self.tables[name] = table
        return self

    @model_validator(mode="after")
    def _zones_are_consistent(self) -> Config:
        non_phi = [n for n, t in self.tables.items() if t.non_phi]
        if non_phi and not self.paths.non_phi_lake:
            raise ValueError(f"tables {non_phi} go to the non-PHI zone: set paths.non_phi_lake (its own root)")
        zone = self.paths.non_phi_lake
        for key, path in self._phi_paths().items():
            if zone and _overlap(zone, path):
                raise ValueError(
                    f"paths.non_phi_lake ({zone}) and {key} ({path}) overlap: the non-PHI zone must be a root of "
                    "its own, neither inside nor around the PHI lake, its checkpoints, the landing and source folders "
                    "(raw PHI), the consent policy and Spark's scratch folder (its readers would read PHI, or its "
                    f"files would sit among PHI); move paths.non_phi_lake or {key} apart"
                )
        unflagged = [n for n in non_phi if self.tables[n].consent is None]
        if unflagged and self.privacy.consented_only:
            raise ValueError(
                f"tables {unflagged} go to the non-PHI zone, which only takes consented rows: give them "
                "consent.patient_column (a table about no patient can set privacy.consented_only: false, but that "
                "admits every row of every table, withdrawn patients' too)"
            )
        problems = [f"table {n}: {p}" for n in non_phi for p in self.tables[n].non_phi_problems()]
        if problems:
            raise ValueError("; ".join(problems))
        flagged = [n for n, t in self.tables.items() if t.consent]
        if flagged and self.policy is None:
            raise ValueError(f"tables {flagged} are flagged with consent: configure `policy:` (where it comes from)")
        if self.policy and self.policy.source_table not in self.tables:
            raise ValueError(f"policy.source_table {self.policy.source_table!r} is not a configured table")
        return self

    def _phi_paths(self) -> dict[str, str]:
        """Every place the engine keeps or reads PHI, by its key in the YAML."""
        paths = {f"paths.{key}": getattr(self.paths, key) for key in ("lake", "checkpoints", "landing")}
        paths |= {
            f"tables.{n}.source.path": t.source.path for n, t in self.tables.items() if isinstance(t.source, DmsSource)
        }
        paths |= {f"snapshots.{n}.path": feed.path for n, feed in self.snapshots.items()}
        if self.policy and self.policy.local_path:
            paths["policy.local_path"] = self.policy.local_path
        if self.spark.local_dir:
            paths["spark.local_dir"] = self.spark.local_dir
        return paths

    @model_validator(mode="after")
    def _jobs_on_aws_share_their_leases(self) -> Config:
        # A lock file is only seen by processes of one machine: jobs on Glue and EMR need the shared table.
        if self.environment == "aws" and self.locks.store != "dynamodb":
            raise ValueError("environment aws needs locks.store: dynamodb (one writer per table across jobs)")
        return self

    @model_validator(mode="after")
    def _exported_tables_keep_a_change_feed(self) -> Config:
        if self.postgres is None:
            return self
        unknown = [n for n in self.postgres.tables if n not in self.tables]
        if unknown:
            raise ValueError(f"postgres.tables names {unknown}, which are not configured tables")
        without = [n for n in self.postgres.tables if not self.tables[n].change_feed]
        if without:
            raise ValueError(
                f"postgres.tables names {without}, whose history keeps no change feed (the export reads it): "
                "set change_feed: true on them"
            )
        from lakehouse.sources.opais_entities import ENTITIES  # the export's tables (ddl/opais_340b.sql)

        foreign = [n for n in self.postgres.tables if n not in ENTITIES]
        if foreign:
            raise ValueError(
                f"postgres.tables names {foreign}, which are not 340B dimensions: the PostgreSQL export writes only "
                f"{list(ENTITIES)} (their tables are in ddl/opais_340b.sql); remove them from postgres.tables"
            )
        return self

    @model_validator(mode="after")
    def _absolute_local_paths(self) -> Config:
        # Delta and Spark need absolute paths; relative ones are relative to the working directory.
        def absolute(path: str) -> str:
            return path if "://" in path else str(Path(path).resolve())

        for key in ("landing", "lake", "checkpoints", "non_phi_lake"):
            if getattr(self.paths, key):
                object.__setattr__(self.paths, key, absolute(getattr(self.paths, key)))
        if self.policy and self.policy.local_path:
            object.__setattr__(self.policy, "local_path", absolute(self.policy.local_path))
        if self.spark.local_dir:
            object.__setattr__(self.spark, "local_dir", absolute(self.spark.local_dir))
        for table in self.tables.values():
            if isinstance(table.source, DmsSource):
                object.__setattr__(table.source, "path", absolute(table.source.path))
        for feed in self.snapshots.values():
            object.__setattr__(feed, "path", absolute(feed.path))
        return self

    def dms_tables(self) -> dict[str, TableConfig]:
        """The tables fed by DMS change files (one streaming query each)."""
        return {n: t for n, t in self.tables.items() if isinstance(t.source, DmsSource)}

    def feed_tables(self, feed: str) -> dict[str, TableConfig]:
        """The tables a snapshot feed fills."""
        return {n: t for n, t in self.tables.items() if getattr(t.source, "feed", None) == feed}

    def write_units(self) -> dict[str, list[str]]:
        """What one job writes at a time, by name: each DMS table alone, each snapshot feed with all its tables.

        A unit is the scope of one writer (its tables, their checkpoint and the feed's snapshot log): `run`,
        `stream` and the snapshot load take the unit's lease before they write (lakehouse.ownership).
        """
        units = {name: [name] for name in self.dms_tables()}
        units.update({feed: list(self.feed_tables(feed)) for feed in self.snapshots})
        return units

    def export_tables(self) -> list[str]:
        """The tables the Postgres export writes: the configured list, or every 340B dimension."""
        if self.postgres is None:
            return []
        if self.postgres.tables:
            return list(self.postgres.tables)
        return [n for f, feed in self.snapshots.items() if feed.kind == "opais" for n in self.feed_tables(f)]

    def table(self, name: str) -> TableConfig:
        """The table named `name`, or a ConfigError listing the configured ones."""
        if name not in self.tables:
            raise ConfigError(
                f"no table {name!r} in the configuration; configured: {sorted(self.tables)}", file=self.source_file
            )
        return self.tables[name]


def _interpolate(value: Any, file: str, path: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, file, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, file, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {name} is not set and has no default (write ${{{name}:-value}})", file=file, key=path
        )

    return _VAR.sub(replace, value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (plain YAML keeps the last silently)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A value YAML's own types cannot hold (a date 2026-13-45, `!!int abc`) raises ValueError and the like
        # deep inside PyYAML, without its place: an error naming the line instead.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:
            value = f"{node.value!r} " if isinstance(node, yaml.ScalarNode) else ""
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"value {value}is not a valid {kind} ({exc}); quote it if it is text", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"a key must be a name (text or a number), not a {type(key).__name__} ({key!r}): write the key "
                    "as plain text, e.g. `name: value`",
                    key_node.start_mark,
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line}): the later one would "
                    "silently replace the first; keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str) -> Any:
    """Parse YAML text as the configuration loader does: safe types only, a key written twice is an error."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def load_config(path: str | Path) -> Config:
    """Read, interpolate and validate a YAML configuration file."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {Path(path).resolve()}") from None
    except IsADirectoryError:
        raise ConfigError(
            f"the configuration {Path(path).resolve()} is a folder: pass the YAML file, e.g. --config config/local.yaml"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the configuration is not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}): save it as "
            "UTF-8 (an editor's Latin-1 or UTF-16 is not read)",
            file=file,
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the configuration: {exc.strerror or exc}; check the path and its permissions", file=file
        ) from None
    try:
        raw = read_yaml(text)
    except RecursionError:
        raise ConfigError("not valid YAML: nested too deeply", file=file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=file) from None
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping at the top level", file=file)
    data = _interpolate(raw, file, "")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        if len(problems) == 1:
            ((key, message),) = problems
            raise ConfigError(message, file=file, key=key or None) from None
        listing = "".join(f"\n  - {key or '(top level)'}: {message}" for key, message in problems)
        raise ConfigError(f"{len(problems)} problems, each with its key path:{listing}\n", file=file) from None
    object.__setattr__(config, "source_file", file)
    return config


def _describe(error: Any) -> tuple[str, str]:
    """The key path (without the `kind` tag of the source) and a readable message of one validation error."""
    raw = error["loc"]
    tag = {
        i
        for i, p in enumerate(raw)
        if p in _KINDS and i and (raw[i - 1] == "source" or raw[i - 2 : i - 1] == ("snapshots",))
    }
    loc = [str(p) for i, p in enumerate(raw) if i not in tag]
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}" + _hint(loc[-1])
    elif error["type"] == "missing":
        message = "required key is missing"
    if loc and loc[-1] in DMS_SETTINGS and "source" in loc and "DMS" not in message:
        message += f" (DMS {DMS_SETTINGS[loc[-1]]})"
    return ".".join(loc), message


def _hint(key: str) -> str:
    """What an unknown key probably meant: the key a DMS setting name corresponds to, or a close spelling."""
    dms = re.sub(r"[^a-z_-]", "", key.lower())
    if dms in DMS_NAMES:
        ours = DMS_NAMES[dms]
        return f"; that is the DMS name: did you mean {ours!r} (DMS {DMS_SETTINGS[ours]})?"
    if dms in DMS_WITHOUT_KEY:
        return f"; that DMS setting has no key here: {DMS_WITHOUT_KEY[dms]}"
    close = difflib.get_close_matches(key, _KEYS, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


_KINDS = {"dms", "snapshot", "opais", "csv"}  # discriminator tags pydantic puts into error locations
_KEYS = sorted(
    {
        key
        for model in (
            Config,
            Paths,
            SparkSettings,
            StreamSettings,
            FileSourceLog,
            MaintenanceSettings,
            CompactionSettings,
            VacuumSettings,
            DeltaLogSettings,
            TableConfig,
            DmsSource,
            OpaisFeed,
            CsvSnapshotFeed,
            SnapshotDate,
        )
        for key in model.model_fields
    }
)
