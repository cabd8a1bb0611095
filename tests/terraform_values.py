"""The names and values deploy/terraform gives things, evaluated from its HCL without a terraform binary.

What the deploy needs from `terraform output` (config_values, artifacts) is built from locals, so tests and
the end-to-end lane see the very names a real apply would. The expressions are evaluated by `hcl_eval`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2

from tests.hcl_eval import evaluate, scope_of

TERRAFORM = Path(__file__).resolve().parents[1] / "deploy" / "terraform"
OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def parse_dir(folder: Path = TERRAFORM) -> dict[str, dict]:
    """Every `*.tf` file of `folder` as python-hcl2 parses it, by file name."""
    parsed = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open() as f:
            parsed[path.name] = hcl2.load(f, serialization_options=OPTIONS)
    return parsed


class Terraform:
    """Variables (defaults, overridden by `variables`) and locals of deploy/terraform."""

    def __init__(self, variables: dict[str, Any] | None = None, folder: Path = TERRAFORM) -> None:
        self.scope = scope_of(parse_dir(folder), **(variables or {}))
        self.vars: dict[str, Any] = self.scope.variables
        self.locals: dict[str, Any] = self.scope.locals

    def local(self, name: str) -> Any:
        return self.scope.local(name)

    def evaluate(self, value: Any) -> Any:
        return evaluate(value, self.scope)

    def outputs(self) -> dict[str, Any]:
        """What deploy/artifacts.py reads from `terraform output -json`."""
        return {"config_values": self.local("config_values"), "artifacts": self.local("artifacts")}
