"""The `lakehouse` command: run, stream, snapshot load, as-of, latest, onboard, demo.

User errors (configuration, input, a missing table) print one clear message and exit 2; a failed
table in `run` exits 1 after the others have completed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.config import Config, load_config
from lakehouse.errors import ConfigError, InputError, LakehouseError
from lakehouse.logs import log_to_stdout

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakehouse.apply.non_phi import NonPhiZone
    from lakehouse.runner import Governance

DEFAULT_CONFIG = "config/local.yaml"


def _whole(at_least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `at_least` (argparse names the option when it is not)."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < at_least:
            raise argparse.ArgumentTypeError(f"expected {at_least} or more, got {value}")
        return value

    return whole


def _hours(text: str) -> float:
    """An argparse type: a number of hours, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of hours, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of hours, 0 or more, got {text!r}")
    return value


def _subcommands(parser: argparse.ArgumentParser, dest: str, named: list[argparse.Action]) -> Any:
    """Required subcommands; `named` collects them so that their choices become their metavar once added
    (argparse's "the following arguments are required" then says {load}, not the internal dest)."""
    action = parser.add_subparsers(dest=dest, required=True)
    named.append(action)
    return action


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        default=os.environ.get("LAKEHOUSE_CONFIG", DEFAULT_CONFIG),
        help=f"YAML configuration (default: $LAKEHOUSE_CONFIG or {DEFAULT_CONFIG})",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show Spark's own log and the resolution of its jars"
    )
    subcommands: list[argparse.Action] = []
    sub = _subcommands(parser, "command", subcommands)

    run = sub.add_parser("run", help="apply everything that has landed, then stop (trigger availableNow)")
    run.add_argument("--table", action="append", help="only this table (repeatable)")
    run.add_argument("--no-demo", action="store_true", help="never write demo input into an empty landing area")

    stream = sub.add_parser("stream", help="run continuously until SIGTERM / Ctrl-C")
    stream.add_argument("--table", action="append", help="only this table (repeatable)")

    as_of = sub.add_parser("as-of", help="rows live at a time, from the history table's validity columns")
    as_of.add_argument("table")
    as_of.add_argument("--at", required=True, help="UTC time, ISO 8601: 2026-03-02 or '2026-03-02 10:00:00'")
    as_of.add_argument("--limit", type=_whole(0), default=20, help="rows shown (default 20)")
    as_of.add_argument("--sql", action="store_true", help="print the same query for Athena instead of running it")

    latest = sub.add_parser("latest", help="the latest table, optionally at a Delta version or timestamp")
    latest.add_argument("table")
    group = latest.add_mutually_exclusive_group()
    group.add_argument("--version", type=_whole(0))
    group.add_argument("--timestamp", help="ISO 8601, UTC unless it has an offset: the table as of then")
    latest.add_argument("--limit", type=_whole(0), default=20, help="rows shown (default 20)")

    snapshot = sub.add_parser("snapshot", help="snapshot feeds (340B OPAIS export, CMS PECOS CSV)")
    snapshot_sub = _subcommands(snapshot, "snapshot_command", subcommands)
    load = snapshot_sub.add_parser("load", help="apply one snapshot file now (local path or s3://)")
    load.add_argument("file")
    load.add_argument("--feed", help="the configured feed it belongs to (default: the only feed of its kind)")
    load.add_argument(
        "--allow-deletes",
        action="store_true",
        help="apply it even if it deletes more of a table than the feed's max_delete_fraction",
    )

    policy = sub.add_parser("policy", help="the consent policy table")
    policy_sub = _subcommands(policy, "policy_command", subcommands)
    policy_sub.add_parser("build", help="rebuild the policy from the consent source table and store it")

    privacy = sub.add_parser("privacy", help="the non-PHI zone: forget, re-admit, purge, consent sync")
    privacy_sub = _subcommands(privacy, "privacy_command", subcommands)
    forget = privacy_sub.add_parser(
        "forget", help="remove a patient's rows from the non-PHI zone for good (rerun to finish an interrupted one)"
    )
    forget.add_argument("--patient", required=True, help="the patient id as the source has it")
    forget.add_argument(
        "--vacuum-hours",
        type=_hours,
        help="also VACUUM the zone's tables with this retention (>= the tables' 168 h unless Delta's check is off)",
    )
    readmit = privacy_sub.add_parser("readmit", help="lift a forget (recorded); the consent rules apply again")
    readmit.add_argument("--patient", required=True, help="the patient id as the source has it")
    purge = privacy_sub.add_parser("vacuum", help="VACUUM the non-PHI zone: purge files older versions still read")
    purge.add_argument("--hours", type=_hours, default=168.0, help="retention in hours (default 168)")
    sync = privacy_sub.add_parser("sync", help="apply consent changes to the non-PHI zone now")
    sync.add_argument("--rebuild", action="store_true", help="rewrite the zone from the PHI zone (new key, layout)")

    db = sub.add_parser("db", help="the PostgreSQL database of the exported dimensions")
    db_sub = _subcommands(db, "db_command", subcommands)
    db_sub.add_parser("init", help="create the schema, dimension and bookkeeping tables (idempotent)")

    export = sub.add_parser("export", help="export dimensions")
    export_sub = _subcommands(export, "export_command", subcommands)
    export_sub.add_parser("postgres", help="export the dimensions' history to PostgreSQL since the last export")

    onboard = sub.add_parser("onboard", help="write the YAML table entries of a source from what AWS has")
    onboard_sub = _subcommands(onboard, "onboard_command", subcommands)
    dms = onboard_sub.add_parser(
        "dms",
        help="from `aws dms describe-endpoints` / `describe-replication-tasks` JSON and the source's column list",
    )
    dms.add_argument("--endpoint", required=True, type=Path, help="`aws dms describe-endpoints` output (JSON)")
    dms.add_argument("--task", required=True, type=Path, help="`aws dms describe-replication-tasks` output (JSON)")
    dms.add_argument(
        "--columns", required=True, type=Path, help="the source tables' columns (information_schema-like CSV or JSON)"
    )
    dms.add_argument("--task-id", help="the ReplicationTaskIdentifier, when the file holds several tasks")
    dms.add_argument("--landing", help="a path to use instead of s3://<BucketName> (files copied elsewhere)")
    dms.add_argument("--key", action="append", default=[], help="TABLE=COL[,COL]: a table's primary key (repeatable)")
    dms.add_argument(
        "--type",
        action="append",
        default=[],
        dest="types",
        help="TABLE.COLUMN=TYPE: a column's type, for one the source's type has no mapping for (repeatable)",
    )
    dms.add_argument("--output", type=Path, help="write the YAML here (default: print it)")

    demo = sub.add_parser("demo", help="write demo DMS files (a CPAP company's tables) into the landing area")
    demo.add_argument("--patients", type=_whole(10), default=200, help="10 or more (default 200)")
    for action in subcommands:
        action.metavar = "{" + ",".join(action.choices) + "}"  # type: ignore[arg-type]
    return parser


