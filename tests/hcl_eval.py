"""Evaluate the Terraform expressions the tests need, as Terraform would, on python-hcl2's parse.

No terraform binary runs offline here, so the values Terraform computes from `locals` (catalog table names
and locations, the Athena saved queries) are computed by this small evaluator of HCL's expression
syntax: templates with `${...}`, references (`var.x`, `local.x`, `a.b[c]`), list and object literals,
`for` expressions (with `if`), `==` and `!=`, the conditional operator, and the functions the deploy uses.
Anything else is refused by name, so a new construct in the deploy fails loudly instead of being rendered wrong.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\$]|\\.|\$(?!\{)|\$\{(?:[^{}]|\{[^{}]*\})*\})*")
    | (?P<number>\d+(?:\.\d+)?)
    | (?P<arrow>=>)
    | (?P<op>\.\.\.|==|!=|&&|\|\||[?:,.\[\](){}=!<>])
    | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    )""",
    re.VERBOSE,
)

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "replace": lambda s, old, new: s.replace(old, new),
    "startswith": lambda s, prefix: s.startswith(prefix),
    "endswith": lambda s, suffix: s.endswith(suffix),
    "trimsuffix": lambda s, suffix: s.removesuffix(suffix),
    "join": lambda sep, items: sep.join(items),
    "keys": lambda obj: sorted(obj),  # Terraform returns an object's keys in lexicographic order
    "setproduct": lambda *lists: [list(p) for p in itertools.product(*lists)],
    "length": len,
    "concat": lambda *lists: [x for items in lists for x in items],
    "merge": lambda *maps: {k: v for m in maps for k, v in m.items()},
    "values": lambda obj: [obj[k] for k in sorted(obj)],  # in the lexicographic order of the keys
    "flatten": lambda items: [y for x in items for y in (FUNCTIONS["flatten"](x) if isinstance(x, list) else [x])],
    "contains": lambda items, value: value in items,
    "lookup": lambda obj, key, *default: obj[key] if key in obj or not default else default[0],
    "max": max,
    "lower": str.lower,
    "jsonencode": lambda value: json.dumps(value, separators=(",", ":")),
}


class HclError(ValueError):
    """An expression this evaluator does not know: extend it rather than guess."""


class Scope:
    """`var.*` from the variables' defaults (and overrides), `local.*` evaluated on demand, plus loop names."""

    def __init__(self, variables: dict[str, Any], locals_: dict[str, Any], names: dict[str, Any] | None = None):
        self.variables, self.locals, self.names = variables, locals_, names or {}
        self._done: dict[str, Any] = {}

    def child(self, **names: Any) -> Scope:
        scope = Scope(self.variables, self.locals, {**self.names, **names})
        scope._done = self._done
        return scope

    def local(self, name: str) -> Any:
        if name not in self._done:
            if name not in self.locals:
                raise HclError(f"local.{name} is not defined")
            self._done[name] = evaluate(self.locals[name], self)
        return self._done[name]

    def lookup(self, name: str) -> Any:
        if name == "var":
            return self.variables
        if name == "local":
            return _Locals(self)
        if name in self.names:
            return self.names[name]
        raise HclError(f"unknown name {name!r}")


class _Locals:
    def __init__(self, scope: Scope):
        self.scope = scope


def evaluate(value: Any, scope: Scope) -> Any:
    """The value of something python-hcl2 parsed: dicts and lists element-wise, strings as templates."""
    if isinstance(value, dict):
        return {k: evaluate(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate(v, scope) for v in value]
    if isinstance(value, str):
        return _template(value, scope, escaped=False)
    return value


def _template(text: str, scope: Scope, *, escaped: bool) -> Any:
    """A template: literal text with `${expr}`; exactly one interpolation keeps the value's own type."""
    parts: list[Any] = []
    i = 0
    literal = []
    while i < len(text):
        if text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if j >= len(text):
                    raise HclError(f"unclosed ${{ in {text!r}")
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if text[j] == '"':  # skip string literals inside, braces in them do not count
                    j = _string_end(text, j)
                j += 1
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_Parser(text[i + 2 : j - 1], scope).parse())
            i = j
        elif escaped and text[i] == "\\":
            literal.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            literal.append(text[i])
            i += 1
    if literal:
        parts.append("".join(literal))
    if len(parts) == 1 and not isinstance(parts[0], str):
        return parts[0]
    return "".join(str(p).lower() if isinstance(p, bool) else str(p) for p in parts)


