"""`lakehouse onboard dms` on captured `aws dms describe-*` JSON of PostgreSQL, MySQL and Oracle tasks.

The fixtures under tests/dms_tasks/ have the shapes the AWS CLI reference documents (describe-endpoints:
`Endpoints[]` with `S3Settings` or `ExtraConnectionAttributes`; describe-replication-tasks:
`ReplicationTasks[]` with `TableMappings` as a JSON string) and the source's catalog columns. The last
test loads the generated entries as a configuration and ingests files laid out as each task writes them.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from lakehouse.cli import main
from lakehouse.config import Config
from lakehouse.errors import ConfigError
from lakehouse.onboard import onboard_dms
from lakehouse.runner import run_once
from lakehouse.tables import table_paths

TASKS = Path(__file__).parent / "dms_tasks"


def files(dialect: str) -> tuple[Path, Path, Path]:
    folder = TASKS / dialect
    return folder / "endpoints.json", folder / "tasks.json", next(folder.glob("columns.*"))


def entries(dialect: str, **options) -> dict:
    return yaml.safe_load(onboard_dms(*files(dialect), **options))["tables"]


def test_postgres_task_gives_the_layout_with_op_in_full_load_timestamp_change_seq_and_before_image():
    tables = entries("postgres")

    assert sorted(tables) == ["devices", "patients"]  # schema_migrations is excluded by a selection rule
    patients = tables["patients"]
    assert patients["primary_key"] == ["patient_id"]
    assert patients["source"] == {
        "kind": "dms",
        "path": "s3://cpap-landing/dms/cpap/public/patients",
        "format": "csv",
        "header": False,
        "op_in_full_load": True,
        "timestamp_column": "dms_commit_ts",
        "change_seq_column": "dms_change_seq",
        "before_image_prefix": "BI_",
        "dialect": "postgres",  # the source's type names: a bare float would be PostgreSQL's double
        "columns": {
            "dms_commit_ts": "string",
            "patient_id": "int",
            "first_name": "string",
            "last_name": "string",
            "weight_kg": "real",  # a 4-byte float (`float` under dialect postgres is a double)
            "balance": "decimal(10,2)",
            "updated_at": "timestamp",
            "dms_change_seq": "string",
            "BI_patient_id": "int",
        },
    }
    assert "before_image_prefix" not in tables["devices"]["source"]  # the rule names patients only


def test_mysql_task_with_the_defaults_and_settings_in_extra_connection_attributes():
    tables = entries("mysql")

    assert sorted(tables) == ["customers", "orders"]
    customers = tables["customers"]["source"]
    assert (customers["header"], customers["op_in_full_load"]) == (True, False)  # addColumnName=true from the ECA
    assert "timestamp_column" not in customers and "change_seq_column" not in customers
    assert customers["columns"] == {
        "customer_id": "bigint",  # int unsigned
        "name": "string",
        "vip": "smallint",  # tinyint(1): DMS writes MySQL's TINYINT, tinyint(1) too, as INT1 (2 and -1 are values)
        "balance": "decimal(12,2)",
        "created_at": "timestamp",
    }
    assert tables["orders"]["source"]["columns"]["order_id"] == "decimal(20,0)"  # bigint unsigned


def test_oracle_task_with_renames_a_removed_column_and_parquet():
    (name, employee), *_ = entries("oracle").items()

    assert name == "employee"
    assert employee["primary_key"] == ["employee_id"]
    assert employee["source"]["path"] == "s3://hr-landing/oracle/hr/employee"
    assert employee["source"]["format"] == "parquet" and "header" not in employee["source"]
    assert employee["source"]["columns"] == {
        "dms_commit_ts": "string",
        "employee_id": "int",  # NUMBER(6)
        "first_name": "string",
        "last_name": "string",
        "salary": "decimal(8,2)",
        "commission_pct": "decimal(2,2)",
        "hire_date": "timestamp",  # an Oracle DATE has a time of day
        "dms_change_seq": "string",
    }  # SSN is removed by a transformation rule


def edited(tmp_path: Path, dialect: str, change) -> tuple[Path, Path, Path]:
    endpoints, tasks, columns = files(dialect)
    data = {"endpoints": json.loads(endpoints.read_text()), "tasks": json.loads(tasks.read_text())}
    change(data)
    for name, content in data.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
    return tmp_path / "endpoints.json", tmp_path / "tasks.json", columns


def test_cdc_inserts_only_without_op_is_refused_naming_the_settings(tmp_path):
    def inserts_only(data):
        data["endpoints"]["Endpoints"][1]["S3Settings"].update(CdcInsertsOnly=True, IncludeOpForFullLoad=False)

    with pytest.raises(ConfigError, match="CdcInsertsOnly=true without IncludeOpForFullLoad"):
        onboard_dms(*edited(tmp_path, "postgres", inserts_only))


def test_cdc_inserts_and_updates_without_op_is_refused_naming_the_settings(tmp_path):
    """Without IncludeOpForFullLoad, DMS writes CdcInsertsAndUpdates records with no Op: nothing says I from U."""

    def inserts_and_updates(data):
        data["endpoints"]["Endpoints"][1]["S3Settings"].update(CdcInsertsAndUpdates=True, IncludeOpForFullLoad=False)

    with pytest.raises(ConfigError, match="CdcInsertsAndUpdates=true without IncludeOpForFullLoad") as info:
        onboard_dms(*edited(tmp_path, "postgres", inserts_and_updates))
    assert "set IncludeOpForFullLoad=true" in str(info.value)


@pytest.mark.parametrize("setting", ["CdcInsertsOnly", "CdcInsertsAndUpdates"])
def test_cdc_without_deletes_with_op_is_onboarded_with_a_warning_that_deletes_never_arrive(tmp_path, setting):
    def without_deletes(data):
        data["endpoints"]["Endpoints"][1]["S3Settings"].update({setting: True, "IncludeOpForFullLoad": True})

    text = onboard_dms(*edited(tmp_path, "postgres", without_deletes))

    warning = [line for line in text.splitlines() if line.startswith("# WARNING") and setting in line]
    assert warning and "deletes" in warning[0], text[:600]
    captured = onboard_dms(*files("postgres"))  # the captured task writes deletes
    assert not [line for line in captured.splitlines() if line.startswith("# WARNING") and setting in line]


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("# WARNING")]


def _with_task_settings(**changes):
    def edit(data):
        task = data["tasks"]["ReplicationTasks"][0]
        settings = json.loads(task.get("ReplicationTaskSettings") or "{}")
        settings.setdefault("TargetMetadata", {}).update(changes)
        task["ReplicationTaskSettings"] = json.dumps(settings)

    return edit


def _with_notes(tmp_path: Path, edit) -> tuple[Path, Path, Path]:
    """The postgres task with a `notes text` column (a LOB to DMS) added to patients."""
    endpoints, tasks, columns = edited(tmp_path, "postgres", edit)
    notes = tmp_path / "columns.csv"
    notes.write_text(columns.read_text().rstrip("\n") + "\npublic,patients,notes,99,text,,,,NO\n")
    return endpoints, tasks, notes


def test_lob_columns_in_limited_lob_mode_are_onboarded_with_a_warning_that_long_values_are_cut(tmp_path):
    """DMS cuts a LOB longer than LobMaxSize in limited LOB mode (the default) and says so only in its log."""
    text = onboard_dms(*_with_notes(tmp_path, _with_task_settings(LobMaxSize=64)))
    assert yaml.safe_load(text)["tables"]["patients"]["source"]["columns"]["notes"] == "string"
    cut = [w for w in _warnings(text) if "LobMaxSize=64 KB" in w]
    assert len(cut) == 1 and "patients.notes" in cut[0] and "cut short" in cut[0], _warnings(text)
    assert not [w for w in _warnings(onboard_dms(*files("postgres"))) if "LOB" in w]  # no LOB column: no warning

    full = onboard_dms(*_with_notes(tmp_path, _with_task_settings(FullLobMode=True, LimitedSizeLobMode=False)))
    assert not [w for w in _warnings(full) if "LOB" in w]
    dropped = onboard_dms(*_with_notes(tmp_path, _with_task_settings(SupportLobs=False)))
    assert [w for w in _warnings(dropped) if "SupportLobs=false" in w and "patients.notes" in w]


def test_a_cdc_task_is_onboarded_with_a_warning_that_a_source_truncate_is_not_seen(tmp_path):
    assert [w for w in _warnings(onboard_dms(*files("postgres"))) if "TRUNCATE" in w]

    def full_load_only(data):
        data["tasks"]["ReplicationTasks"][0]["MigrationType"] = "full-load"

    assert not [w for w in _warnings(onboard_dms(*edited(tmp_path, "postgres", full_load_only))) if "TRUNCATE" in w]


def test_task_settings_that_are_not_json_are_refused_naming_the_task(tmp_path):
    def broken(data):
        data["tasks"]["ReplicationTasks"][0]["ReplicationTaskSettings"] = "{not json"

    with pytest.raises(ConfigError, match="ReplicationTaskSettings is not JSON"):
        onboard_dms(*edited(tmp_path, "postgres", broken))


def test_rfc4180_false_is_refused_saying_why_and_what_to_set(tmp_path):
    """With Rfc4180=false DMS writes values as they are: `"Smith, J"` is two fields, `"Doc" Smith` eats the file."""

    def not_rfc4180(data):
        data["endpoints"]["Endpoints"][1]["S3Settings"].update(Rfc4180=False)

    with pytest.raises(ConfigError, match="Rfc4180=false") as info:
        onboard_dms(*edited(tmp_path, "postgres", not_rfc4180))
    assert "quot" in str(info.value) and "set Rfc4180=true" in str(info.value)
    assert "employee" in entries_of(*edited(tmp_path, "oracle", not_rfc4180))  # Parquet: the setting is CSV's only


def entries_of(endpoints: Path, tasks: Path, columns: Path) -> dict:
    return yaml.safe_load(onboard_dms(endpoints, tasks, columns))["tables"]


def postgres_catalog(tmp_path: Path, rows: list[str]) -> Path:
    """A `psql --csv` listing of information_schema.columns with udt_name and character_maximum_length."""
    columns = tmp_path / "columns.csv"
    header = "table_schema,table_name,column_name,ordinal_position,data_type,udt_name,character_maximum_length,"
    columns.write_text(header + "numeric_precision,numeric_scale,is_primary_key\n" + "\n".join(rows) + "\n")
    return columns


def test_postgres_bit_columns_are_bit_strings_as_dms_writes_them(tmp_path):
    """DMS maps PostgreSQL BIT(n) and BIT VARYING(n) to STRING(n): `10101010` is not a boolean."""
    columns = postgres_catalog(
        tmp_path,
        [
            "public,readings,reading_id,1,integer,int4,,32,0,YES",
            "public,readings,flags,2,bit,bit,8,,,NO",
            "public,readings,flag,3,bit,bit,1,,,NO",
            "public,readings,mask,4,bit varying,varbit,16,,,NO",
        ],
    )
    endpoints, tasks, _ = files("postgres")

    readings = entries_of(endpoints, tasks, columns)["readings"]["source"]["columns"]

    assert (readings["flags"], readings["flag"], readings["mask"]) == ("string", "string", "string")


def test_postgres_arrays_enums_and_extension_types_are_text_and_arrays_are_lobs(tmp_path):
    """DMS writes ARRAY, ENUM, COMPOSITE, HSTORE as text; the catalog says ARRAY / USER-DEFINED, udt_name which."""
    columns = postgres_catalog(
        tmp_path,
        [
            "public,readings,reading_id,1,integer,int4,,32,0,YES",
            "public,readings,tags,2,ARRAY,_text,,,,NO",
            "public,readings,samples,3,ARRAY,_int4,,,,NO",
            "public,readings,mood,4,USER-DEFINED,mood,,,,NO",
            "public,readings,attrs,5,USER-DEFINED,hstore,,,,NO",
            "public,readings,taken_on,6,USER-DEFINED,date,,,,NO",  # an enum that happens to be called date
        ],
    )

    def non_lob_before_images(data):
        mappings = json.loads(data["tasks"]["ReplicationTasks"][0]["TableMappings"])
        rule = mappings["rules"][3]
        rule["object-locator"]["table-name"] = "readings"
        rule["before-image-def"]["column-filter"] = "non-lob"
        data["tasks"]["ReplicationTasks"][0]["TableMappings"] = json.dumps(mappings)

    endpoints, tasks, _ = edited(tmp_path, "postgres", non_lob_before_images)

    readings = entries_of(endpoints, tasks, columns)["readings"]["source"]["columns"]

    assert readings == {
        "dms_commit_ts": "string",
        "reading_id": "int",
        "tags": "string",
        "samples": "string",
        "mood": "string",
        "attrs": "string",
        "taken_on": "string",
        "dms_change_seq": "string",
        # ARRAY and HSTORE are NCLOB to DMS: no before-image under non-lob; an ENUM is STRING(64)
        "BI_reading_id": "int",
        "BI_mood": "string",
        "BI_taken_on": "string",
    }


def test_oracle_number_with_scale_above_precision_or_negative_is_double_as_dms_writes_it(tmp_path):
    """DMS writes these NUMBERs as REAL8; decimal(2,5) was refused by Spark at every batch."""
    columns = tmp_path / "columns.csv"
    columns.write_text(
        "OWNER,TABLE_NAME,COLUMN_NAME,COLUMN_ID,DATA_TYPE,DATA_PRECISION,DATA_SCALE,PK\n"
        "HR,EMPLOYEES,EMPLOYEE_ID,1,NUMBER,6,0,Y\n"
        "HR,EMPLOYEES,RATE,2,NUMBER,2,5,\n"
        "HR,EMPLOYEES,BUDGET,3,NUMBER,7,-2,\n"
        "HR,EMPLOYEES,SALARY,4,NUMBER,8,2,\n"
    )
    endpoints, tasks, _ = files("oracle")

    employee = entries_of(endpoints, tasks, columns)["employee"]["source"]["columns"]

    assert (employee["rate"], employee["budget"], employee["salary"]) == ("double", "double", "decimal(8,2)")


@pytest.mark.parametrize(
    ("oracle_settings", "attributes", "spark"),
    [
        ({}, "", "decimal(38,10)"),  # DMS's default
        ({"NumberDatatypeScale": 12}, "", "decimal(38,12)"),
        ({}, "useLogminerReader=N;numberDataTypeScale=12", "decimal(38,12)"),
        ({"NumberDatatypeScale": -1}, "", "double"),  # DMS writes floating text (1.2345678901234567E-5)
        ({"NumberDatatypeScale": -2}, "", "string"),  # DMS writes VARCHAR
    ],
)
def test_an_oracle_number_without_precision_takes_the_endpoints_number_datatype_scale(
    tmp_path, oracle_settings, attributes, spark
):
    """Found by review: a NUMBER without precision was always decimal(38,10), whatever scale DMS writes it with; 12
    digits after the point were rounded to 10 (now quarantined as type_mismatch, see test_source_types)."""
    columns = tmp_path / "columns.csv"
    columns.write_text(
        "OWNER,TABLE_NAME,COLUMN_NAME,COLUMN_ID,DATA_TYPE,DATA_PRECISION,DATA_SCALE,PK\n"
        "HR,EMPLOYEES,EMPLOYEE_ID,1,NUMBER,6,0,Y\n"
        "HR,EMPLOYEES,RATE,2,NUMBER,,,\n"
        "HR,EMPLOYEES,SALARY,3,NUMBER,8,2,\n"
    )

    def scale(data):
        source = data["endpoints"]["Endpoints"][0]
        source["OracleSettings"].update(oracle_settings)
        source["ExtraConnectionAttributes"] = attributes

    employee = entries_of(*edited(tmp_path, "oracle", scale)[:2], columns)["employee"]

    assert (employee["source"]["columns"]["rate"], employee["source"]["columns"]["salary"]) == (spark, "decimal(8,2)")
    config = Config.model_validate(
        {"paths": {"landing": "l", "lake": "k", "checkpoints": "c"}, "tables": {"employee": employee}}
    )
    assert config.tables["employee"].source.columns["rate"] == spark


@pytest.mark.parametrize("value", [39, -3, "twelve"])
def test_a_number_datatype_scale_dms_does_not_take_is_refused_naming_the_endpoint(tmp_path, value):
    def scale(data):
        data["endpoints"]["Endpoints"][0]["OracleSettings"]["NumberDatatypeScale"] = value

    with pytest.raises(ConfigError) as error:
        onboard_dms(*edited(tmp_path, "oracle", scale))

    assert "hr-oracle" in str(error.value) and f"NumberDatatypeScale {value!r}" in str(error.value)
    assert "0..38, -1 or -2" in str(error.value)


def test_entries_carry_the_source_dialect_and_types_that_read_back_as_onboarding_mapped_them(tmp_path):
    """Found by review: the YAML's types were read without the source's dialect. Onboarding writes `dialect:`, and a
    type whose Spark name the source means otherwise (SQL Server's `timestamp` is a row version, PostgreSQL's bare
    `float` a double) as the source names it."""
    columns = tmp_path / "columns.csv"
    columns.write_text(
        "table_schema,table_name,column_name,ordinal_position,data_type,numeric_precision,numeric_scale,is_primary_key\n"
        "public,readings,reading_id,1,int,10,0,YES\n"
        "public,readings,taken_at,2,datetime2,,,NO\n"
        "public,readings,value,3,float,53,,NO\n"
        "public,readings,small,4,real,24,,NO\n"
        "public,readings,version,5,timestamp,,,NO\n"
        "public,readings,taken_on,6,date,,,NO\n"
    )

    def sql_server(data):
        data["endpoints"]["Endpoints"][0]["EngineName"] = "sqlserver"

    endpoints, tasks, _ = edited(tmp_path, "postgres", sql_server)
    readings = entries_of(endpoints, tasks, columns)["readings"]

    assert readings["source"]["dialect"] == "sqlserver"
    written = readings["source"]["columns"]
    assert {c: written[c] for c in ("taken_at", "value", "small", "version", "taken_on")} == {
        "taken_at": "datetime2",
        "value": "double",
        "small": "real",
        "version": "string",
        "taken_on": "date",
    }
    config = Config.model_validate(
        {"paths": {"landing": "l", "lake": "k", "checkpoints": "c"}, "tables": {"readings": readings}}
    )
    assert config.tables["readings"].source.columns == {
        "dms_commit_ts": "string",
        "reading_id": "int",
        "taken_at": "timestamp",
        "value": "double",
        "small": "float",
        "version": "string",
        "taken_on": "date",
        "dms_change_seq": "string",
    }


@pytest.mark.parametrize("dialect", ["postgres", "mysql", "oracle"])
def test_each_captured_tasks_entries_load_back_with_the_types_they_were_mapped_to(dialect):
    from lakehouse.onboard.columns import read_columns
    from lakehouse.onboard.task import read_task
    from lakehouse.sources.db_types import spark_type

    endpoints, tasks, columns = files(dialect)
    task = read_task(endpoints, tasks, None)
    declared = {c: t for table in read_columns(columns).values() for c, t in table.columns}
    tables = entries(dialect)

    config = Config.model_validate({"paths": {"landing": "l", "lake": "k", "checkpoints": "c"}, "tables": tables})

    for name, table in tables.items():
        assert table["source"]["dialect"] == task.dialect
        loaded = config.tables[name].source.columns
        for column in loaded:
            source_name = next((c for c in declared if c.lower() == column.lower()), None)
            if source_name is not None and column in table["source"]["columns"]:
                assert loaded[column] == spark_type(declared[source_name], task.dialect), (name, column)


def test_csv_null_value_and_no_sup_value_are_carried_and_a_no_sup_value_without_its_text_is_refused(tmp_path):
    """CsvNullValue changes what an empty field means; CsvNoSupValue marks a column an update did not carry (the
    engine keeps its value); UseCsvNoSupValue without a CsvNoSupValue writes NULL over real values."""

    def null_value(data):
        data["endpoints"]["Endpoints"][1]["S3Settings"].update(CsvNullValue="NULL")

    (source,) = [
        t["source"] for t in yaml.safe_load(onboard_dms(*edited(tmp_path, "postgres", null_value)))["tables"].values()
    ][:1]
    assert source["null_value"] == "NULL"

    def no_sup(data):
        data["endpoints"]["Endpoints"][1]["S3Settings"].update(UseCsvNoSupValue=True, CsvNoSupValue="_NOSUP_")

    sources = [
        t["source"] for t in yaml.safe_load(onboard_dms(*edited(tmp_path, "postgres", no_sup)))["tables"].values()
    ]
    assert {s["no_sup_value"] for s in sources} == {"_NOSUP_"}

    def no_text(data):
        data["endpoints"]["Endpoints"][1]["S3Settings"].update(UseCsvNoSupValue=True)

    with pytest.raises(ConfigError, match="UseCsvNoSupValue=true without CsvNoSupValue"):
        onboard_dms(*edited(tmp_path, "postgres", no_text))

    def same_as_null(data):
        data["endpoints"]["Endpoints"][1]["S3Settings"].update(
            UseCsvNoSupValue=True, CsvNoSupValue="NULL", CsvNullValue="NULL"
        )

    with pytest.raises(ConfigError, match="is also CsvNullValue"):
        onboard_dms(*edited(tmp_path, "postgres", same_as_null))


def test_a_row_delimiter_other_than_a_line_break_and_local_time_file_names_are_refused(tmp_path):
    """Found by review: CsvRowDelimiter \\r held every file's last record as cut short (any other text made a file
    one cut record); DatePartitionTimezone names CDC files in local time, read as UTC when no timestamp column
    dates the changes (off by the offset, an hour reordered at a daylight-saving change)."""

    def settings(**values):
        def change(data):
            data["endpoints"]["Endpoints"][1]["S3Settings"].update(values)

        return change

    for delimiter in ("\\n", "\n", "\r\n"):
        onboard_dms(*edited(tmp_path, "postgres", settings(CsvRowDelimiter=delimiter)))
    with pytest.raises(ConfigError, match=r"CsvRowDelimiter '\\r' ends records"):
        onboard_dms(*edited(tmp_path, "postgres", settings(CsvRowDelimiter="\\r")))

    local = settings(DatePartitionEnabled=True, DatePartitionTimezone="Asia/Seoul", TimestampColumnName=None)
    with pytest.raises(ConfigError, match="DatePartitionTimezone 'Asia/Seoul' names CDC files"):
        onboard_dms(*edited(tmp_path, "postgres", local))
    dated = settings(DatePartitionEnabled=True, DatePartitionTimezone="Asia/Seoul", TimestampColumnName="commit_ts")
    onboard_dms(*edited(tmp_path, "postgres", dated))
    onboard_dms(*edited(tmp_path, "postgres", settings(DatePartitionEnabled=False, DatePartitionTimezone="Asia/Seoul")))


def test_an_oracle_task_without_no_sup_value_is_onboarded_with_a_warning_about_unlogged_columns(tmp_path):
    """With PRIMARY KEY supplemental logging, an Oracle update carries NULL for every column it did not change."""
    endpoints, tasks, columns = files("oracle")
    header = [line for line in onboard_dms(endpoints, tasks, columns).splitlines() if line.startswith("#")]
    assert any("WARNING: Oracle source without UseCsvNoSupValue" in line for line in header)

    def no_sup(data):  # this task writes Parquet: CSV, where the marker is written
        settings = {"UseCsvNoSupValue": True, "CsvNoSupValue": "_NOSUP_", "DataFormat": "csv"}
        data["endpoints"]["Endpoints"][1]["S3Settings"].update(settings)

    marked = onboard_dms(*edited(tmp_path, "oracle", no_sup))
    assert "Oracle source" not in marked
    assert {t["source"]["no_sup_value"] for t in yaml.safe_load(marked)["tables"].values()} == {"_NOSUP_"}

    def parquet(data):  # the marker is CSV's only: Parquet gets NULL for an unlogged column, whatever the setting
        no_sup(data)
        data["endpoints"]["Endpoints"][1]["S3Settings"].update(DataFormat="parquet")

    written = onboard_dms(*edited(tmp_path, "oracle", parquet))
    assert "WARNING: Oracle source without UseCsvNoSupValue" in written
    assert not [t for t in yaml.safe_load(written)["tables"].values() if "no_sup_value" in t["source"]]


def test_an_unsupported_transformation_rule_is_named(tmp_path):
    def unknown_rule(data):
        mappings = json.loads(data["tasks"]["ReplicationTasks"][0]["TableMappings"])
        mappings["rules"].append(
            {
                "rule-type": "transformation",
                "rule-id": "9",
                "rule-name": "9",
                "rule-target": "column",
                "object-locator": {"schema-name": "public", "table-name": "devices", "column-name": "%"},
                "rule-action": "add-tablespace",
            }
        )
        data["tasks"]["ReplicationTasks"][0]["TableMappings"] = json.dumps(mappings)

    with pytest.raises(ConfigError, match=r"rule 9 \(column add-tablespace\) is not supported"):
        onboard_dms(*edited(tmp_path, "postgres", unknown_rule))


def test_a_table_without_a_known_primary_key_asks_for_one_and_key_gives_it(tmp_path):
    rows = json.loads((TASKS / "mysql" / "columns.json").read_text())
    for row in rows:
        row["COLUMN_KEY"] = ""
    columns = tmp_path / "columns.json"
    columns.write_text(json.dumps(rows))
    endpoints, tasks, _ = files("mysql")

    with pytest.raises(ConfigError, match="no primary key; mark it in the column list or pass --key customers="):
        onboard_dms(endpoints, tasks, columns)
    tables = yaml.safe_load(
        onboard_dms(endpoints, tasks, columns, keys={"customers": ["customer_id"], "orders": ["order_id"]})
    )["tables"]
    assert tables["customers"]["primary_key"] == ["customer_id"]


def test_the_command_writes_the_entries_and_reports_errors_in_one_line(tmp_path, capsys):
    endpoints, tasks, columns = files("postgres")
    output = tmp_path / "tables.yaml"
    args = ["onboard", "dms", "--endpoint", str(endpoints), "--task", str(tasks), "--columns", str(columns)]

    assert main([*args, "--output", str(output)]) == 0
    assert "patients" in yaml.safe_load(output.read_text())["tables"]
    assert main([*args, "--task-id", "nope"]) == 2
    assert "no task 'nope'" in capsys.readouterr().err

    oracle = [str(p) for p in files("oracle")]
    oracle_args = ["onboard", "dms", "--endpoint", oracle[0], "--task", oracle[1], "--columns", oracle[2]]
    assert main([*oracle_args, "--output", str(tmp_path / "oracle.yaml")]) == 0
    assert "WARNING: Oracle source without UseCsvNoSupValue" in capsys.readouterr().out  # not only in the file


# --- source types as DMS writes them (found by review) ----------------------------------------------------------


def mysql_catalog(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    """A MySQL information_schema.columns listing of table shop.notes: (column, column_type), the first the key."""
    listing = [
        {
            "TABLE_SCHEMA": "shop",
            "TABLE_NAME": "notes",
            "COLUMN_NAME": name,
            "ORDINAL_POSITION": i + 1,
            "DATA_TYPE": column_type.split("(")[0],
            "COLUMN_TYPE": column_type,
            "COLUMN_KEY": "PRI" if i == 0 else "",
        }
        for i, (name, column_type) in enumerate(rows)
    ]
    path = tmp_path / "columns.json"
    path.write_text(json.dumps(listing))
    return path


def _non_lob_before_images(schema: str, table: str):
    def edit(data):
        task = data["tasks"]["ReplicationTasks"][0]
        mappings = json.loads(task["TableMappings"])
        mappings["rules"].append(
            {
                "rule-type": "transformation",
                "rule-id": "90",
                "rule-name": "90",
                "rule-target": "column",
                "object-locator": {"schema-name": schema, "table-name": table},
                "rule-action": "add-before-image-columns",
                "before-image-def": {"column-prefix": "BI_", "column-suffix": "", "column-filter": "non-lob"},
            }
        )
        task["TableMappings"] = json.dumps(mappings)

    return edit


def test_mysql_text_and_blob_columns_are_not_lobs_so_their_before_images_are_in_the_layout(tmp_path):
    """Found by review: TEXT, TINYTEXT, BLOB and TINYBLOB were LOBs for every source, so under column-filter non-lob
    the entry left out BI_notes, which DMS writes (every CDC file was schema_drift), and the limited-LOB warning named
    them. DMS's MySQL page: TEXT → WSTRING, BLOB → BYTES, "not affected" by the LOB settings; MEDIUMTEXT, LONGTEXT
    (NCLOB), MEDIUMBLOB, LONGBLOB (BLOB) and JSON (CLOB) are LOBs."""
    columns = mysql_catalog(
        tmp_path,
        [("note_id", "int"), ("notes", "text"), ("title", "tinytext"), ("scan", "blob"), ("thumb", "tinyblob"),
         ("body", "mediumtext"), ("archive", "longtext"), ("image", "mediumblob"), ("raw", "longblob"),
         ("meta", "json")],
    )  # fmt: skip
    endpoints, tasks, _ = edited(tmp_path, "mysql", _non_lob_before_images("shop", "notes"))

    text = onboard_dms(endpoints, tasks, columns)

    written = yaml.safe_load(text)["tables"]["notes"]["source"]["columns"]
    assert [c for c in written if c.startswith("BI_")] == ["BI_note_id", "BI_notes", "BI_title", "BI_scan", "BI_thumb"]
    (cut,) = [w for w in _warnings(text) if "LobMaxSize=32 KB" in w]
    assert "(notes.body, notes.archive, notes.image, notes.raw, notes.meta)" in cut, cut


@pytest.mark.parametrize(
    ("declared", "dialect", "lob"),
    [
        ("text", "mysql", False), ("TINYTEXT", "mysql", False), ("blob", "mysql", False), ("tinyblob", "mysql", False),
        ("varchar(4000)", "mysql", False), ("MEDIUMTEXT", "mysql", True), ("longtext", "mysql", True),
        ("mediumblob", "mysql", True), ("longblob", "mysql", True), ("json", "mysql", True),
        ("text", "postgres", True), ("bytea", "postgres", True), ("jsonb", "postgres", True),
        ("_int4", "postgres", True),
        ("tsvector", "postgres", True), ("polygon", "postgres", True), ("path", "postgres", True),
        ("point", "postgres", False), ("int4range", "postgres", False), ("varchar", "postgres", False),
        ("CLOB", "oracle", True), ("NCLOB", "oracle", True), ("BLOB", "oracle", True), ("LONG", "oracle", True),
        ("LONG RAW", "oracle", True), ("XMLTYPE", "oracle", True), ("VARCHAR2", "oracle", False),
        ("RAW", "oracle", False),
        ("text", "sqlserver", True), ("nvarchar(max)", "sqlserver", True), ("varbinary(max)", "sqlserver", True),
        ("nvarchar(4000)", "sqlserver", False),
    ],
)  # fmt: skip
def test_lob_columns_are_those_dms_makes_lobs_for_the_source_engine(declared, dialect, lob):
    from lakehouse.onboard.dms_columns import is_lob

    assert is_lob(declared, dialect) is lob


def test_postgres_ranges_geometric_and_text_search_columns_are_onboarded_as_text(tmp_path):
    """Found by review: onboarding aborted on these ordinary types, which DMS writes as text (STRING(255), CLOB)."""
    rows = ["public,shapes,shape_id,1,integer,int4,,32,0,YES"]
    names = ["int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange", "point", "line", "lseg", "box",
             "path", "polygon", "circle", "tsquery", "tsvector"]  # fmt: skip
    rows += [f"public,shapes,c_{name},{i + 2},{name},{name},,,,NO" for i, name in enumerate(names)]
    endpoints, tasks, _ = files("postgres")

    shapes = entries_of(endpoints, tasks, postgres_catalog(tmp_path, rows))["shapes"]["source"]["columns"]

    assert {shapes[f"c_{name}"] for name in names} == {"string"}


def test_oracle_intervals_are_text_and_a_type_without_mapping_says_how_to_give_one_with_type(tmp_path, capsys):
    """Found by review: `INTERVAL DAY(2) TO SECOND(6)` (two brackets) aborted onboarding, and the abort said "give
    its column a type by hand", which no option did. A type with no mapping is given with --type TABLE.COLUMN=TYPE."""
    columns = tmp_path / "columns.csv"
    columns.write_text(
        "OWNER,TABLE_NAME,COLUMN_NAME,COLUMN_ID,DATA_TYPE,DATA_PRECISION,DATA_SCALE,PK\n"
        "HR,EMPLOYEES,EMPLOYEE_ID,1,NUMBER,6,0,Y\n"
        "HR,EMPLOYEES,SHIFT,2,INTERVAL DAY(2) TO SECOND(6),2,6,\n"
        "HR,EMPLOYEES,TENURE,3,INTERVAL YEAR(2) TO MONTH,2,0,\n"
        "HR,EMPLOYEES,SITE,4,SDO_GEOMETRY,,,\n"
    )
    endpoints, tasks, _ = files("oracle")

    with pytest.raises(ConfigError) as error:
        onboard_dms(endpoints, tasks, columns)
    assert "column SITE: type 'SDO_GEOMETRY' has no Spark type mapping" in str(error.value)
    assert "--type EMPLOYEES.SITE=TYPE" in str(error.value)

    typed = onboard_dms(endpoints, tasks, columns, types={"EMPLOYEES": {"SITE": "string"}})
    written = yaml.safe_load(typed)["tables"]["employee"]["source"]["columns"]
    assert (written["shift"], written["tenure"], written["site"]) == ("string", "string", "string")

    args = ["onboard", "dms", "--endpoint", str(endpoints), "--task", str(tasks), "--columns", str(columns)]
    assert main([*args, "--type", "EMPLOYEES.SITE=string", "--output", str(tmp_path / "hr.yaml")]) == 0
    assert yaml.safe_load((tmp_path / "hr.yaml").read_text())["tables"]["employee"]["source"]["columns"]["site"] == (
        "string"
    )
    capsys.readouterr()
    assert main([*args, "--type", "EMPLOYEES.SIET=string"]) == 2
    assert "table EMPLOYEES has no column SIET (did you mean SITE?)" in capsys.readouterr().err
    assert main([*args, "--type", "EMPLOYEES.SITE=SDO_GEOMETRY"]) == 2
    assert "'SDO_GEOMETRY' is no type the configuration reads" in capsys.readouterr().err
    # Found by review: a Spark name the source reads its own way (an Oracle date has a time) was taken silently.
    assert main([*args, "--type", "EMPLOYEES.SITE=date"]) == 2
    assert "reads 'date' as this source's type, timestamp, not Spark's date" in capsys.readouterr().err
    assert main([*args, "--type", "EMPLOYEES.SITE=integer", "--output", str(tmp_path / "hr.yaml")]) == 0  # Spark's int