def _spark(config: Config, args: argparse.Namespace, app_name: str) -> SparkSession:
    """The Spark session of a command, with a progress line while it starts."""
    from lakehouse.progress import progress
    from lakehouse.session import build_spark

    with progress("starting Spark"):
        return build_spark(config, app_name=app_name, verbose=args.verbose)


def _landing_is_empty(config: Config) -> bool:
    root = Path(config.paths.landing)
    return not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def _write_demo(config: Config, patients: int) -> None:
    from lakehouse.demo import generate
    from lakehouse.demo_snapshots import write_opais, write_pecos

    counts = generate(Path(config.paths.landing), patients=patients)
    print(f"demo input written to {config.paths.landing}: " + ", ".join(f"{t} {n} rows" for t, n in counts.items()))
    for feed_name, feed in config.snapshots.items():
        writer = write_opais if feed.kind == "opais" else write_pecos
        files = writer(Path(feed.path))
        print(f"demo snapshots for {feed_name}: " + ", ".join(p.name for p in files))


def _cmd_run(args: argparse.Namespace, config: Config) -> int:
    from lakehouse.runner import lazy_session, run_once
    from lakehouse.summary import print_summary

    if config.environment == "local" and not args.no_demo and _landing_is_empty(config):
        print(f"landing area {config.paths.landing} is empty: writing demo input")
        _write_demo(config, patients=200)
    spark = lazy_session(lambda: _spark(config, args, "lakehouse-run"))  # started only if a table has work
    runs = run_once(spark, config, args.table, job="lakehouse run")
    print_summary(spark, config, runs)
    if not args.table:
        export_after_run(spark, config)
    return 0 if all(r.ok for r in runs) else 1


