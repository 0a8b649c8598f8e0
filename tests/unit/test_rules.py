from __future__ import annotations

import pytest

from firehose.rules import RuleError, evaluate, evaluate_all, resolve

EVENT = {
    "type": "source",
    "outcome": "failure",
    "ms": 12,
    "vars": {"lead": {"state": "TX", "email": "", "tags": ["a", "b"], "income": "55000", "is_test": "yes"}},
}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"lhv": "type", "op": "is equal to", "rhv": "Source"}, True),
        ({"lhv": "lead.state", "op": "is not equal to", "rhv": "tx"}, False),
        ({"lhv": "ms", "op": "is less than", "rhv": 13}, True),
        ({"lhv": "lead.income", "op": "is greater than or equal to", "rhv": "55000"}, True),
        ({"lhv": "lead.state", "op": "is included in", "rhv": ["CO", "TX"]}, True),
        ({"lhv": "lead.state", "op": "is not included in", "rhv": ["CO"]}, True),
        ({"lhv": "lead.tags", "op": "includes", "rhv": "B"}, True),
        ({"lhv": "lead.tags", "op": "does not include", "rhv": "c"}, True),
        ({"lhv": "lead.income", "op": "is between", "rhv": "50000-60000"}, True),
        ({"lhv": "lead.income", "op": "is not between", "rhv": "1-10"}, True),
        ({"lhv": "lead.state", "op": "matches pattern", "rhv": "^T"}, True),
        ({"lhv": "lead.state", "op": "does not match pattern", "rhv": "^T"}, False),
        ({"lhv": "lead.email", "op": "is blank"}, True),
        ({"lhv": "lead.missing", "op": "is not blank"}, False),
        ({"lhv": "lead.is_test", "op": "is true"}, True),
        ({"lhv": "lead.is_test", "op": "is not false"}, True),
        ({"lhv": "lead.state", "op": "is false"}, False),
        ({"lhv": "lead.state", "op": "is not true"}, True),
        (
            {
                "op": "or",
                "rules": [
                    {"lhv": "type", "op": "is equal to", "rhv": "filter"},
                    {"lhv": "outcome", "op": "is equal to", "rhv": "failure"},
                ],
            },
            True,
        ),
        (
            {
                "lhv": "type",
                "op": "is equal to",
                "rhv": "source",
                "rule_set": {"op": "and", "rules": [{"lhv": "ms", "op": "is greater than", "rhv": 100}]},
            },
            False,
        ),
    ],
)
def test_operators(rule: dict, expected: bool) -> None:
    assert evaluate(rule, EVENT) is expected


def test_paths_resolve_on_the_event_then_on_vars() -> None:
    assert resolve("type", EVENT) == "source"
    assert resolve("vars.lead.state", EVENT) == "TX"
    assert resolve("lead.state", EVENT) == "TX"
    assert resolve("lead.nothing.here", EVENT) is None


@pytest.mark.parametrize(
    "rule",
    [
        {"lhv": "type", "op": "sounds like", "rhv": "x"},
        {"lhv": "type", "op": "is equal to"},
        {"lhv": "type", "op": "is obscene"},
        "not a rule",
        {"op": "xor", "rules": []},
        {"lhv": "ms", "op": "is between", "rhv": "ten"},
        {"lhv": "type", "op": "matches pattern", "rhv": "("},
    ],
)
def test_bad_rules_raise(rule: object) -> None:
    with pytest.raises(RuleError):
        evaluate_all([rule], EVENT)