def test_postgres_numeric_without_precision_is_onboarded_with_a_warning_that_dms_keeps_six_decimals(tmp_path):
    """DMS writes a PostgreSQL numeric without precision as NUMERIC(28,6): 0.611111104488373 arrives as 0.611111,
    and nothing says so; onboarding now names such columns in the YAML header."""
    columns = postgres_catalog(
        tmp_path,
        [
            "public,readings,reading_id,1,integer,int4,,32,0,YES",
            "public,readings,ratio,2,numeric,numeric,,,,NO",
            "public,readings,dose,3,numeric,numeric,,10,2,NO",
        ],
    )
    endpoints, tasks, _ = files("postgres")

    text = onboard_dms(endpoints, tasks, columns)

    (warning,) = [w for w in _warnings(text) if "NUMERIC(28,6)" in w]
    assert "(readings.ratio)" in warning and "readings.dose" not in warning
    assert yaml.safe_load(text)["tables"]["readings"]["source"]["columns"]["ratio"] == "decimal(38,10)"
    assert not [w for w in _warnings(onboard_dms(*files("postgres"))) if "NUMERIC(28,6)" in w]


@pytest.mark.parametrize(
    ("oracle_settings", "rate"),
    [({}, "decimal(38,10)"), ({"NumberDatatypeScale": -1}, "double"), ({"NumberDatatypeScale": -2}, "string"),
     ({"NumberDatatypeScale": 12}, "decimal(38,12)")],
)  # fmt: skip
def test_an_oracle_integer_is_a_whole_decimal_whatever_the_number_datatype_scale(tmp_path, oracle_settings, rate):
    """Found by review: INTEGER (NUMBER(*,0); the catalog's DATA_PRECISION is NULL, DATA_SCALE 0) lost its scale and
    was read as a NUMBER without either: decimal(38,10), or double under NumberDatatypeScale=-1, where an id above
    2^53 is rounded (two keys could merge). NumberDatatypeScale is for a NUMBER with neither precision nor scale."""
    columns = tmp_path / "columns.csv"
    columns.write_text(
        "OWNER,TABLE_NAME,COLUMN_NAME,COLUMN_ID,DATA_TYPE,DATA_PRECISION,DATA_SCALE,PK\n"
        "HR,EMPLOYEES,EMPLOYEE_ID,1,NUMBER,,0,Y\n"
        "HR,EMPLOYEES,RATE,2,NUMBER,,,\n"
    )

    def scale(data):
        data["endpoints"]["Endpoints"][0]["OracleSettings"].update(oracle_settings)

    employee = entries_of(*edited(tmp_path, "oracle", scale)[:2], columns)["employee"]

    assert (employee["source"]["columns"]["employee_id"], employee["source"]["columns"]["rate"]) == (
        "decimal(38,0)",
        rate,
    )
    config = Config.model_validate(
        {"paths": {"landing": "l", "lake": "k", "checkpoints": "c"}, "tables": {"employee": employee}}
    )
    assert config.tables["employee"].source.columns["employee_id"] == "decimal(38,0)"