def _cmd_stream(args: argparse.Namespace, config: Config) -> int:
    from lakehouse.runner import run_stream

    spark = _spark(config, args, "lakehouse-stream")
    print(
        f"streaming {args.table or sorted(config.tables)} every {config.stream.trigger_seconds}s; "
        f"stop with Ctrl-C, SIGTERM or a file at {config.paths.checkpoints.rstrip('/')}/_stop"
    )
    runs = run_stream(spark, config, args.table, job="lakehouse stream")
    for run in runs:
        print(f"{run.table}: {run.batch_count} batches" + (f", FAILED: {run.error}" if run.error else ""))
    return 0 if all(r.ok for r in runs) else 1


def _cmd_as_of(args: argparse.Namespace, config: Config) -> int:
    from lakehouse.readers import as_of_local, format_rows, read_or_spark, rows_of_spark
    from lakehouse.tables import table_paths
    from lakehouse.timetravel import parse_time

    at = parse_time(args.at)
    table = config.table(args.table)
    if args.sql:
        from lakehouse.timetravel import athena_as_of_sql

        print(athena_as_of_sql(table, at))
        return 0
    history, key = table_paths(config, table).history, table.primary_key

    def with_spark():
        from lakehouse.timetravel import as_of

        frame = as_of(_spark(config, args, "lakehouse-as-of"), history, at)
        return rows_of_spark(frame, key=key, limit=args.limit)

    rows = read_or_spark(lambda: as_of_local(history, at, key=key, limit=args.limit), with_spark)
    print(f"{table.name} as of {at} (UTC): {rows.total} rows")
    print(format_rows(rows))
    return 0


def _cmd_latest(args: argparse.Namespace, config: Config) -> int:
    from lakehouse.readers import format_rows, latest_local, read_or_spark, rows_of_spark
    from lakehouse.tables import table_paths
    from lakehouse.timetravel import parse_time

    if args.timestamp is not None:
        parse_time(args.timestamp)  # a time it cannot read is refused before Spark starts
    table = config.table(args.table)
    latest, key = table_paths(config, table).latest, table.primary_key

    def local():
        if args.timestamp is not None:  # Spark's rules for a timestamp between commits
            return None
        return latest_local(latest, key=key, limit=args.limit, version=args.version)

    def with_spark():
        from lakehouse.timetravel import latest_at

        spark = _spark(config, args, "lakehouse-latest")
        frame = latest_at(spark, latest, version=args.version, timestamp=args.timestamp)
        return rows_of_spark(frame, key=key, limit=args.limit)

    rows = read_or_spark(local, with_spark)
    print(f"{table.name} latest: {rows.total} rows")
    print(format_rows(rows))
    return 0


def feed_for(config: Config, file: str, feed: str | None) -> str:
    if feed:
        if feed not in config.snapshots:
            raise ConfigError(
                f"no snapshot feed {feed!r}; configured: {sorted(config.snapshots)}", file=config.source_file
            )
        return feed
    kind = "csv" if file.lower().endswith((".csv", ".csv.gz")) else "opais"
    candidates = [n for n, f in config.snapshots.items() if f.kind == kind]
    if len(candidates) != 1:
        raise ConfigError(
            f"cannot tell which snapshot feed {file} belongs to (feeds of kind {kind}: {candidates}); pass --feed",
            file=config.source_file,
        )
    return candidates[0]


def _cmd_snapshot(args: argparse.Namespace, config: Config) -> int:
    from lakehouse.apply.snapshot import already_applied, apply_snapshot
    from lakehouse.ownership import hold
    from lakehouse.runner import configure_metrics

    feed = feed_for(config, args.file, args.feed)
    path = args.file if "://" in args.file else str(Path(args.file).resolve())
    if "://" not in path and not Path(path).is_file():
        raise InputError(f"snapshot file not found: {path}")
    result = already_applied(config, feed, path)
    if result is None:
        spark = _spark(config, args, "lakehouse-snapshot")
        configure_metrics(config)
        with hold(config, [feed], job="lakehouse snapshot load"):
            result = apply_snapshot(spark, config, feed, path, allow_deletes=args.allow_deletes)
    print(f"{feed}: {result.file} dated {result.date}: {result.status} in {result.seconds}s")
    if result.detail:
        print(f"  {result.detail}")
    for m in result.metrics:
        print(
            f"  {m.table:<26} inserted {m.inserted:>7}  updated {m.updated:>7}  deleted {m.deleted:>7}"
            f"  quarantined {m.quarantined:>5}"
        )
    return 0


