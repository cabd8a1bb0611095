"""Run one benchmark's child on several checkouts of the engine, alternately, in one run ("before" beside "after")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def run_child(script: Path, tree: Path, args: list[str]) -> dict:
    """`python script --child *args` with `tree` first on the path and as the working folder; its last line as JSON."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(script), "--child", *args]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"profile of {tree} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def alternate(trees: list[Path], rounds: int, profile: Callable[[Path], dict]) -> dict[str, list[dict]]:
    """`profile(tree)` for every tree, A B A B ..., `rounds` times; the profiles per tree."""
    profiles: dict[str, list[dict]] = {str(t): [] for t in trees}
    for round_ in range(rounds):
        for tree in trees:
            print(f"round {round_ + 1}: {tree} (load {os.getloadavg()[0]:.1f})", flush=True)
            profiles[str(tree)].append(profile(tree))
    return profiles