def test_an_escaped_csv_delimiter_is_read_and_one_of_several_characters_is_refused_naming_it(tmp_path):
    """Found by review: CsvDelimiter was not unescaped as CsvRowDelimiter is: `\t` as describe-endpoints or the
    extra connection attributes write a tab, or `||`, failed with a length error that did not name CsvDelimiter."""

    def delimiter(value: str, *, attribute: bool = False):
        def change(data):
            target = data["endpoints"]["Endpoints"][1]
            if attribute:
                del target["S3Settings"]["CsvDelimiter"]
                target["ExtraConnectionAttributes"] = f"csvDelimiter={value};"
            else:
                target["S3Settings"]["CsvDelimiter"] = value

        return change

    for tab in (delimiter("\\t"), delimiter("\\t", attribute=True), delimiter("\t")):
        assert {t["source"]["delimiter"] for t in entries_of(*edited(tmp_path, "postgres", tab)).values()} == {"\t"}
    assert all("delimiter" not in t["source"] for t in entries("postgres").values())  # a comma, the default

    with pytest.raises(ConfigError, match=r"S3Settings CsvDelimiter '\|\|' is 2 characters") as error:
        onboard_dms(*edited(tmp_path, "postgres", delimiter("||")))
    assert "set CsvDelimiter to one character" in str(error.value)


