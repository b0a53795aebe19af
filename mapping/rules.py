"""A small, safe expression language for the user's own segments (`[[segments.rules]]`).

    [[segments.rules]]
    name = "big-spenders-drifting"
    when = "spend_12m >= 500 and last_order < now - days(60) and 'shop' in order_systems"

An expression is parsed by Python's own parser and then walked against a whitelist: names of
fields, constants, comparisons (also chained), `and` / `or` / `not`, `in` / `not in` (a list of
constants, a system in a set of systems, a substring), arithmetic on numbers and dates, and a few
named functions. Everything else (attribute access, subscripts, calls of anything not on the
list, lambdas, comprehensions, keyword arguments) is refused with the column where it stands.

Compilation type-checks the whole expression once and yields a function over columns (numpy
arrays, one element per profile), so evaluating a rule over a million profiles is a handful of
vectorised operations. A comparison with a missing value (no last order yet) is false.

Dates are read on the merchant's calendar (`[segments] timezone`, mapping/calendar_days.py): a rule
sees every date (`now`, `first_order`, `last_order`, `date(...)`) as its local clock time, so
`year(first_order)` is the year on the merchant's calendar, `date("2026-01-01")` is local
midnight, and `now - days(7)` is the same clock time a week ago, across a change of summer time.
Without a zone the local clock is UTC's, as before. In the hour the clocks repeat (October in
Europe) two moments less than an hour apart compare by their clock times, which may be the other
way round from their order in time: a rule reads the calendar, not a stopwatch.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from mapping.calendar_days import AS_BEFORE, Calendar

DAY = 86_400
MAX_LENGTH = 2000


class Kind(StrEnum):
    NUMBER = "a number"
    DATE = "a date"
    DURATION = "a duration"
    TEXT = "text"
    BOOL = "true/false"
    SYSTEMS = "a set of systems"


# What a rule can name. Money is in base-currency units; dates compare with dates (`now`,
# `date("2026-01-01")`, `now - days(30)`); text is compared as written (use lower() to fold case).
FIELDS: dict[str, tuple[Kind, str]] = {
    "order_count": (Kind.NUMBER, "valid orders"),
    "revenue": (Kind.NUMBER, "lifetime revenue, base currency"),
    "spend_12m": (Kind.NUMBER, "revenue of the last 365 days"),
    "orders_12m": (Kind.NUMBER, "orders of the last 365 days"),
    "average_order_value": (Kind.NUMBER, "revenue / order_count"),
    "first_order": (Kind.DATE, "date of the first valid order"),
    "last_order": (Kind.DATE, "date of the latest valid order"),
    "days_since_last_order": (Kind.NUMBER, "whole days since the latest order"),
    "tenure_days": (Kind.NUMBER, "whole days since the first order"),
    "online_orders": (Kind.NUMBER, "orders placed in web shops"),
    "offline_orders": (Kind.NUMBER, "orders or invoices from CRM/ERP systems"),
    "r": (Kind.NUMBER, "RFM recency score 1-5 (0: no orders)"),
    "f": (Kind.NUMBER, "RFM frequency score 1-5"),
    "m": (Kind.NUMBER, "RFM monetary score 1-5"),
    "rfm": (Kind.TEXT, "the three scores as text, e.g. '545' ('' without orders)"),
    "order_systems": (Kind.SYSTEMS, "systems the profile has orders in"),
    "systems": (Kind.SYSTEMS, "systems that hold a record of the profile"),
    "last_order_system": (Kind.TEXT, "system of the latest order"),
    "quadrant": (Kind.TEXT, "friends, supporters, acquaintances or passers-by"),
    "lifecycle": (Kind.TEXT, "prospect, new, active, at-risk or lapsed"),
    "tier": (Kind.TEXT, "loyalty tier name ('' without one)"),
    "email": (Kind.TEXT, "normalised email"),
    "email_domain": (Kind.TEXT, "the part after @"),
    "phone": (Kind.TEXT, "phone number"),
    "first_name": (Kind.TEXT, "given name"),
    "last_name": (Kind.TEXT, "family name with its tussenvoegsel ('de Vries')"),
    "postcode": (Kind.TEXT, "postcode as normalised ('1234 AB')"),
    "city": (Kind.TEXT, "city"),
    "country": (Kind.TEXT, "ISO 3166 alpha-2 code ('NL', 'BE')"),
    "company": (Kind.TEXT, "company name"),
    "region": (Kind.TEXT, "ISO 3166-2 region from the postcode, lower case ('nl-nh'; '' unknown)"),
    "age": (Kind.NUMBER, "whole years, from a birth date"),
    "age_band": (Kind.TEXT, "'25-34', '65+' ([segments.bases] age_bands; '' unknown)"),
    "b2b": (Kind.BOOL, "a company: marked so, a KvK or VAT number, or a company name and domain"),
    "interests": (Kind.TEXT, "categories bought, most bought first, comma-separated slugs"),
    "top_interest": (Kind.TEXT, "the category bought most often ('' none)"),
    "discount_share": (Kind.NUMBER, "share of orders (0-1) with a discount code"),
    "email_consent": (Kind.BOOL, "opted in to email marketing (no system says otherwise)"),
    "now": (Kind.DATE, "the time of the run ($CRMSYNC_NOW)"),
}
# The fields read from mapping/bases.py: a rule naming one makes the compute read them.
BASE_FIELDS = frozenset(
    {"region", "age", "age_band", "b2b", "interests", "top_interest", "discount_share", "email_consent"}
)

FUNCTIONS = ("days", "date", "year", "lower", "startswith", "endswith", "contains", "missing")

Array = npt.NDArray[Any]
Value = Any  # an array (one element per profile) or a scalar constant


class RuleInput:
    """The columns a rule reads, built on first use. `systems` names the bits of set columns.
    Date columns hold local clock times on `calendar` (`Calendar.wall`), as `now` here does."""

    def __init__(
        self,
        size: int,
        now: datetime,
        systems: Sequence[str],
        builders: Mapping[str, Callable[[], Array]],
        calendar: Calendar = AS_BEFORE,
    ) -> None:
        self.size = size
        self.calendar = calendar
        self.now = float(calendar.wall([now.timestamp()])[0])
        self.systems = tuple(systems)
        self._builders = builders
        self._cache: dict[str, Array] = {}

    def column(self, name: str) -> Array:
        if name not in self._cache:
            self._cache[name] = self._builders[name]()
        return self._cache[name]


Evaluator = Callable[[RuleInput], Value]


class RuleError(ValueError):
    """What is wrong with an expression, and at which column (1-based)."""

    def __init__(self, column: int, problem: str) -> None:
        super().__init__(f"column {column}: {problem}")
        self.column = column
        self.problem = problem


@dataclass(frozen=True)
class CompiledRule:
    text: str
    names: frozenset[str]
    _evaluate: Evaluator

    def evaluate(self, inputs: RuleInput) -> npt.NDArray[np.bool_]:
        result = self._evaluate(inputs)
        return np.broadcast_to(np.asarray(result, dtype=np.bool_), (inputs.size,)).copy()


@dataclass(frozen=True)
class _Node:
    kind: Kind
    run: Evaluator
    const: Any = None  # the Python value of a constant, else None
    is_const: bool = False


@lru_cache(maxsize=256)
def compile_rule(text: str) -> CompiledRule:
    """Parse, check and compile once; raises RuleError naming the column and the problem."""
    if len(text) > MAX_LENGTH:
        raise RuleError(1, f"an expression is at most {MAX_LENGTH} characters")
    if not text.strip():
        raise RuleError(1, "the expression is empty")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        detail = "" if exc.msg == "invalid syntax" else f" ({exc.msg})"
        column = exc.offset if exc.offset else len(text.strip()) + 1  # 0: it ended too early
        raise RuleError(column + len(text) - len(text.lstrip()), f"invalid syntax{detail}") from None
    names: set[str] = set()
    lead = len(text) - len(text.lstrip())
    node = _Compiler(names, lead).visit(tree.body)
    if node.kind is not Kind.BOOL:
        raise RuleError(lead + 1, f"a rule must be true or false, this is {node.kind.value}")
    return CompiledRule(text, frozenset(names), node.run)


def _const(kind: Kind, value: Any) -> _Node:
    return _Node(kind, lambda _inputs: value, value, True)


_LIST = _Node(Kind.TEXT, lambda _inputs: None)  # placeholder for a list literal after `in`


class _Compiler:
    def __init__(self, names: set[str], lead: int) -> None:
        self.names = names
        self.lead = lead

    def fail(self, node: ast.AST, problem: str) -> RuleError:
        return RuleError(getattr(node, "col_offset", 0) + 1 + self.lead, problem)

    def visit(self, node: ast.AST) -> _Node:
        handler = getattr(self, f"visit_{type(node).__name__}", None)
        if handler is None:
            raise self.fail(node, _refusal(node))
        result: _Node = handler(node)
        return result

    # ----- leaves ----------------------------------------------------------------------------
    def visit_Constant(self, node: ast.Constant) -> _Node:
        value = node.value
        if isinstance(value, bool):
            return _const(Kind.BOOL, value)
        if isinstance(value, int | float):
            return _const(Kind.NUMBER, float(value))
        if isinstance(value, str):
            return _const(Kind.TEXT, value)
        raise self.fail(node, f"{value!r} is not a value a rule can use (numbers, 'text', True, False)")

    def visit_Name(self, node: ast.Name) -> _Node:
        name = node.id
        if name in ("true", "false"):
            return _const(Kind.BOOL, name == "true")
        if name not in FIELDS:
            if name in FUNCTIONS:
                raise self.fail(node, f"{name} is a function: write {name}(...)")
            hint = difflib.get_close_matches(name, list(FIELDS), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise self.fail(node, f"unknown field {name!r}{suggestion}")
        self.names.add(name)
        kind = FIELDS[name][0]
        if name == "now":
            return _Node(kind, lambda inputs: inputs.now)
        return _Node(kind, lambda inputs: inputs.column(name))

    # ----- boolean logic -----------------------------------------------------------------------
    def visit_BoolOp(self, node: ast.BoolOp) -> _Node:
        parts = [self.visit(v) for v in node.values]
        word = "and" if isinstance(node.op, ast.And) else "or"
        for value, part in zip(node.values, parts, strict=True):
            if part.kind is not Kind.BOOL:
                raise self.fail(value, f"'{word}' needs true/false on each side, this is {part.kind.value}")
        runs = [p.run for p in parts]
        if isinstance(node.op, ast.And):
            return _Node(Kind.BOOL, lambda inputs: _fold(np.logical_and, runs, inputs))
        return _Node(Kind.BOOL, lambda inputs: _fold(np.logical_or, runs, inputs))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> _Node:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            if operand.kind is not Kind.BOOL:
                raise self.fail(node, f"'not' needs true/false, this is {operand.kind.value}")
            run = operand.run
            return _Node(Kind.BOOL, lambda inputs: np.logical_not(run(inputs)))
        if isinstance(node.op, ast.USub | ast.UAdd) and operand.kind in (Kind.NUMBER, Kind.DURATION):
            sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
            if operand.is_const:
                return _const(operand.kind, sign * operand.const)
            run = operand.run
            return _Node(operand.kind, lambda inputs: sign * run(inputs))
        raise self.fail(node, f"this operator does not apply to {operand.kind.value}")

    # ----- arithmetic --------------------------------------------------------------------------
    def visit_BinOp(self, node: ast.BinOp) -> _Node:
        left, right = self.visit(node.left), self.visit(node.right)
        op = node.op
        result = _ARITHMETIC.get((type(op), left.kind, right.kind))
        if result is None:
            symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}.get(type(op), type(op).__name__)
            raise self.fail(node, f"cannot compute {left.kind.value} {symbol} {right.kind.value}")
        fn: Callable[[Any, Any], Any] = {
            ast.Add: np.add,
            ast.Sub: np.subtract,
            ast.Mult: np.multiply,
            ast.Div: np.true_divide,
        }[type(op)]
        if left.is_const and right.is_const:
            with np.errstate(divide="ignore", invalid="ignore"):
                return _const(result, float(fn(left.const, right.const)))
        lrun, rrun = left.run, right.run

        def run(inputs: RuleInput) -> Value:
            with np.errstate(divide="ignore", invalid="ignore"):
                return fn(lrun(inputs), rrun(inputs))

        return _Node(result, run)

    # ----- comparisons -------------------------------------------------------------------------
    def visit_Compare(self, node: ast.Compare) -> _Node:
        operands = [node.left, *node.comparators]
        for op in node.ops:
            if isinstance(op, ast.Is | ast.IsNot):
                raise self.fail(node, "'is' is not supported: use ==, or missing(x) for an absent value")
        # A list literal is only read as the right side of `in`; _membership checks its items.
        listed = {i + 1 for i, op in enumerate(node.ops) if isinstance(op, ast.In | ast.NotIn)}
        compiled = [
            _LIST if i in listed and isinstance(o, ast.List | ast.Tuple | ast.Set) else self.visit(o)
            for i, o in enumerate(operands)
        ]
        steps: list[Evaluator] = []
        for i, op in enumerate(node.ops):
            steps.append(self._compare(op, operands[i], compiled[i], operands[i + 1], compiled[i + 1]))
        return _Node(Kind.BOOL, lambda inputs: _fold(np.logical_and, steps, inputs))

    def _compare(self, op: ast.cmpop, left_ast: ast.AST, left: _Node, right_ast: ast.AST, right: _Node) -> Evaluator:
        if isinstance(op, ast.In | ast.NotIn):
            test = self._membership(left_ast, left, right_ast, right)
            if isinstance(op, ast.NotIn):
                if left.kind is Kind.NUMBER:
                    # A missing number is in no list, and not out of one either: false.
                    lrun = left.run
                    return lambda inputs: np.logical_and(np.logical_not(test(inputs)), _known(lrun(inputs)))
                return lambda inputs: np.logical_not(test(inputs))
            return test
        if Kind.SYSTEMS in (left.kind, right.kind):
            raise self.fail(left_ast, "a set of systems is tested with 'in': 'shop' in systems")
        if left.kind is not right.kind:
            raise self.fail(left_ast, f"cannot compare {left.kind.value} with {right.kind.value}")
        if left.kind is Kind.BOOL and not isinstance(op, ast.Eq | ast.NotEq):
            raise self.fail(left_ast, "true/false values compare only with == and !=")
        fn: Callable[[Any, Any], Any] = {
            ast.Eq: np.equal,
            ast.NotEq: np.not_equal,
            ast.Lt: np.less,
            ast.LtE: np.less_equal,
            ast.Gt: np.greater,
            ast.GtE: np.greater_equal,
        }[type(op)]
        lrun, rrun = left.run, right.run
        if left.kind is Kind.TEXT:
            return lambda inputs: fn(_text(lrun(inputs)), _text(rrun(inputs)))
        if fn is np.not_equal and left.kind is not Kind.BOOL:
            # NaN != x is true in IEEE arithmetic; a comparison with a missing value is false here.
            return lambda inputs: _known_not_equal(lrun(inputs), rrun(inputs))
        return lambda inputs: fn(lrun(inputs), rrun(inputs))

    def _membership(self, left_ast: ast.AST, left: _Node, right_ast: ast.AST, right: _Node) -> Evaluator:
        if isinstance(right_ast, ast.List | ast.Tuple | ast.Set):
            items = [self.visit(e) for e in right_ast.elts]
            if not items:
                raise self.fail(right_ast, "an empty list matches nothing")
            for element, item in zip(right_ast.elts, items, strict=True):
                if not item.is_const:
                    raise self.fail(element, "a list after 'in' holds constants only")
                if item.kind is not left.kind:
                    raise self.fail(element, f"cannot look for {left.kind.value} among {item.kind.value}")
            if left.kind not in (Kind.TEXT, Kind.NUMBER):
                raise self.fail(left_ast, f"'in' with a list needs text or a number, this is {left.kind.value}")
            values = [item.const for item in items]
            lrun = left.run
            if left.kind is Kind.TEXT:
                return lambda inputs: _fold_values(np.equal, _text(lrun(inputs)), values)
            return lambda inputs: np.isin(lrun(inputs), values)
        if right.kind is Kind.SYSTEMS:
            if not (left.kind is Kind.TEXT and left.is_const):
                raise self.fail(left_ast, "only a system name in quotes can be looked up in a set of systems")
            name, rrun = left.const, right.run
            return lambda inputs: _has_system(inputs, rrun(inputs), name)
        if right.kind is Kind.TEXT and left.kind is Kind.TEXT:
            lrun, rrun = left.run, right.run
            return lambda inputs: np.strings.find(_text(rrun(inputs)), _text(lrun(inputs))) >= 0
        raise self.fail(right_ast, f"'in' needs a list, a set of systems or text on its right, not {right.kind.value}")

    # ----- functions ---------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> _Node:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "only the functions " + ", ".join(FUNCTIONS) + " can be called")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.fail(node, f"{name!r} is not a function here; the functions are " + ", ".join(FUNCTIONS))
        if node.keywords:
            raise self.fail(node, f"{name}() takes no keyword arguments")
        args = [self.visit(a) for a in node.args]
        kinds = [a.kind for a in args]
        arity = {"days": 1, "date": 1, "year": 1, "lower": 1, "missing": 1}.get(name, 2)
        if len(args) != arity:
            raise self.fail(node, f"{name}() takes {arity} argument{'s' if arity > 1 else ''}, got {len(args)}")
        if name == "days":
            if kinds != [Kind.NUMBER]:
                raise self.fail(node, "days() takes a number: days(30)")
            if args[0].is_const:
                return _const(Kind.DURATION, args[0].const * DAY)
            inner = args[0].run
            return _Node(Kind.DURATION, lambda inputs: inner(inputs) * DAY)
        if name == "date":
            if not (kinds == [Kind.TEXT] and args[0].is_const):
                raise self.fail(node, 'date() takes a date in quotes: date("2026-01-31")')
            try:
                parsed = datetime.fromisoformat(args[0].const)
            except ValueError:
                raise self.fail(node.args[0], f"{args[0].const!r} is not a date like 2026-01-31") from None
            if parsed.tzinfo is None:
                # A date as the merchant writes it, on their own calendar: as every date a rule reads.
                return _const(Kind.DATE, parsed.replace(tzinfo=UTC).timestamp())
            # A moment with its offset written out is that moment, read on the merchant's calendar
            # when the rule runs (a compiled rule is shared by every zone).
            moment = parsed.timestamp()
            return _Node(Kind.DATE, lambda inputs: float(inputs.calendar.wall([moment])[0]))
        if name == "year":
            if kinds != [Kind.DATE]:
                raise self.fail(node, "year() takes a date")
            inner = args[0].run
            return _Node(Kind.NUMBER, lambda inputs: _year(inner(inputs)))
        if name == "lower":
            if kinds != [Kind.TEXT]:
                raise self.fail(node, "lower() takes text")
            inner = args[0].run
            return _Node(Kind.TEXT, lambda inputs: np.strings.lower(_text(inner(inputs))))
        if name == "missing":
            if kinds[0] in (Kind.BOOL, Kind.SYSTEMS):
                raise self.fail(node, f"missing() takes a number, a date or text, not {kinds[0].value}")
            inner, kind = args[0].run, kinds[0]
            if kind is Kind.TEXT:
                return _Node(Kind.BOOL, lambda inputs: np.equal(_text(inner(inputs)), ""))
            return _Node(Kind.BOOL, lambda inputs: np.isnan(inner(inputs)))
        # startswith / endswith / contains (text, text)
        if kinds != [Kind.TEXT, Kind.TEXT]:
            raise self.fail(node, f"{name}() takes two texts: {name}(email, 'x')")
        left, right = args[0].run, args[1].run
        if name == "contains":
            return _Node(Kind.BOOL, lambda inputs: np.strings.find(_text(left(inputs)), _text(right(inputs))) >= 0)
        test: Any = np.strings.startswith if name == "startswith" else np.strings.endswith
        return _Node(Kind.BOOL, lambda inputs: test(_text(left(inputs)), _text(right(inputs))))


# (operator, left, right) -> result: the arithmetic a rule may do.
_ARITHMETIC: dict[tuple[type[ast.operator], Kind, Kind], Kind] = {
    **{(op, Kind.NUMBER, Kind.NUMBER): Kind.NUMBER for op in (ast.Add, ast.Sub, ast.Mult, ast.Div)},
    (ast.Add, Kind.DATE, Kind.DURATION): Kind.DATE,
    (ast.Sub, Kind.DATE, Kind.DURATION): Kind.DATE,
    (ast.Add, Kind.DURATION, Kind.DATE): Kind.DATE,
    (ast.Sub, Kind.DATE, Kind.DATE): Kind.DURATION,
    (ast.Add, Kind.DURATION, Kind.DURATION): Kind.DURATION,
    (ast.Sub, Kind.DURATION, Kind.DURATION): Kind.DURATION,
    (ast.Mult, Kind.DURATION, Kind.NUMBER): Kind.DURATION,
    (ast.Mult, Kind.NUMBER, Kind.DURATION): Kind.DURATION,
}


def _refusal(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return "attribute access (x.y) is not allowed"
    if isinstance(node, ast.Subscript):
        return "subscripts (x[...]) are not allowed"
    if isinstance(node, ast.Lambda):
        return "lambda is not allowed"
    if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
        return "comprehensions are not allowed"
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return "a list can only follow 'in'"
    if isinstance(node, ast.IfExp):
        return "'x if c else y' is not allowed"
    if isinstance(node, ast.JoinedStr):
        return "f-strings are not allowed"
    if isinstance(node, ast.NamedExpr):
        return "':=' is not allowed"
    return f"{type(node).__name__} is not allowed in a rule"


def _fold(fn: Callable[[Any, Any], Any], runs: Sequence[Evaluator], inputs: RuleInput) -> Value:
    result = runs[0](inputs)
    for run in runs[1:]:
        result = fn(result, run(inputs))
    return result


def _fold_values(fn: Callable[[Any, Any], Any], column: Value, values: Sequence[Any]) -> Value:
    result = fn(column, values[0])
    for value in values[1:]:
        result = np.logical_or(result, fn(column, value))
    return result


def _known(value: Value) -> Value:
    return np.logical_not(np.isnan(value))


def _known_not_equal(left: Value, right: Value) -> Value:
    """`left != right` where both are known; false where either is missing (NaN)."""
    return np.logical_and(np.not_equal(left, right), np.logical_and(_known(left), _known(right)))


def _text(value: Value) -> Value:
    """Text columns are StringDType arrays; constants are wrapped so numpy's string functions
    accept them."""
    if isinstance(value, str):
        return np.array(value, dtype=np.dtypes.StringDType())
    return value


def _has_system(inputs: RuleInput, bits: Value, name: str) -> Value:
    if name not in inputs.systems:
        return np.zeros(inputs.size, dtype=np.bool_)
    return (np.right_shift(bits, inputs.systems.index(name)) & 1).astype(np.bool_)


def _year(stamps: Value) -> Value:
    """The year of each date: dates are local clock times already (RuleInput), so UTC's reading
    of them is the merchant's."""
    values = np.asarray(stamps, dtype=np.float64)
    known = ~np.isnan(values)
    seconds = np.where(known, values, 0).astype("datetime64[s]")
    years = seconds.astype("datetime64[Y]").astype(np.int64) + 1970
    return np.where(known, years.astype(np.float64), np.nan)
