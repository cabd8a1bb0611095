"""Spark's scratch folder, the engine's own: shuffle, spill and cached blocks of PHI never sit in the system's /tmp.

Each process gets `<root>/run-<pid>-<random>` (mode 0700, under a root of mode 0700); Spark writes its
`blockmgr-*` and `spark-*` folders there, encrypted (`spark.io.encryption.enabled`). Spark removes them on a
clean exit; a killed process cannot, so every start removes the folders of processes that are gone.
On a cluster YARN owns the executors' local folders and cleans them with the container: this is for local runs.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakehouse.config import Config

_RUN = re.compile(r"run-(\d+)-\w+")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_dead_runs(root: str | os.PathLike[str]) -> list[Path]:
    """Remove the scratch folders under `root` of processes that no longer run; return them."""
    removed = []
    base = Path(root)
    if not base.is_dir():
        return removed
    for child in base.iterdir():
        match = _RUN.fullmatch(child.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def default_root(config: Config | None) -> str:
    """`spark.local_dir` of the configuration, else `spark-local` next to the lake (`$LAKEHOUSE_HOME` without one)."""
    if config is not None and config.spark.local_dir:
        return config.spark.local_dir
    if config is not None and "://" not in config.paths.lake:
        return str(Path(config.paths.lake).parent / "spark-local")
    return str(Path(os.environ.get("LAKEHOUSE_HOME", "data")) / "spark-local")


def prepare_local_dir(root: str | os.PathLike[str]) -> str:
    """This process's scratch folder under `root` (created 0700), after removing those of dead processes."""
    base = Path(root)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    base.chmod(0o700)
    remove_dead_runs(base)
    own = tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=base)  # mkdtemp creates it 0700
    atexit.register(shutil.rmtree, own, True)
    return own