# --- the generated configuration ingests files of each task ---------------------------------------------------


def gz_csv(path: Path, records: list[list[str]]) -> None:
    text = "".join(",".join(r) + "\n" for r in records)
    path.write_bytes(gzip.compress(text.encode()))


def parquet(path: Path, table: pa.Table) -> None:
    out = io.BytesIO()
    pq.write_table(table, out)
    path.write_bytes(out.getvalue())


def land_task_files(landing: Path) -> None:
    pg = landing / "dms" / "cpap" / "public" / "patients"
    pg.mkdir(parents=True)
    (pg / "LOAD00000001.csv").write_text(
        "I,2026-03-01 08:00:00.000000,1,Ann,Lee,+7.05000000e+01,12.50,2026-02-27 10:00:00+00,,\n"
        "I,2026-03-01 08:00:00.000000,2,Bo,Diaz,+8.00000000e+01,0.00,2026-02-27 10:00:00+00,,\n"
    )
    (pg / "20260301-090000000.csv").write_text(  # a primary-key update 1 → 101, with its before-image
        f"U,2026-03-01 09:00:00.000000,101,Ann,Lee,+7.05000000e+01,12.50,2026-03-01 09:00:00+00,{1:035d},1\n"
    )
    my = landing / "mysql" / "shop" / "customers"
    my.mkdir(parents=True)
    gz_csv(
        my / "LOAD00000001.csv.gz",
        [
            ["customer_id", "name", "vip", "balance", "created_at"],
            ["4000000000", "Cy", "1", "10.00", "2026-01-05 10:00:00"],
        ],
    )
    gz_csv(
        my / "20260301-100000250.csv.gz",
        [
            ["Op", "customer_id", "name", "vip", "balance", "created_at"],
            ["U", "4000000000", "Cy", "2", "99.95", "2026-01-05 10:00:00"],  # a tinyint(1) holding 2
        ],
    )
    ora = landing / "oracle" / "hr" / "employee"
    ora.mkdir(parents=True)
    money = pa.decimal128(8, 2)
    base = {
        "Op": ["I"],
        "dms_commit_ts": ["2026-03-01 08:00:00.000000"],
        "employee_id": pa.array([100], pa.int64()),
        "first_name": ["Steven"],
        "last_name": ["King"],
        "salary": pa.array([Decimal("24000.00")], money),
        "commission_pct": pa.array([None], pa.decimal128(2, 2)),
        "hire_date": ["2003-06-17 00:00:00"],
        "dms_change_seq": pa.array([None], pa.string()),
    }
    parquet(ora / "LOAD00000001.parquet", pa.table(base))
    raise_ = {**base, "Op": ["U"], "dms_commit_ts": ["2026-03-01 11:00:00.000000"]}
    raise_["salary"] = pa.array([Decimal("26000.00")], money)
    raise_["dms_change_seq"] = pa.array([f"{7:035d}"], pa.string())
    parquet(ora / "20260301-110000000.parquet", pa.table(raise_))