def _cmd_policy(args: argparse.Namespace, config: Config) -> int:
    from lakehouse.policy.job import build_policy_table

    stats = build_policy_table(_spark(config, args, "lakehouse-policy"), config, job="lakehouse policy build")
    policy = config.policy
    if stats.newer_stored is not None:  # a newer build won: nothing to do
        print(f"policy not written: the store holds one built from a newer version of {policy.source_table}")
        return 0
    print(f"policy rebuilt from {policy.source_table}: {stats.rows} rows written to the {policy.store} store")
    return 0


def privacy(args: argparse.Namespace, config: Config) -> int:
    from lakehouse.apply.non_phi import non_phi_zone

    zone = non_phi_zone(config)
    if zone is None:
        raise ConfigError("no table goes to the non-PHI zone: nothing to do", file=config.source_file)
    spark = _spark(config, args, "lakehouse-privacy")
    if args.privacy_command == "forget":
        return _forget(spark, config, zone, args)
    if args.privacy_command == "vacuum":
        from lakehouse.apply.forget import vacuum

        paths = [getattr(zone, kind)(t) for t in config.tables.values() if t.non_phi for kind in ("history", "latest")]
        vacuum(spark, paths, args.hours, option="--hours")
        print(f"vacuumed {len(paths)} tables of the non-PHI zone (retention {args.hours:g} hours)")
        return 0
    from lakehouse.runner import Governance

    governance = Governance.of(config)
    if args.privacy_command == "readmit":
        from lakehouse.apply.forget import readmission_leases, readmit_patient

        # The leases before the policy is read: a writer of those tables may rebuild the policy until it is done.
        with readmission_leases(config):
            policy = governance.policy.current(spark) if governance.policy else None
            done = readmit_patient(spark, config, zone, args.patient, policy)
        if done.forgotten_again:
            print(
                "a forget of the patient was recorded while the re-admission ran and is the later event: the patient "
                "is forgotten again and stays out of the non-PHI zone"
            )
        elif done.recorded:
            print("re-admission recorded; the patient's consented rows are back in the non-PHI zone")
        else:
            print("the patient was not forgotten: nothing recorded; their rows in the zone were re-synced")
        return 0
    return _sync(spark, config, governance, rebuild=args.rebuild)


def _forget(spark: SparkSession, config: Config, zone: NonPhiZone, args: argparse.Namespace) -> int:
    from lakehouse.apply.forget import forget_patient
    from lakehouse.masking import pseudonym_prefix

    option = getattr(args, "vacuum_option", "--vacuum-hours")
    result = forget_patient(spark, config, zone, args.patient, vacuum_hours=args.vacuum_hours, option=option)
    if not result.known:
        print(
            f"warning: no table's PHI history holds the id given (patient {pseudonym_prefix(result.patient)}…): "
            "check the id. The forget is recorded all the same, so rows of this id that arrive later stay out of the "
            "non-PHI zone."
        )
    if result.already and not result.rows:
        print(f"patient {pseudonym_prefix(result.patient)}… was forgotten before: nothing to do")
        return 0
    if result.already:
        print(
            f"patient {pseudonym_prefix(result.patient)}… was forgotten before, but {sum(result.rows.values())} of "
            "its rows were in the non-PHI zone again (a restore of the zone's files?): deleted"
        )
    else:
        done = "finished (an interrupted forget)" if result.resumed else "removed from the non-PHI zone"
        print(f"patient {pseudonym_prefix(result.patient)}… {done}: {sum(result.rows.values())} rows")
    for table, rows in result.rows.items():
        print(f"  {table:<28} {rows:>6}")
    if not result.vacuumed:
        print(
            "Delta time travel still reads the replaced files until a VACUUM removes them, which it does once they "
            "are older than the tables' retention (7 days by default): `lakehouse privacy vacuum` then"
        )
    return 0


