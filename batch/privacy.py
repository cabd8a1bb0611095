r"""`lakehouse privacy` where the zones are: forget, re-admit, consent sync and VACUUM of the non-PHI zone, as a job.

    spark-submit batch/privacy.py --config s3://artifacts/config/aws.yaml --command forget --patient 4101 \
        [--vacuum_hours 0]
    spark-submit batch/privacy.py --config ... --command readmit --patient 4101
    spark-submit batch/privacy.py --config ... --command sync [--rebuild true]
    spark-submit batch/privacy.py --config ... --command vacuum [--hours 168]

Each command does what the `lakehouse privacy` subcommand of its name does, with the same messages: the
subcommand's options are job arguments (`--vacuum-hours` is `--vacuum_hours`, `--rebuild` takes true or false). An
argument another command takes, or `--table` / `--tables` (every command acts on the whole zone), is refused
(exit 2) before anything is read. On AWS: the Glue job `<project>-<environment>-privacy`, started by hand
(deploy/README.md, "Privacy requests").
"""

from __future__ import annotations

import argparse

from lakehouse.errors import InputError
from lakehouse.jobs import amount_argument, flag_argument, glue_job, load_job_config, main
from lakehouse.session import build_spark

# What each command takes besides the arguments every job takes, and what it needs.
TAKES = {
    "forget": ["patient", "vacuum_hours"],
    "readmit": ["patient"],
    "sync": ["rebuild"],
    "vacuum": ["hours"],
}
OPTIONS = ["command", "patient", "vacuum_hours", "hours", "rebuild"]
DEFAULT_VACUUM_HOURS = 168.0  # `lakehouse privacy vacuum`'s default: the zone tables' retention


def privacy_options(args: dict[str, str | None]) -> argparse.Namespace:
    """The job's arguments as the `lakehouse privacy` subcommand's; an argument the command does not take is refused."""
    command = str(args.get("command"))
    if command not in TAKES:
        raise InputError(f"--command takes one of {', '.join(TAKES)}, not {command!r}")
    selected = [f"--{name}" for name in ("table", "tables") if args.get(name)]
    if selected:
        raise InputError(
            f"{' and '.join(selected)}: privacy {command} acts on every table of the non-PHI zone; leave it out"
        )
    given = [name for name in OPTIONS[1:] if args.get(name) is not None]
    stray = [f"--{name}" for name in given if name not in TAKES[command]]
    if stray:
        takes = ", ".join(f"--{name}" for name in TAKES[command])
        raise InputError(f"--command {command} takes {takes}, not {', '.join(stray)}")
    patient = args.get("patient")
    if "patient" in TAKES[command] and not (patient or "").strip():
        raise InputError(f"--command {command} needs --patient <the patient id as the source has it>")
    vacuum_hours = args.get("vacuum_hours")
    return argparse.Namespace(
        privacy_command=command,
        patient=patient,
        vacuum_hours=amount_argument(args, "vacuum_hours", "hours", 0) if vacuum_hours else None,
        hours=amount_argument(args, "hours", "hours", DEFAULT_VACUUM_HOURS),
        rebuild=flag_argument(args, "rebuild"),
        vacuum_option="--vacuum_hours",  # how a refusal names it
        verbose=False,
    )


def work(args: dict) -> int:
    # The CLI's own implementation, so the job and `lakehouse privacy` cannot drift apart (see the module docstring).
    from lakehouse.cli import privacy

    options = privacy_options(args)
    config = load_job_config(args)
    spark = build_spark(config, app_name=args["JOB_NAME"])  # the session the command then uses
    with glue_job(spark, args["JOB_NAME"]):
        return privacy(options, config)


if __name__ == "__main__":
    main(work, required=["command"], optional=OPTIONS[1:])
