"""The names deploy/terraform gives things, evaluated from its HCL without a terraform binary.

Enough of Terraform's expression language for the name locals: strings interpolating `var.x`, `local.x` and
`local.x.y`, and maps of those. What the deploy needs from `terraform output` (config_values, artifacts) is
built from such locals only, so tests and the end-to-end lane see the very names a real apply would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2

TERRAFORM = Path(__file__).resolve().parents[1] / "deploy" / "terraform"
OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
REFERENCE = re.compile(r"\$\{(var|local)\.([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}")


class Terraform:
    """Variables (defaults, overridden by `variables`) and locals of deploy/terraform."""

    def __init__(self, variables: dict[str, Any] | None = None, folder: Path = TERRAFORM) -> None:
        self.vars: dict[str, Any] = {}
        self.locals: dict[str, Any] = {}
        for path in sorted(folder.glob("*.tf")):
            with path.open() as f:
                parsed = hcl2.load(f, serialization_options=OPTIONS)
            for block in parsed.get("variable", []):
                for name, body in block.items():
                    self.vars[name] = body.get("default")
            for block in parsed.get("locals", []):
                self.locals.update(block)
        self.vars.update(variables or {})

    def local(self, name: str) -> Any:
        return self.evaluate(self.locals[name])

    def evaluate(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.evaluate(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.evaluate(v) for v in value]
        if not isinstance(value, str):
            return value
        whole = REFERENCE.fullmatch(value)
        if whole:
            return self._reference(*whole.groups())
        return REFERENCE.sub(lambda m: str(self._reference(*m.groups())), value)

    def _reference(self, kind: str, name: str, attribute: str | None) -> Any:
        value = self.vars[name] if kind == "var" else self.local(name)
        if value is None:
            raise KeyError(f"{kind}.{name} has no value: pass it in `variables`")
        return value[attribute] if attribute else value

    def outputs(self) -> dict[str, Any]:
        """What deploy/artifacts.py reads from `terraform output -json`."""
        return {"config_values": self.local("config_values"), "artifacts": self.local("artifacts")}