def _sync(spark: SparkSession, config: Config, governance: Governance, *, rebuild: bool) -> int:
    from lakehouse.apply.consent_sync import rebuild as rebuild_zone
    from lakehouse.ownership import hold
    from lakehouse.runner import sync_zone, table_policy
    from lakehouse.tables import table_paths

    zone = governance.non_phi
    assert zone is not None
    tables = [t for t in config.tables.values() if t.non_phi]
    units = [unit for unit, members in config.write_units().items() if any(t.name in members for t in tables)]
    # The tables' writers' leases: a running stream syncs its tables itself (at its policy's refresh), and a sync
    # beside it could leave a withdrawn patient's versions that the stream admitted under its older policy.
    with hold(config, units, job="lakehouse privacy sync"):
        for table in tables:
            policy = table_policy(spark, table, governance)
            if rebuild:
                note = rebuild_zone(spark, table, zone, phi_history=table_paths(config, table).history, policy=policy)
            else:
                note = sync_zone(spark, config, table, governance, policy)
            print(f"{table.name}: {note or 'the zone already follows the consent policy'}")
    return 0


def _cmd_db(args: argparse.Namespace, config: Config) -> int:
    from lakehouse.sinks.postgres import connect, init_db
    from lakehouse.sinks.postgres_export import settings_for

    if config.postgres is None:
        raise ConfigError("no `postgres:` section in the configuration", file=config.source_file)
    settings = settings_for(config.postgres)
    with connect(settings) as conn:
        done = init_db(conn, settings.schema)
    print(f"schema {settings.schema} on {settings.host}: " + ", ".join(done))
    return 0


def _cmd_export(args: argparse.Namespace, config: Config) -> int:
    from lakehouse.sinks.postgres_export import export_postgres

    results = export_postgres(_spark(config, args, "lakehouse-export"), config)
    for r in results:
        print(f"{r.table:<26} {r.mode:<12} versions {r.from_version}→{r.to_version}  rows {r.rows:>8}  {r.seconds}s")
    return 0


def export_after_run(spark: Callable[[], SparkSession], config: Config) -> None:
    """`lakehouse run` exports to PostgreSQL when a database is configured, and says so when not."""
    if config.postgres is None:
        print("no database configured (postgres:): the PostgreSQL export is skipped")
        return
    from lakehouse.sinks.postgres_export import export_postgres

    for r in export_postgres(spark(), config):
        print(f"exported {r.table}: {r.mode}, {r.rows} rows (Delta version {r.to_version})")


def _cmd_onboard(args: argparse.Namespace) -> int:
    from lakehouse.onboard import onboard_dms
    from lakehouse.onboard.given import parse_keys, parse_types

    keys, types = parse_keys(args.key), parse_types(args.types)
    text = onboard_dms(
        args.endpoint, args.task, args.columns, task_id=args.task_id, landing=args.landing, keys=keys, types=types
    )
    if args.output:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            what = "is a folder" if isinstance(exc, IsADirectoryError) else (exc.strerror or str(exc)).lower()
            raise InputError(
                f"cannot write the table entries to --output {args.output}: {what}. Pass a file path in an "
                "existing folder (or leave --output out to print them)"
            ) from None
        print(f"table entries written to {args.output}")
        for line in text.splitlines():  # the header's warnings are said here too, not only in the file
            if line.startswith("# WARNING: "):
                print(line[2:])
    else:
        print(text, end="")
    return 0


COMMANDS = {
    "policy": _cmd_policy,
    "privacy": privacy,
    "db": _cmd_db,
    "export": _cmd_export,
    "run": _cmd_run,
    "snapshot": _cmd_snapshot,
    "stream": _cmd_stream,
    "as-of": _cmd_as_of,
    "latest": _cmd_latest,
}


def _config(location: str | Path) -> Config:
    """The configuration at a local path or, as the deployed jobs read it, an s3:// object (on an EMR node, say)."""
    if str(location).startswith(("s3://", "s3a://")):
        from lakehouse.jobs import load_job_config

        return load_job_config({"config": str(location)})
    return load_config(location)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lakehouse` console script."""
    args = _parser().parse_args(argv)
    log_to_stdout(args.log_level)
    try:
        if args.command == "onboard":  # writes configuration; needs none
            return _cmd_onboard(args)
        config = _config(args.config)
        if args.command == "demo":
            _write_demo(config, args.patients)
            return 0
        return COMMANDS[args.command](args, config)
    except LakehouseError as exc:
        print(f"lakehouse: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