def test_generated_entries_ingest_files_of_each_task(spark, tmp_path):
    landing = tmp_path / "landing"
    land_task_files(landing)
    tables = {}
    for dialect, name in (("postgres", "patients"), ("mysql", "customers"), ("oracle", "employee")):
        tables[name] = copy.deepcopy(entries(dialect, landing=str(landing))[name])
    config = Config.model_validate(
        {
            "paths": {"landing": str(landing), "lake": str(tmp_path / "lake"), "checkpoints": str(tmp_path / "cp")},
            "tables": tables,
        }
    )

    runs = run_once(spark, config)

    assert all(r.ok for r in runs), [r.error for r in runs]
    assert all(b.quarantined == 0 and b.reconciles for r in runs for b in r.batches)

    def latest(table: str) -> list[tuple]:
        rows = spark.read.format("delta").load(table_paths(config, config.tables[table]).latest).collect()
        columns = [c for c in config.tables[table].columns]
        return sorted(tuple(r[c] for c in columns) for r in rows)

    assert [(r[0], r[1], r[4]) for r in latest("patients")] == [
        (2, "Bo", Decimal("0.00")),
        (101, "Ann", Decimal("12.50")),
    ]
    assert latest("customers") == [(4000000000, "Cy", 2, Decimal("99.95"), latest("customers")[0][4])]
    assert [(r[0], r[3]) for r in latest("employee")] == [(100, Decimal("26000.00"))]