def _string_end(text: str, start: int) -> int:
    j = start + 1
    while text[j] != '"':
        j += 2 if text[j] == "\\" else 1
    return j


class _Parser:
    def __init__(self, source: str, scope: Scope):
        self.tokens = self._tokenize(source)
        self.pos = 0
        self.scope = scope
        self.source = source

    @staticmethod
    def _tokenize(source: str) -> list[tuple[str, str]]:
        tokens, i = [], 0
        while source[i:].strip():
            match = _TOKEN.match(source, i)
            if not match:
                raise HclError(f"cannot read {source[i : i + 40]!r}")
            kind = match.lastgroup or ""
            tokens.append((kind, match.group(kind)))
            i = match.end()
        return tokens

    def peek(self, value: str | None = None) -> bool:
        return self.pos < len(self.tokens) and (value is None or self.tokens[self.pos][1] == value)

    def take(self, value: str | None = None) -> tuple[str, str]:
        if not self.peek(value):
            found = self.tokens[self.pos][1] if self.pos < len(self.tokens) else "the end"
            raise HclError(f"expected {value or 'a token'}, found {found!r} in {self.source!r}")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def parse(self) -> Any:
        value = self.expression()
        if self.pos != len(self.tokens):
            raise HclError(f"unexpected {self.tokens[self.pos][1]!r} in {self.source!r}")
        return value

    # Evaluation happens while parsing; a `for` body and the untaken branch of `?:` are parsed lazily
    # by re-parsing their token range in a child scope.
    def expression(self) -> Any:
        condition = self.comparison()
        if not self.peek("?"):
            return condition
        self.take("?")
        yes = self._skip_expression(until=":")
        self.take(":")
        no = self._skip_expression(until=None)
        return self._sub(yes if condition else no, self.scope)

    def _skip_expression(self, until: str | None, *, stop_at_if: bool = False) -> tuple[int, int]:
        start, depth = self.pos, 0
        while self.pos < len(self.tokens):
            kind, value = self.tokens[self.pos]
            if depth == 0 and (value == until or (value in ("}", "]", ")", ",") and until is None)):
                break
            if depth == 0 and stop_at_if and (kind, value) == ("name", "if"):  # a `for` expression's filter
                break
            depth += value in "([{" and self.tokens[self.pos][0] == "op"
            depth -= value in ")]}" and self.tokens[self.pos][0] == "op"
            self.pos += 1
        return start, self.pos

    def _sub(self, span: tuple[int, int], scope: Scope) -> Any:
        parser = _Parser.__new__(_Parser)
        parser.tokens, parser.pos, parser.scope, parser.source = self.tokens[: span[1]], span[0], scope, self.source
        value = parser.expression()
        if parser.pos != span[1]:
            raise HclError(f"unexpected {self.tokens[parser.pos][1]!r} in {self.source!r}")
        return value

    def comparison(self) -> Any:
        """`a == b` and `a != b` (HCL's other binary operators are not used by the deploy)."""
        value = self.postfix()
        while self.peek("==") or self.peek("!="):
            operator = self.take()[1]
            other = self.postfix()
            value = value == other if operator == "==" else value != other
        return value

    def postfix(self) -> Any:
        value = self.primary()
        while self.peek(".") or self.peek("["):
            if self.take()[1] == ".":
                name = self.take()[1]
                if isinstance(value, _Locals):
                    value = value.scope.local(name)
                else:
                    value = value[int(name) if name.isdigit() else name]
            else:
                index = self.expression()
                self.take("]")
                value = value[index]
        return value

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "string":
            return _template(value[1:-1], self.scope, escaped=True)
        if kind == "number":
            return float(value) if "." in value else int(value)
        if value == "(":
            inner = self.expression()
            self.take(")")
            return inner
        if value == "[":
            return self._for("]") if self.peek("for") else self._items("]")
        if value == "{":
            return self._for("}") if self.peek("for") else self._object()
        if kind == "name":
            if value in ("true", "false"):
                return value == "true"
            if self.peek("("):
                self.take("(")
                args = self._items(")", expand=True)
                if value not in FUNCTIONS:
                    raise HclError(f"function {value}() is not known to tests/hcl_eval.py: add it")
                return FUNCTIONS[value](*args)
            return self.scope.lookup(value)
        raise HclError(f"unexpected {value!r} in {self.source!r}")

    def _items(self, close: str, *, expand: bool = False) -> list[Any]:
        items = []
        while not self.peek(close):
            items.append(self.expression())
            if expand and self.peek("..."):  # f(list...): the list's elements are the arguments
                self.take("...")
                items.extend(items.pop())
            if not self.peek(close):
                self.take(",")
        self.take(close)
        return items

    def _object(self) -> dict[str, Any]:
        out = {}
        while not self.peek("}"):
            kind, key = self.take()
            key = _template(key[1:-1], self.scope, escaped=True) if kind == "string" else key
            self.take("=") if self.peek("=") else self.take(":")
            out[key] = self.expression()
            if self.peek(","):
                self.take(",")
        self.take("}")
        return out

    def _for(self, close: str) -> Any:
        self.take("for")
        names = [self.take()[1]]
        if self.peek(","):
            self.take(",")
            names.append(self.take()[1])
        self.take("in")
        collection = self.expression()
        self.take(":")
        key_span = self._skip_expression(until="=>") if close == "}" else self._skip_expression(None, stop_at_if=True)
        value_span = condition_span = None
        if close == "}":
            self.take("=>")
            value_span = self._skip_expression(until=None, stop_at_if=True)
        if self.peek("if"):
            self.take("if")
            condition_span = self._skip_expression(until=None)
        self.take(close)
        pairs = collection.items() if isinstance(collection, dict) else enumerate(collection)
        results = []
        for index, item in pairs:
            scope = self.scope.child(**({names[0]: item} if len(names) == 1 else {names[0]: index, names[1]: item}))
            if condition_span and not self._sub(condition_span, scope):
                continue
            key = self._sub(key_span, scope)
            results.append((key, self._sub(value_span, scope)) if value_span else key)
        return dict(results) if close == "}" else results


def scope_of(parsed: dict[str, dict], **variables: Any) -> Scope:
    """A scope over the parsed files: the variables' defaults overridden by `variables`, and every local."""
    declared = {n: b for d in parsed.values() for block in d.get("variable", []) for n, b in block.items()}
    values = {n: b["default"] for n, b in declared.items() if "default" in b} | variables
    missing = [n for n in declared if n not in values]
    locals_ = {k: v for d in parsed.values() for block in d.get("locals", []) for k, v in block.items()}
    return Scope(_Lazy(values, missing), locals_)


def render(parsed: dict[str, dict], name: str, **variables: Any) -> Any:
    """The value of `local.<name>` across the parsed files, with the variables' defaults overridden by `variables`."""
    return scope_of(parsed, **variables).local(name)


class _Lazy(dict):
    """Variables; reading one without a default or a value names it."""

    def __init__(self, values: dict[str, Any], missing: list[str]):
        super().__init__(values)
        self.missing = missing

    def __missing__(self, key: str) -> Any:
        raise HclError(f"var.{key} has no default: pass it as a variable")
