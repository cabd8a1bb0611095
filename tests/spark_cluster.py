"""A real multi-process Spark standalone cluster on 127.0.0.1: one master and two workers, small memory.

Started from pyspark's own launcher (`spark-class org.apache.spark.deploy.master.Master` / `...worker.Worker`),
as `sbin/start-master.sh` would; pip's pyspark ships no sbin start scripts. `submit` runs a job script on it
with `spark-submit` in client mode, the way an EMR step or a Glue job run does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def spark_home() -> str:
    """pyspark's own folder: its jars and launch scripts (spark-class would look for it with another Python)."""
    import pyspark

    return str(Path(pyspark.__file__).parent)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SparkCluster:
    """A running master and its workers; `stop()` ends the processes this object started, by pid."""

    root: Path
    workers: int = 2
    worker_memory: str = "1500m"
    cores: int = 2  # per worker
    env: dict[str, str] = field(default_factory=dict)
    master_url: str = ""
    ui_url: str = ""
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self, timeout: float = 300) -> SparkCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        port, ui = free_port(), free_port()
        self.master_url, self.ui_url = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}"
        env = {**os.environ, "SPARK_HOME": spark_home(), **self.env}
        env |= {"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_DAEMON_MEMORY": "512m"}
        master = ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port)]
        self._launch("master", [*master, "--webui-port", str(ui)], env)
        self._wait(lambda state: state.get("status") == "ALIVE", timeout, "the master to be ALIVE")
        for i in range(self.workers):
            work = self.root / f"worker-{i}"
            args = [
                "org.apache.spark.deploy.worker.Worker",
                self.master_url,
                "--host",
                "127.0.0.1",
                "--cores",
                str(self.cores),
            ]
            args += ["--memory", self.worker_memory, "--work-dir", str(work), "--webui-port", str(free_port())]
            self._launch(f"worker-{i}", args, env)
        self._wait(lambda state: state.get("aliveworkers", 0) >= self.workers, timeout, f"{self.workers} workers")
        return self

    def _launch(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.root / f"{name}.log").open("w")
        self.processes.append(
            subprocess.Popen([str(BIN / "spark-class"), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        )

    def state(self) -> dict:
        try:
            with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as response:
                return json.load(response)
        except OSError:
            return {}

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready(self.state()):
            dead = [p.args[1] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(
                    (self.root / f).read_text()[-1500:] for f in os.listdir(self.root) if f.endswith(".log")
                )
                raise RuntimeError(f"Spark standalone cluster: no {what} (dead: {dead}):\n{logs}")
            time.sleep(1)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
