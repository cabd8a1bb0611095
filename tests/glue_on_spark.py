"""Glue job runs answered by real `spark-submit` runs on the lane's Spark cluster (moto's Glue, in-process).

moto's Glue keeps jobs and job runs but runs nothing: a run is STARTING, then RUNNING, then SUCCEEDED. Here
`StartJobRun` also starts what Glue would start, from the job as Terraform defines it: its script
(ScriptLocation, downloaded from the S3 API) with `--JOB_NAME`, `--JOB_RUN_ID` and the run's arguments (the
job's DefaultArguments overlaid with the run's), `--additional-python-modules` (the wheel) shipped with
`--py-files`, `--extra-jars` with `--jars`, `--conf` as Spark settings and `--datalake-formats delta` as the
Delta package. `GetJobRun` reports RUNNING until the process ends, then SUCCEEDED or FAILED with the end of
its output as ErrorMessage, so Step Functions' `glue:startJobRun.sync` waits for the real job.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DELTA_PACKAGE = "io.delta:delta-spark_2.12:3.3.2"


@dataclass
class LaneRun:
    """One Glue job run as a spark-submit process."""

    job: str
    run_id: str
    arguments: dict[str, str]
    state: str = "STARTING"
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    log: Path | None = None


class GlueOnSpark:
    """Patches moto's Glue so its job runs are spark-submit runs; `uninstall()` puts moto back."""

    def __init__(
        self,
        command: Callable[[LaneRun, dict[str, Any]], list[str]],
        env: dict[str, str],
        logs: Path,
        *,
        parallel: int = 2,
        on_end: Callable[[LaneRun], None] | None = None,
    ) -> None:
        self.command, self.env, self.logs, self.on_end = command, env, logs, on_end
        self.runs: dict[str, LaneRun] = {}
        self._slots = threading.Semaphore(parallel)  # the lane's 2 cores: Glue would run more at once
        self._saved: dict[str, Any] = {}

    def install(self) -> GlueOnSpark:
        from moto.glue import models

        lane = self
        original_start = models.FakeJob.start_job_run
        original_status = models.FakeJobRun.status
        original_as_dict = models.FakeJobRun.as_dict

        def start_job_run(job: Any, *args: Any, **kwargs: Any) -> str:
            run_id = original_start(job, *args, **kwargs)
            run = next(r for r in job.job_runs if r.job_run_id == run_id)
            lane.start(job, run)
            return run_id

        def status(run: Any) -> str | None:
            mine = lane.runs.get(run.job_run_id)
            return mine.state if mine else original_status.fget(run)

        def as_dict(run: Any) -> dict[str, Any]:
            data = original_as_dict(run)
            mine = lane.runs.get(run.job_run_id)
            if mine is not None:
                data["ExecutionTime"] = int(mine.seconds)
                if mine.error:
                    data["ErrorMessage"] = mine.error
            return data

        self._saved = {"start_job_run": original_start, "status": original_status, "as_dict": original_as_dict}
        models.FakeJob.start_job_run = start_job_run
        models.FakeJobRun.status = property(status)
        models.FakeJobRun.as_dict = as_dict
        self._saved["integration"] = fix_sync_integrations()
        return self

    def uninstall(self) -> None:
        from moto.glue import models

        if self._saved:
            models.FakeJob.start_job_run = self._saved["start_job_run"]
            models.FakeJobRun.status = self._saved["status"]
            models.FakeJobRun.as_dict = self._saved["as_dict"]
            callback_module().StateTaskServiceCallback._eval_integration_pattern = self._saved["integration"]

    def start(self, job: Any, run: Any) -> None:
        lane_run = LaneRun(job.name, run.job_run_id, dict(run.arguments or {}))
        self.runs[run.job_run_id] = lane_run
        definition = {"ScriptLocation": job.command["ScriptLocation"], "DefaultArguments": job.default_arguments}
        threading.Thread(target=self._run, args=(lane_run, definition), daemon=True).start()

    def _run(self, run: LaneRun, definition: dict[str, Any]) -> None:
        with self._slots:
            run.state, run.started = "RUNNING", time.monotonic()
            run.log = self.logs / f"{run.job}-{run.run_id[-8:]}.log"
            try:
                command = self.command(run, definition)
                with run.log.open("w") as out:
                    done = subprocess.run(
                        command,
                        env={**self.env, "JOB_RUN_ID": run.run_id},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=self.logs,  # not the checkout: the job imports lakehouse from its wheel only
                    )
                ok = done.returncode == 0
                if not ok:
                    tail = run.log.read_text(errors="replace").strip().splitlines()[-12:]
                    run.error = f"exit code {done.returncode}: " + " | ".join(tail)[-1500:]
            except Exception as exc:  # a lane failure is the run's failure, visible to the state machine
                ok, run.error = False, f"the lane could not run the job: {exc}"
            run.seconds = time.monotonic() - run.started
            run.state = "SUCCEEDED" if ok else "FAILED"
        if self.on_end:
            self.on_end(run)


def callback_module() -> Any:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_callback

    return state_task_service_callback


def fix_sync_integrations() -> Any:
    """moto 5.2.5's interpreter ends every `.sync` task whose service has no callback pattern (Glue among them)
    with States.Runtime "'NoneType' object has no attribute 'interrupt_all'": its `finally` calls the callback
    endpoint it only made for `.waitForTaskToken`. The same method with that call guarded; returns the original."""
    import inspect
    import textwrap

    module = callback_module()
    cls = module.StateTaskServiceCallback
    original = cls._eval_integration_pattern
    source = textwrap.dedent(inspect.getsource(original))
    broken = "            callback_endpoint.interrupt_all()"
    assert broken in inspect.getsource(original), "moto changed: check whether the lane still needs this fix"
    fixed = source.replace(
        "    callback_endpoint.interrupt_all()",
        "    if callback_endpoint is not None:\n            callback_endpoint.interrupt_all()",
    )
    namespace: dict[str, Any] = {}
    exec(compile(fixed, module.__file__, "exec"), module.__dict__, namespace)
    cls._eval_integration_pattern = namespace["_eval_integration_pattern"]
    return original
