"""The Hypothesis settings of the state machines over the real engine, where each step costs seconds of Spark."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings


def machine_settings(examples: int, steps: int, *, shrink: bool = False) -> settings:
    """`examples` runs of up to `steps` steps, no deadline; without `shrink` the same examples every run (the
    `make test` variants), with it random ones shrunk to the smallest failing sequence (`make test-search`)."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=not shrink,
        phases=phases,
        database=None if not shrink else settings.default.database,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
