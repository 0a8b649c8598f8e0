"""LeadConduit rules, evaluated locally: by the sandbox for ``GET /events?rules=`` and its flow steps, and by
``replay`` for ``--rules`` over archived events (which no server filters).

Operators are those of the OpenAPI ``binary-rule`` and ``unary-rule`` schemas. Which document an ``lhv`` is
resolved against is NOT DOCUMENTED for ``/events`` (facts.md §2.1), so the sandbox is tolerant: a path whose
first part is a top-level event property (``type``, ``outcome``, ``vars.lead.email``) is read from the event,
any other path (``lead.state``, ``flow.id``) from the event's ``vars``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

BINARY_OPERATORS = (
    "is equal to",
    "is not equal to",
    "is less than",
    "is less than or equal to",
    "is greater than",
    "is greater than or equal to",
    "is included in",
    "is not included in",
    "includes",
    "does not include",
    "is between",
    "is not between",
    "matches pattern",
    "does not match pattern",
)
UNARY_OPERATORS = ("is blank", "is not blank", "is true", "is false", "is not true", "is not false")
UNSUPPORTED_OPERATORS = ("format is valid", "format is invalid", "is obscene", "is not obscene")
"""Documented, but they need LeadConduit's type system and word lists; the sandbox answers 400 for them."""

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


class RuleError(ValueError):
    """A rule that cannot be evaluated; the sandbox turns it into a 400 answer, replay into a usage error."""


def resolve(path: str, document: Mapping[str, Any], vars_key: str = "vars") -> Any:
    """The value at a dot path, looked up in the event first and then in its ``vars``; None if absent."""
    head = path.split(".", 1)[0]
    root: Any = document if head in document else document.get(vars_key, {})
    value: Any = root
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return None
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.strip().lower() == right.strip().lower()  # strings compare case-insensitively
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a == b
    return bool(left == right)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value in ([], {})


def _truthy(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*$")


def _range(rhv: Any) -> tuple[float, float]:
    """A range as LeadConduit writes it (``"1-10"``), or as ``[min, max]`` / ``{"min", "max"}``."""
    a = b = None
    if isinstance(rhv, str) and (match := _RANGE.match(rhv)):
        a, b = float(match.group(1)), float(match.group(2))
    elif isinstance(rhv, list) and len(rhv) == 2:
        a, b = _number(rhv[0]), _number(rhv[1])
    elif isinstance(rhv, Mapping):
        a, b = _number(rhv.get("min")), _number(rhv.get("max"))
    if a is None or b is None:
        raise RuleError(f"is between needs a range such as '1-10', got {rhv!r}")
    return a, b


def _binary(op: str, left: Any, right: Any) -> bool:
    if op == "is equal to":
        return _equal(left, right)
    if op == "is not equal to":
        return not _equal(left, right)
    if op in ("is less than", "is less than or equal to", "is greater than", "is greater than or equal to"):
        a, b = _number(left), _number(right)
        if a is None or b is None:
            return False
        return {
            "is less than": a < b,
            "is less than or equal to": a <= b,
            "is greater than": a > b,
            "is greater than or equal to": a >= b,
        }[op]
    if op in ("is included in", "is not included in"):
        choices = right if isinstance(right, list) else [right]
        found = any(_equal(left, choice) for choice in choices)
        return found if op == "is included in" else not found
    if op in ("includes", "does not include"):
        items = left if isinstance(left, list) else ([] if left is None else [left])
        found = any(_equal(item, right) for item in items)
        return found if op == "includes" else not found
    if op in ("is between", "is not between"):
        low, high = _range(right)
        value = _number(left)
        inside = value is not None and low <= value <= high
        return inside if op == "is between" else (value is not None and not inside)
    if op in ("matches pattern", "does not match pattern"):
        try:
            found = left is not None and re.search(str(right), str(left)) is not None
        except re.error as exc:
            raise RuleError(f"bad pattern {right!r}: {exc}") from exc
        return found if op == "matches pattern" else not found
    raise RuleError(f"unknown operator {op!r}")


def _unary(op: str, value: Any) -> bool:
    if op == "is blank":
        return _blank(value)
    if op == "is not blank":
        return not _blank(value)
    truth = _truthy(value)
    return {
        "is true": truth is True,
        "is false": truth is False,
        "is not true": truth is not True,
        "is not false": truth is not False,
    }[op]


def evaluate(rule: Any, document: Mapping[str, Any]) -> bool:
    """Evaluate a rule or a rule set (``{"op": "and"|"or", "rules": [...]}``) against an event."""
    if not isinstance(rule, Mapping):
        raise RuleError(f"a rule must be an object, got {rule!r}")
    op = rule.get("op")
    if "rules" in rule:
        if op not in ("and", "or"):
            raise RuleError(f"a rule set's op must be 'and' or 'or', got {op!r}")
        results = (evaluate(child, document) for child in rule["rules"])
        return all(results) if op == "and" else any(results)
    lhv = rule.get("lhv")
    if not isinstance(lhv, str) or not isinstance(op, str):
        raise RuleError(f"a rule needs a string lhv and op: {rule!r}")
    if op in UNSUPPORTED_OPERATORS:
        raise RuleError(f"operator {op!r} is not supported by the sandbox")
    value = resolve(lhv, document)
    if op in UNARY_OPERATORS:
        result = _unary(op, value)
    elif op in BINARY_OPERATORS:
        if "rhv" not in rule:
            raise RuleError(f"operator {op!r} needs an rhv")
        result = _binary(op, value, rule["rhv"])
    else:
        raise RuleError(f"unknown operator {op!r}")
    nested = rule.get("rule_set")
    return result and (evaluate(nested, document) if nested else True)


def evaluate_all(rules: list[Any], document: Mapping[str, Any]) -> bool:
    """A list of rules, as ``GET /events`` takes them: all must pass."""
    try:
        return all(evaluate(rule, document) for rule in rules)
    except RecursionError:  # rule sets nested past the stack: refused like any rule that cannot be read
        raise RuleError("the rules are nested too deeply") from None
