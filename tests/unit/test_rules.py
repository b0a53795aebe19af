"""The rule language: what it accepts and computes, and what it refuses with which message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from mapping.model import Traits
from mapping.rules import RuleError, compile_rule
from mapping.segments import ProfileColumns, SegmentSettings, assess, columns_of
from sync.config import ConfigError, load_config

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STRINGS = np.dtypes.StringDType()


def people() -> tuple[list[Traits], ProfileColumns]:
    def t(count: int, revenue: str, last: int | None, first: int | None = None) -> Traits:
        at = NOW - timedelta(days=last) if last is not None else None
        start = NOW - timedelta(days=first if first is not None else (last or 0)) if last is not None else None
        return Traits(count, Decimal(revenue), Decimal(revenue), start, at)

    traits = [
        t(5, "1200", 10, 800),  # 0: regular, big spender, shop + crm
        t(1, "40", 200),  # 1: one order long ago
        t(0, "0", None),  # 2: prospect
        t(2, "300", 100, 2025),  # 3
    ]
    fields = ProfileColumns(
        email=np.array(["Anna@Gmail.com", "bram@bedrijf.nl", "", "chantal@ziggo.nl"], dtype=STRINGS),
        phone=np.array(["+31612345678", "", "", ""], dtype=STRINGS),
        first_name=np.array(["Anna", "bram", "", "Chantal"], dtype=STRINGS),
        last_name=np.array(["de Vries", "Jansen", "", "Bakker"], dtype=STRINGS),
        record_systems=np.array([0b11, 0b01, 0b10, 0b01], dtype=np.int64),
    )
    return traits, fields


def matches(when: str) -> list[int]:
    traits, fields = people()
    settings = SegmentSettings(rules=[{"name": "r", "when": when}])
    result = assess(columns_of(traits, NOW), settings, NOW, systems=["crm", "shop"], profiles=fields)
    column = result.matrix[:, result.names.index("r")]
    return [i for i, on in enumerate(column.tolist()) if on]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("revenue >= 300", [0, 3]),
        ("revenue > 300 or order_count == 1", [0, 1]),
        ("not (revenue > 300)", [1, 2, 3]),
        ("100 <= revenue <= 400", [3]),  # a chained comparison
        ("last_order >= now - days(30)", [0]),
        ("now - last_order > days(150)", [1]),  # a prospect has no last order: false, not true
        ("first_order < date('2021-01-01')", [3]),
        ("year(first_order) == 2024", [0]),
        ("missing(last_order)", [2]),
        ("lifecycle in ['at-risk', 'lapsed']", [1]),
        ("lifecycle not in ['at-risk', 'lapsed']", [0, 2, 3]),
        ("quadrant == 'friends' and tier == 'gold'", [0]),
        ("'shop' in systems", [0, 2]),
        ("'crm' in systems and not ('shop' in systems)", [1, 3]),
        ("'erp' in systems", []),  # a system that is not configured is in nobody's set
        ("endswith(lower(email), '@gmail.com')", [0]),
        ("email_domain == 'bedrijf.nl'", [1]),
        ("'ziggo' in email", [3]),
        ("contains(first_name, 'an')", [3]),
        ("startswith(first_name, 'A')", [0]),
        ("missing(phone) and order_count > 0", [1, 3]),
        ("order_count in [1, 2]", [1, 3]),
        ("average_order_value == 240", [0]),
        ("tenure_days >= 800", [0, 3]),
        # RFM among the 3 customers with orders: 1 + (5 x below) // 3 gives 1, 2 and 4
        ("f == 4 and r == 4 and m == 4", [0]),
        ("rfm == '444'", [0]),
        ("rfm == ''", [2]),
        ("revenue / order_count > 200 and revenue * 2 > 1000", [0]),
        ("True", [0, 1, 2, 3]),
    ],
)
def test_rules_compute_what_they_say(when: str, expected: list[int]) -> None:
    assert matches(when) == expected


@pytest.mark.parametrize(
    ("when", "column", "message"),
    [
        ("revnue > 10", 1, "unknown field 'revnue' (did you mean 'revenue'?)"),
        ("order_count > 1 and x.__class__", 21, "attribute access (x.y) is not allowed"),
        ("__import__('os').system('true')", 1, "only the functions days, date"),
        ("open('x') == 'y'", 1, "'open' is not a function here"),
        ("email[0] == 'a'", 1, "subscripts (x[...]) are not allowed"),
        ("(lambda: 1)() == 1", 1, "only the functions days, date"),
        ("(lambda: 1) == 1", 2, "lambda is not allowed"),
        ("[x for x in systems]", 1, "comprehensions are not allowed"),
        ("revenue if True else False", 1, "'x if c else y' is not allowed"),
        ("revenue", 1, "a rule must be true or false, this is a number"),
        ("revenue > 'a lot'", 1, "cannot compare a number with text"),
        ("revenue > 10 and", 17, "invalid syntax"),
        ("last_order > 30", 1, "cannot compare a date with a number"),
        ("last_order < now - 30", 14, "cannot compute a date - a number"),
        ("date('2026-02-30') < now", 6, "'2026-02-30' is not a date like 2026-01-31"),
        ("days('x') < now - last_order", 1, "days() takes a number"),
        ("lower(email, 'x') == 'y'", 1, "lower() takes 1 argument, got 2"),
        ("startswith(email, prefix='a')", 1, "startswith() takes no keyword arguments"),
        ("revenue > 10 or lifecycle", 17, "'or' needs true/false on each side, this is text"),
        ("tier in [1, 2]", 10, "cannot look for text among a number"),
        ("tier in [email]", 10, "a list after 'in' holds constants only"),
        ("email in systems", 1, "only a system name in quotes"),
        ("systems == 'shop'", 1, "a set of systems is tested with 'in'"),
        ("[1, 2] == order_count", 1, "a list can only follow 'in'"),
        ("revenue is None", 1, "'is' is not supported"),
        ("days == 1", 1, "days is a function: write days(...)"),
        ("", 1, "the expression is empty"),
    ],
)
def test_refusals_name_the_column_and_the_problem(when: str, column: int, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(when)
    assert caught.value.column == column, str(caught.value)
    assert message in caught.value.problem


def test_a_rule_compiles_once() -> None:
    compile_rule.cache_clear()
    first = compile_rule("order_count > 3")
    assert compile_rule("order_count > 3") is first
    assert compile_rule.cache_info().hits == 1


def test_a_bad_rule_is_a_config_error_naming_segment_column_and_problem(tmp_path: Path) -> None:
    config = tmp_path / "crmsync.toml"
    config.write_text(
        '[[segments.rules]]\nname = "ok-rule"\nwhen = "revenue > 100"\n\n'
        '[[segments.rules]]\nname = "big-spenders"\nwhen = "spend_12m >= 500 and revnue > 2"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.problems == [
        "config error: segments.rules[1].when: rule 'big-spenders', column 22: unknown field 'revnue' "
        "(did you mean 'revenue'?)"
    ]


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ([{"name": "friends", "when": "True"}], "segments.rules[0].name: 'friends' is a built-in segment name"),
        ([{"name": "tier-vip", "when": "True"}], "segments.rules[0].name: 'tier-vip' is a built-in segment name"),
        ([{"name": "Big Spenders", "when": "True"}], "segments.rules[0].name: 'Big Spenders' is not a segment name"),
        ([{"name": "a", "when": "True"}, {"name": "a", "when": "False"}], "segments.rules: two rules are named 'a'"),
    ],
)
def test_rule_names_are_validated(tmp_path: Path, rules: list[dict[str, str]], problem: str) -> None:
    config = tmp_path / "crmsync.toml"
    config.write_text("".join(f'[[segments.rules]]\nname = "{r["name"]}"\nwhen = "{r["when"]}"\n\n' for r in rules))
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert any(line.startswith(f"config error: {problem}") for line in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # Profile 2 has no orders: its last order, days since, average and first year are missing.
        ("last_order != date('2020-01-01')", [0, 1, 3]),
        ("days_since_last_order != 10", [1, 3]),
        ("average_order_value != 240", [1, 3]),
        ("year(first_order) != 2024", [1, 3]),
        ("tenure_days not in [800]", [1, 3]),
        # `not` negates a false comparison, as written; only the comparison itself is false.
        ("not (days_since_last_order == 10)", [1, 2, 3]),
    ],
)
def test_a_not_equal_comparison_with_a_missing_value_is_false(when: str, expected: list[int]) -> None:
    assert matches(when) == expected


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
@pytest.mark.parametrize("field", ["days_since_last_order", "average_order_value", "tenure_days"])
def test_every_comparison_of_a_missing_number_is_false_on_either_side(op: str, field: str) -> None:
    assert 2 not in matches(f"{field} {op} 10")
    assert 2 not in matches(f"10 {op} {field}")
