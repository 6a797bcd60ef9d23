"""Custom mask rules written by a user, e.g. ``q >= k and (q - k) % 4 == 0``, made safe.

A rule is a condition on the query index ``q``, the key index ``k`` and named integer
parameters (``W=16``). The text is parsed with Python's ``ast`` and checked against a
strict whitelist; nothing the user types is ever given to eval, exec or compile. The
checked tree is turned into a small tree of our own nodes, from which we build

- a function on torch tensors (``mask_mod``, broadcasting, vmap- and compile-friendly),
- a pure-Python evaluator on ints (the reference the tests compare against),
- a normal ``MaskRule`` (``custom_rule``) whose rows are found exactly, by evaluating
  the predicate densely in row chunks and run-length encoding every row.

The language
------------
- numbers: q, k, parameter names, whole-number literals with |x| <= 10,000,000;
- arithmetic: + - * // % and unary - / +, abs(x), min(x, y, ...), max(x, y, ...);
- conditions: comparisons < <= > >= == != (chains such as 0 <= q - k < W too),
  and, or, not, parentheses. The whole rule must be a condition.

Everything else is refused with a message naming the column and the offending text:
attribute access, indexing, other calls, lambda, comprehensions, strings, floats,
``**``, ``/``, bit operators, unknown names, huge literals, long or deeply nested input,
and any non-ASCII character (Python folds look-alikes such as fullwidth ``ｑ`` into
``q``; we refuse them instead of guessing).

Division and modulo follow Python: // rounds down and % takes the sign of the divisor,
also for negative numbers (torch.div(rounding_mode="floor") and torch.remainder).
Division by zero: a divisor that is zero whatever q and k are (``q // 0``, ``q % (W - W)``)
is refused when the rule is built; a divisor that is zero only for some pairs
(``q % k`` at k = 0) makes the rule False for those pairs. Python's short-circuit
order is kept, so ``k == 0 or q % k == 0`` is True at k = 0. In one sentence: a pair
is allowed exactly when Python would evaluate the rule to True without raising.

Every intermediate number is bounded before anything runs (interval arithmetic over
0 <= q, k < MAX_N and the given parameter values); a rule whose numbers could leave
the exact 64-bit range is refused, so the tensor version never overflows and always
agrees with Python's exact integers.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import math
import operator
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping

import numpy as np
import torch

from . import limits
from .masks import MAX_N, MaskRule, RowKeys, check_n

# ----------------------------------------------------------------- limits ---
MAX_RULE_CHARS = limits.RULE_CHARS  # longer text is refused before it is parsed
MAX_BRACKET_DEPTH = 20  # checked by a character scan before ast.parse, so it can never blow the stack
MAX_TREE_DEPTH = 60  # checked on the parsed tree; bounds the recursion of our own walkers
MAX_LITERAL = 10**7  # largest |literal| and |parameter value|
MAX_PARAMS = 32
MAX_CALL_ARGS = 8
MAX_NAME_CHARS = 32
# Intermediate values must stay within +-2**62: exact in int64 with room to spare.
VALUE_LIMIT = 2**62
# Largest N for which a custom rule's rows are computed (dense evaluation of N x N pairs
# in row chunks, once per rule and N, then cached with the rule). Measured on the 2-core
# CPU while other jobs ran: 0.6-1.3 s single-threaded at N = 8192 for typical rules
# (window, band, chunk, modulo, min/max); N = 16384 took 15-40 s, so the limit is 8192.
# tests/test_rules.py::test_custom_max_n_is_fast keeps it honest.
CUSTOM_MAX_N = limits.CUSTOM_MAX_N
# A row's keys are stored as runs [start, end); a rule like (q + k) % 2 == 0 has N/2 runs
# per row. The runs of one N (in total), and the padded (rows x runs) block handed out in
# one call, are capped so that a fragmented rule costs at most ~64 MiB.
MAX_RUNS = 2**22
_EVAL_ELEMENTS = 2**21  # (rows x keys) pairs evaluated per chunk: bounded working memory

GRAMMAR_HELP = (
    "Write a condition on q (query position) and k (key position), e.g. q >= k and q - k < W. "
    "Allowed: whole numbers, parameter names you define (W=16), + - * // %, abs(), min(), max(), "
    "< <= > >= == !=, and, or, not, parentheses. // and % follow Python (rounding down); "
    "where a divisor is 0 the pair is masked."
)

_FUNCS = {"abs": (1, 1), "min": (2, MAX_CALL_ARGS), "max": (2, MAX_CALL_ARGS)}
_VARS = ("q", "k")
# Names a parameter may not take: the variables, the functions, Python's keywords and
# builtins, and the keywords of custom_rule / masks.build (n, causal, rule, expr).
_RESERVED = frozenset(_VARS) | frozenset(_FUNCS) | {"n", "causal", "rule", "expr"}
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_PARAM_RE = re.compile(r"\s*([^=\s]+)\s*=\s*([+-]?\d{1,9})\s*\Z")


class RuleError(ValueError):
    """A refused rule. reason: what is wrong; col: 1-based column in the text (or None);
    snippet: the offending text. str() is one sentence for a CLI or a page."""

    def __init__(self, reason: str, col: int | None = None, snippet: str | None = None):
        self.reason, self.col, self.snippet = reason, col, snippet
        where = "" if col is None else f" (column {col}" + (f": {snippet}" if snippet else "") + ")"
        super().__init__(f"{reason}{where}")


# ------------------------------------------------------------- our nodes ---
# The checked tree. Ints nodes carry their value range (lo, hi) over every q, k, which
# decides overflow refusal and whether a divisor needs a zero guard.
@dataclass(frozen=True)
class Const:
    value: int


@dataclass(frozen=True)
class Var:
    name: str  # "q" or "k"


@dataclass(frozen=True)
class Arith:
    op: str  # "+", "-", "*", "//", "%"
    left: object
    right: object
    divisor_may_be_zero: bool = False


@dataclass(frozen=True)
class Neg:
    operand: object


@dataclass(frozen=True)
class Call:
    func: str  # "abs", "min", "max"
    args: tuple


@dataclass(frozen=True)
class Compare:
    ops: tuple[str, ...]  # "<", "<=", ">", ">=", "==", "!="
    operands: tuple  # len(ops) + 1 int nodes


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and", "or"
    values: tuple


@dataclass(frozen=True)
class Not:
    operand: object


@dataclass(frozen=True)
class CheckedRule:
    """A rule that passed every check. text: canonical form (ast.unparse of the checked
    tree); params: the parameters it uses, sorted; tree: our nodes; causal_by_form:
    the rule is a conjunction with a term that forces k <= q (so it never sees the future)."""

    text: str
    params: tuple[tuple[str, int], ...]
    tree: object
    causal_by_form: bool
    max_abs: int = VALUE_LIMIT  # largest |value| any number in the rule can take

    @property
    def fits_int32(self) -> bool:
        """Every value fits in int32, so tensors may stay int32 (half the memory traffic)."""
        return self.max_abs < 2**31


# ------------------------------------------------------------ text checks ---
def _snippet(text: str, start: int, end: int | None = None, width: int = 40) -> str:
    end = len(text) if end is None else end
    s = text[start:end]
    return s if len(s) <= width else s[: width - 1] + "…"


def _check_text(expr) -> str:
    """Cheap checks on the raw text, before any parser sees it. Returns the text with
    tabs and line breaks turned into spaces (same length, so columns still match)."""
    if not isinstance(expr, str):
        raise RuleError(f"The rule must be text, got {type(expr).__name__}.")
    if len(expr) > MAX_RULE_CHARS:
        raise RuleError(
            f"The rule is {len(expr):,} characters long; the limit is {MAX_RULE_CHARS}.",
            MAX_RULE_CHARS + 1,
            _snippet(expr, MAX_RULE_CHARS, MAX_RULE_CHARS + 20),
        )
    if not expr.strip():
        raise RuleError("The rule is empty; write a condition such as q >= k.")
    for i, ch in enumerate(expr):
        if ord(ch) > 126:
            raise RuleError(
                f"Only plain ASCII is allowed; character {ch!r} (U+{ord(ch):04X}) is not. "
                "Look-alike letters and digits are refused, not converted",
                i + 1,
                _snippet(expr, max(0, i - 10), i + 10),
            )
        if ord(ch) < 32 and ch not in "\t\n\r":
            raise RuleError(f"Control character {ch!r} is not allowed", i + 1)
    text = expr.replace("\t", " ").replace("\n", " ").replace("\r", " ")
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
            if depth > MAX_BRACKET_DEPTH:
                raise RuleError(
                    f"Brackets are nested more than {MAX_BRACKET_DEPTH} deep", i + 1, _snippet(text, i, i + 20)
                )
        elif ch in ")]}":
            depth -= 1
    return text


def _parse(expr) -> tuple[str, ast.expr]:
    """Text checks, then ast.parse (parsing only: nothing is compiled or run)."""
    text = _check_text(expr)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        # Columns are relative to the stripped text; shift back to the user's text.
        shift = len(text) - len(text.lstrip())
        if not e.offset or e.offset > len(text.strip()):  # the parser ran out of text
            raise RuleError(f"This is not a valid rule: {e.msg}; it stops before the expression is complete") from None
        col = e.offset + shift
        raise RuleError(f"This is not a valid rule: {e.msg}", col, _snippet(text, col - 1, col + 19)) from None
    except (ValueError, RecursionError, MemoryError) as e:  # defence in depth; the checks above prevent these
        raise RuleError(f"This rule could not be read ({type(e).__name__}).") from None
    shift = len(text) - len(text.lstrip())
    _check_depth(tree, text, shift)
    return text, tree


def _check_depth(tree: ast.AST, text: str, shift: int) -> None:
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            raise RuleError(f"The rule is nested more than {MAX_TREE_DEPTH} levels deep", *_where(node, text, shift))
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _where(node: ast.AST, text: str, shift: int) -> tuple[int | None, str | None]:
    col = getattr(node, "col_offset", None)
    if col is None:
        return None, None
    start = col + shift
    end = getattr(node, "end_col_offset", None)
    return start + 1, _snippet(text, start, None if end is None else end + shift)


# -------------------------------------------------------------- the check ---
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%"}
_CMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_REFUSED_OPS = {
    ast.Pow: "** (power) is not allowed",
    ast.Div: "/ is not allowed: use // for whole-number division",
    ast.MatMult: "@ is not allowed",
    ast.BitAnd: "& is not allowed: use 'and'",
    ast.BitOr: "| is not allowed: use 'or'",
    ast.BitXor: "^ is not allowed",
    ast.LShift: "<< is not allowed",
    ast.RShift: ">> is not allowed",
    ast.Invert: "~ is not allowed: use 'not'",
    ast.Is: "'is' is not allowed: use ==",
    ast.IsNot: "'is not' is not allowed: use !=",
    ast.In: "'in' is not allowed",
    ast.NotIn: "'not in' is not allowed",
}
_REFUSED_NODES = {
    ast.Attribute: "Attribute access (.) is not allowed",
    ast.Subscript: "Indexing ([...]) is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "Comprehensions are not allowed",
    ast.SetComp: "Comprehensions are not allowed",
    ast.DictComp: "Comprehensions are not allowed",
    ast.GeneratorExp: "Comprehensions are not allowed",
    ast.NamedExpr: "Assignment (:=) is not allowed",
    ast.IfExp: "Conditional expressions (x if c else y) are not allowed: use and / or",
    ast.JoinedStr: "Strings are not allowed",
    ast.FormattedValue: "Strings are not allowed",
    ast.Starred: "Starred expressions (*x) are not allowed",
    ast.List: "Lists, tuples, sets and dicts are not allowed",
    ast.Tuple: "Lists, tuples, sets and dicts are not allowed",
    ast.Set: "Lists, tuples, sets and dicts are not allowed",
    ast.Dict: "Lists, tuples, sets and dicts are not allowed",
    ast.Slice: "Slices are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
}

INT, BOOL = "number", "condition"


@dataclass(frozen=True)
class _Checked:
    node: object
    kind: str  # INT or BOOL
    lo: int = 0  # value range of an INT node over all q, k
    hi: int = 0


class _Checker:
    """Walks the ast once: whitelist, names, types, literal sizes, value ranges."""

    def __init__(self, text: str, shift: int, params: Mapping[str, int], q_max: int):
        self.text, self.shift, self.params, self.q_max = text, shift, params, q_max
        self.used: set[str] = set()
        self.max_abs = 0

    def fail(self, reason: str, node: ast.AST):
        raise RuleError(reason, *_where(node, self.text, self.shift))

    def src(self, node: ast.AST) -> str:
        return _where(node, self.text, self.shift)[1] or ""

    def bounded(self, node: ast.AST, out: _Checked) -> _Checked:
        if max(abs(out.lo), abs(out.hi)) > VALUE_LIMIT:
            self.fail(
                f"Numbers here can reach about {float(max(abs(out.lo), abs(out.hi))):.2g}, beyond the exact 64-bit range "
                f"(limit 2**62 for 0 <= q, k < {self.q_max + 1})",
                node,
            )
        return out

    def expect(self, node: ast.AST, kind: str) -> _Checked:
        out = self.check(node)
        if out.kind != kind:
            if kind == INT:
                self.fail("A condition (True/False) is used where a number is needed; compare numbers instead", node)
            self.fail(f"'{self.src(node)}' is a number, not a condition; compare it, e.g. {self.src(node)} > 0", node)
        return out

    def check(self, node: ast.AST) -> _Checked:
        if type(node) in _REFUSED_NODES:
            self.fail(_REFUSED_NODES[type(node)], node)
        method = getattr(self, "check_" + type(node).__name__, None)
        if method is None:
            self.fail(f"{type(node).__name__} is not allowed", node)
        out = method(node)
        if out.kind == INT:
            self.max_abs = max(self.max_abs, abs(out.lo), abs(out.hi))
        return out

    # -- leaves
    def check_Constant(self, node: ast.Constant) -> _Checked:
        v = node.value
        if isinstance(v, bool) or v is None or v is ...:
            self.fail(f"{v!r} is not allowed: write a comparison instead", node)
        if isinstance(v, (str, bytes)):
            self.fail("Strings are not allowed", node)
        if isinstance(v, (float, complex)):
            self.fail("Only whole numbers are allowed (no decimals)", node)
        if not isinstance(v, int):
            self.fail(f"{type(v).__name__} literals are not allowed", node)
        if abs(v) > MAX_LITERAL:
            self.fail(f"The number is too large (limit {MAX_LITERAL:,})", node)
        return _Checked(Const(v), INT, v, v)

    def check_Name(self, node: ast.Name) -> _Checked:
        name = node.id
        if name in _VARS:
            return _Checked(Var(name), INT, 0, self.q_max)
        if name in _FUNCS:
            self.fail(f"{name} is a function: call it, e.g. {name}(q - k)", node)
        if name.startswith("_"):
            self.fail("Names starting with _ are not allowed", node)
        if name not in self.params:
            known = ", ".join(["q", "k", *self.params]) or "q, k"
            self.fail(f"Unknown name '{name}': give it a value as a parameter (e.g. {name}=16); known names: {known}", node)
        self.used.add(name)
        v = self.params[name]
        return _Checked(Const(v), INT, v, v)

    # -- numbers
    def check_UnaryOp(self, node: ast.UnaryOp) -> _Checked:
        if isinstance(node.op, ast.Not):
            return _Checked(Not(self.expect(node.operand, BOOL).node), BOOL)
        if type(node.op) in _REFUSED_OPS:
            self.fail(_REFUSED_OPS[type(node.op)], node)
        a = self.expect(node.operand, INT)
        if isinstance(node.op, ast.UAdd):
            return a
        return self.bounded(node, _Checked(Neg(a.node), INT, -a.hi, -a.lo))

    def check_BinOp(self, node: ast.BinOp) -> _Checked:
        if type(node.op) in _REFUSED_OPS:
            self.fail(_REFUSED_OPS[type(node.op)], node)
        op = _ARITH.get(type(node.op))
        if op is None:
            self.fail(f"The operator {type(node.op).__name__} is not allowed", node)
        a, b = self.expect(node.left, INT), self.expect(node.right, INT)
        may_be_zero = False
        if op in ("+", "-", "*"):
            if op == "+":
                lo, hi = a.lo + b.lo, a.hi + b.hi
            elif op == "-":
                lo, hi = a.lo - b.hi, a.hi - b.lo
            else:
                corners = (a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi)
                lo, hi = min(corners), max(corners)
        else:
            if b.lo == b.hi == 0:
                self.fail(f"Division by zero: the divisor of {op} is always 0", node.right)
            may_be_zero = b.lo <= 0 <= b.hi
            lo, hi = _divmod_range(op, a, b)
        return self.bounded(node, _Checked(Arith(op, a.node, b.node, may_be_zero), INT, lo, hi))

    def check_Call(self, node: ast.Call) -> _Checked:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
            what = node.func.id + "()" if isinstance(node.func, ast.Name) else "this call"
            self.fail(f"Only abs(), min() and max() may be called; {what} is not allowed", node)
        name = node.func.id
        if node.keywords:
            self.fail(f"{name}() takes no keyword arguments", node)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.fail("Starred arguments (*x) are not allowed", arg)
        lo_n, hi_n = _FUNCS[name]
        if not lo_n <= len(node.args) <= hi_n:
            want = "exactly 1 argument" if name == "abs" else f"2 to {hi_n} arguments"
            self.fail(f"{name}() takes {want}, got {len(node.args)}", node)
        args = [self.expect(a, INT) for a in node.args]
        if name == "abs":
            a = args[0]
            lo = 0 if a.lo <= 0 <= a.hi else min(abs(a.lo), abs(a.hi))
            hi = max(abs(a.lo), abs(a.hi))
        elif name == "min":
            lo, hi = min(a.lo for a in args), min(a.hi for a in args)
        else:
            lo, hi = max(a.lo for a in args), max(a.hi for a in args)
        return _Checked(Call(name, tuple(a.node for a in args)), INT, lo, hi)

    # -- conditions
    def check_Compare(self, node: ast.Compare) -> _Checked:
        ops = []
        for op in node.ops:
            if type(op) in _REFUSED_OPS:
                self.fail(_REFUSED_OPS[type(op)], node)
            ops.append(_CMP[type(op)])
        operands = [self.expect(x, INT).node for x in [node.left, *node.comparators]]
        return _Checked(Compare(tuple(ops), tuple(operands)), BOOL)

    def check_BoolOp(self, node: ast.BoolOp) -> _Checked:
        op = "and" if isinstance(node.op, ast.And) else "or"
        return _Checked(BoolOp(op, tuple(self.expect(v, BOOL).node for v in node.values)), BOOL)


def _divmod_range(op: str, a: _Checked, b: _Checked) -> tuple[int, int]:
    """Value range of a // b or a % b over the ranges of a and b (pairs with b == 0 are undefined)."""
    if a.lo == a.hi and b.lo == b.hi:  # constants: exact
        v = a.lo // b.lo if op == "//" else a.lo % b.lo
        return v, v
    if op == "//":
        # For |b| >= 1, |a // b| <= |a| (floor may add one, but only when |a / b| < |a|).
        m = max(abs(a.lo), abs(a.hi))
        return -m, m
    # a % b lies strictly between 0 and b, so on the side of b's sign and below |b|.
    lo = min(b.lo + 1, 0) if b.lo < 0 else 0
    hi = max(b.hi - 1, 0) if b.hi > 0 else 0
    return lo, hi


def _causal_by_form(node) -> bool:
    """True when the rule is a conjunction one of whose terms forces k <= q
    (q >= k, k < q, 0 <= q - k, ...): such a rule never lets a query see a later key."""
    if isinstance(node, BoolOp) and node.op == "and":
        return any(_causal_by_form(v) for v in node.values)
    if not isinstance(node, Compare):
        return False
    # A chained comparison is the conjunction of its links.
    for a, op, b in zip(node.operands, node.ops, node.operands[1:]):
        if op in ("<", "<=", "=="):
            a, b, op = b, a, {"<": ">", "<=": ">=", "==": "=="}[op]
        # Now a op b with op in >, >=, ==, !=.
        if op == "!=":
            continue
        if a == Var("q") and b == Var("k"):
            return True
        if a == Arith("-", Var("q"), Var("k")) and isinstance(b, Const) and (b.value >= 0 or (op == ">" and b.value >= -1)):
            return True
    return False


# ------------------------------------------------------------- parameters ---
def check_param_name(name) -> str:
    """A parameter name: an ASCII identifier, not q/k/n, not a function, keyword or builtin."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > MAX_NAME_CHARS:
        shown = repr(name) if isinstance(name, str) and len(name) <= 40 else "this name"
        raise RuleError(
            f"Parameter name {shown} is not allowed: use ASCII letters, digits and _ "
            f"(starting with a letter, at most {MAX_NAME_CHARS} characters)."
        )
    if name in _RESERVED or keyword.iskeyword(name) or keyword.issoftkeyword(name) or hasattr(builtins, name):
        raise RuleError(f"Parameter name {name!r} is reserved (q, k, n, functions, keywords, builtins); pick another.")
    return name


def check_params(params: Mapping[str, int] | None) -> dict[str, int]:
    params = dict(params or {})
    if len(params) > MAX_PARAMS:
        raise RuleError(f"At most {MAX_PARAMS} parameters are allowed, got {len(params)}.")
    for name, value in params.items():
        check_param_name(name)
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise RuleError(f"Parameter {name} must be a whole number, got {value!r}.")
        if abs(int(value)) > MAX_LITERAL:
            raise RuleError(f"Parameter {name} = {value} is too large (limit {MAX_LITERAL:,} either way).")
    return {name: int(value) for name, value in params.items()}


def parse_param(text: str) -> tuple[str, int]:
    """'W=16' -> ('W', 16), as the CLI's --param and a page's parameter box take them."""
    if not isinstance(text, str) or len(text) > 80:
        raise RuleError("A parameter is written NAME=INTEGER, e.g. W=16.")
    m = _PARAM_RE.match(text)
    if not m:
        raise RuleError(f"A parameter is written NAME=INTEGER, e.g. W=16; got {text[:40]!r}.")
    name, value = check_param_name(m.group(1)), int(m.group(2))
    return name, check_params({name: value})[name]


def rule_names(expr: str) -> tuple[str, ...]:
    """The parameter names a rule's text uses (for a page to offer one input each), in order
    of first use. Checks the text and syntax only; custom_rule does the full check."""
    text, tree = _parse(expr)
    shift = len(text) - len(text.lstrip())
    found: dict[str, int] = {}  # name -> column of its first use
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in _VARS and node.id not in _FUNCS:
            try:
                check_param_name(node.id)
            except RuleError as e:
                raise RuleError(e.reason, *_where(node, text, shift)) from None
            found[node.id] = min(found.get(node.id, node.col_offset), node.col_offset)
    return tuple(sorted(found, key=found.get))


# ------------------------------------------------------------------ parse ---
def parse_rule(expr: str, params: Mapping[str, int] | None = None) -> CheckedRule:
    """Check a rule's text against the whitelist and the parameter values. Raises RuleError."""
    params = check_params(params)
    text, tree = _parse(expr)
    shift = len(text) - len(text.lstrip())
    checker = _Checker(text, shift, params, MAX_N - 1)
    out = checker.check(tree)
    if out.kind != BOOL:
        raise RuleError(
            "The rule must be a condition that is True or False, such as q >= k; this is a number",
            *_where(tree, text, shift),
        )
    used = tuple(sorted((name, params[name]) for name in checker.used))
    # ast.unparse only prints the tree that passed the checks: a canonical, readable form.
    return CheckedRule(ast.unparse(tree), used, out.node, _causal_by_form(out.node), checker.max_abs)


# ------------------------------------------------------ Python reference ---
class _Undefined(Exception):
    """A zero divisor: the pair is masked."""


def evaluate(rule: CheckedRule, q: int, k: int) -> bool:
    """The rule on one (q, k) pair with Python's exact ints: the reference semantics."""
    try:
        return bool(_py(rule.tree, int(q), int(k)))
    except _Undefined:
        return False


# One table for both evaluators: the operator functions work on Python ints and elementwise on tensors.
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}


def _py(node, q: int, k: int):
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Var):
        return q if node.name == "q" else k
    if isinstance(node, Neg):
        return -_py(node.operand, q, k)
    if isinstance(node, Arith):
        a, b = _py(node.left, q, k), _py(node.right, q, k)
        if node.op == "+":
            return a + b
        if node.op == "-":
            return a - b
        if node.op == "*":
            return a * b
        if b == 0:
            raise _Undefined
        return a // b if node.op == "//" else a % b
    if isinstance(node, Call):
        args = [_py(a, q, k) for a in node.args]
        return abs(args[0]) if node.func == "abs" else (min(args) if node.func == "min" else max(args))
    if isinstance(node, Compare):
        left = _py(node.operands[0], q, k)
        for op, right_node in zip(node.ops, node.operands[1:]):
            right = _py(right_node, q, k)  # evaluated only while the chain holds, as in Python
            if not _COMPARE[op](left, right):
                return False
            left = right
        return True
    if isinstance(node, BoolOp):
        for v in node.values:  # short-circuit, as in Python
            r = _py(v, q, k)
            if node.op == "and" and not r:
                return False
            if node.op == "or" and r:
                return True
        return node.op == "and"
    if isinstance(node, Not):
        return not _py(node.operand, q, k)
    raise TypeError(f"unexpected node {node!r}")  # unreachable: the checker builds only the nodes above


# ---------------------------------------------------------- torch version ---
# Each compiled node is a function (q, k) -> (value, ok). value is a Python int/bool or a
# tensor; ok is None (always defined), a Python bool or a bool tensor: False where a zero
# divisor was met on the way Python would have evaluated it.
Fn = Callable[[torch.Tensor, torch.Tensor], tuple]


def _both_ok(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _lnot(x):
    return (not x) if isinstance(x, bool) else torch.logical_not(x)


def _is_tensor(*xs) -> bool:
    return any(isinstance(x, torch.Tensor) for x in xs)


def _compile(node) -> Fn:
    if isinstance(node, Const):
        v = node.value
        return lambda q, k: (v, None)
    if isinstance(node, Var):
        return (lambda q, k: (q, None)) if node.name == "q" else (lambda q, k: (k, None))
    if isinstance(node, Neg):
        f = _compile(node.operand)

        def neg(q, k):
            v, ok = f(q, k)
            return -v, ok

        return neg
    if isinstance(node, Arith):
        return _compile_arith(node)
    if isinstance(node, Call):
        return _compile_call(node)
    if isinstance(node, Compare):
        return _compile_compare(node)
    if isinstance(node, BoolOp):
        return _compile_boolop(node)
    if isinstance(node, Not):
        f = _compile(node.operand)

        def not_(q, k):
            v, ok = f(q, k)
            return _lnot(v), ok

        return not_
    raise TypeError(f"unexpected node {node!r}")


def _compile_arith(node: Arith) -> Fn:
    fa, fb, op, guard = _compile(node.left), _compile(node.right), node.op, node.divisor_may_be_zero

    def arith(q, k):
        (a, oka), (b, okb) = fa(q, k), fb(q, k)
        ok = _both_ok(oka, okb)
        if op == "+":
            return a + b, ok
        if op == "-":
            return a - b, ok
        if op == "*":
            return a * b, ok
        if not _is_tensor(a, b):  # Python ints: the checker refused constant zero divisors
            return (a // b if op == "//" else a % b), ok
        if guard:
            # Divide by 1 where the divisor is 0 and mark those pairs undefined.
            zero = b == 0
            ok = _both_ok(ok, _lnot(zero))
            b = torch.where(zero, 1, b) if isinstance(b, torch.Tensor) else b
        # Python semantics on negatives: floor division, remainder with the divisor's sign.
        out = torch.div(a, b, rounding_mode="floor") if op == "//" else torch.remainder(a, b)
        return out, ok

    return arith


def _compile_call(node: Call) -> Fn:
    fs, func = [_compile(a) for a in node.args], node.func

    def call(q, k):
        vals, ok = [], None
        for f in fs:
            v, o = f(q, k)
            vals.append(v)
            ok = _both_ok(ok, o)
        if func == "abs":
            v = vals[0]
            return (torch.abs(v) if isinstance(v, torch.Tensor) else abs(v)), ok
        out = vals[0]
        for v in vals[1:]:
            if not _is_tensor(out, v):
                out = min(out, v) if func == "min" else max(out, v)
            else:
                out = torch.where(out <= v, out, v) if func == "min" else torch.where(out >= v, out, v)
        return out, ok

    return call


def _and_then(acc, acc_ok, nxt, nxt_ok):
    """Python's `acc and nxt` with definedness: nxt only counts where acc is True."""
    value = acc & nxt
    if nxt_ok is None:
        return value, acc_ok
    return value, _both_ok(acc_ok, _lnot(acc) | nxt_ok)


def _or_else(acc, acc_ok, nxt, nxt_ok):
    """Python's `acc or nxt` with definedness: nxt only counts where acc is False."""
    value = acc | nxt
    if nxt_ok is None:
        return value, acc_ok
    return value, _both_ok(acc_ok, acc | nxt_ok)


def _compile_compare(node: Compare) -> Fn:
    fs, ops = [_compile(x) for x in node.operands], node.ops

    def compare(q, k):
        left, ok = fs[0](q, k)
        acc, acc_ok = None, None
        for op, f in zip(ops, fs[1:]):
            right, rok = f(q, k)
            link = _COMPARE[op](left, right)
            if acc is None:  # first link: both operands are always evaluated
                acc, acc_ok = link, _both_ok(ok, rok)
            else:  # later links are evaluated only where the chain still holds
                acc, acc_ok = _and_then(acc, acc_ok, link, rok)
            left = right
        return acc, acc_ok

    return compare


def _compile_boolop(node: BoolOp) -> Fn:
    fs, step = [_compile(v) for v in node.values], (_and_then if node.op == "and" else _or_else)

    def boolop(q, k):
        acc, acc_ok = fs[0](q, k)
        for f in fs[1:]:
            acc, acc_ok = step(acc, acc_ok, *f(q, k))
        return acc, acc_ok

    return boolop


def compile_rule(rule: CheckedRule) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """predicate(q_idx, kv_idx) -> bool tensor of their broadcast shape (int64 inputs).

    Large inputs are evaluated in slices along the first axis, so a dense call at
    N = 16384 never holds more than a few int64 temporaries of ~2M elements."""
    root = _compile(rule.tree)
    # int32 indices (FlexAttention's, or ours) are kept only when no value can overflow them.
    keep = (torch.int64, torch.int32) if rule.fits_int32 else (torch.int64,)

    def direct(q, k):
        value, ok = root(q, k)
        out = value if ok is None else (value & ok)
        if isinstance(out, torch.Tensor) and out.dtype == torch.bool and out.shape == _broadcast(q.shape, k.shape):
            return out
        # Constant rules (e.g. 1 < 2) give a Python bool, q-only rules a narrower tensor:
        # spread the answer over the pairs' shape.
        return ((q < q) & (k < k)) | out

    def predicate(q_idx, kv_idx):
        q = torch.as_tensor(q_idx)
        k = torch.as_tensor(kv_idx)
        q = q if q.dtype in keep else q.to(torch.int64)
        k = k if k.dtype in keep else k.to(torch.int64)
        shape = _broadcast(q.shape, k.shape)
        total = math.prod(shape)  # plain ints: no numpy here, so torch.compile traces it
        if len(shape) == 0 or total <= _EVAL_ELEMENTS or shape[0] == 1:
            return direct(q, k)
        q, k = _align(q, len(shape)), _align(k, len(shape))
        step = max(1, _EVAL_ELEMENTS // (total // shape[0]))
        parts = []
        for lo in range(0, shape[0], step):
            qs = q[lo : lo + step] if q.shape[0] != 1 else q
            ks = k[lo : lo + step] if k.shape[0] != 1 else k
            parts.append(direct(qs, ks))
        return torch.cat(parts, dim=0)

    return predicate


def _broadcast(a, b) -> tuple[int, ...]:
    """Broadcast shape of two compatible shapes (torch.broadcast_shapes imports a lot on first use)."""
    nd = max(len(a), len(b))
    a, b = (1,) * (nd - len(a)) + tuple(a), (1,) * (nd - len(b)) + tuple(b)
    return tuple(y if x == 1 else x for x, y in zip(a, b))


def _align(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.reshape((1,) * (ndim - t.dim()) + tuple(t.shape))


# ------------------------------------------------------------ the MaskRule ---
@dataclass(frozen=True)
class RunTable:
    """Every row's allowed keys as runs [start, end), in CSR form: row q's runs are
    starts[row_ptr[q]:row_ptr[q+1]] (sorted, disjoint, non-adjacent)."""

    n: int
    row_ptr: np.ndarray  # int64 (n+1,)
    starts: np.ndarray  # int64 (M,)
    ends: np.ndarray  # int64 (M,)


def run_table(predicate: Callable, n: int, label: str = "this rule", dtype=torch.int64) -> RunTable:
    """Evaluate predicate on all n x n pairs, a chunk of rows at a time, and run-length encode each row."""
    check_custom_n(n)
    keys = torch.arange(n, dtype=dtype)[None, :]
    rows_per_chunk = max(1, _EVAL_ELEMENTS // n)
    counts, starts, ends = [], [], []
    total = 0
    for lo in range(0, n, rows_per_chunk):
        hi = min(lo + rows_per_chunk, n)
        m = predicate(torch.arange(lo, hi, dtype=dtype)[:, None], keys)
        pad = torch.zeros((hi - lo, 1), dtype=torch.bool)
        padded = torch.cat([pad, m, pad], dim=1)  # (R, n + 2): every run now has a start and an end
        # Transitions alternate start, end, start, ... in each row (the padding is False), and
        # nonzero lists them row by row, left to right: even entries are starts, odd ones ends.
        rows, cols = torch.nonzero(padded[:, 1:] != padded[:, :-1], as_tuple=True)
        total += len(cols) // 2
        if total > MAX_RUNS:
            raise ValueError(
                f"{label} splits its rows into more than {MAX_RUNS:,} separate runs of keys at N = {n}; "
                "that is too fragmented for the exact per-row form. Try a smaller N."
            )
        counts.append(torch.bincount(rows[0::2], minlength=hi - lo).numpy())
        starts.append(cols[0::2].numpy())
        ends.append(cols[1::2].numpy())
    row_ptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    return RunTable(n, row_ptr, np.concatenate(starts).astype(np.int64), np.concatenate(ends).astype(np.int64))


def rows_of(table: RunTable, q: np.ndarray, label: str = "this rule") -> RowKeys:
    """RowKeys (R, S) of rows q, padded with empty intervals to the longest row's S runs."""
    q = np.asarray(q, dtype=np.int64)
    first = table.row_ptr[q]
    count = table.row_ptr[q + 1] - first
    width = max(1, int(count.max()) if len(q) else 1)
    if len(q) * width > MAX_RUNS:
        raise ValueError(
            f"{label} has up to {width:,} separate runs of keys in a row; {len(q):,} rows of them exceed "
            f"the {MAX_RUNS:,} intervals one request may hold. Try a smaller N."
        )
    j = np.arange(width)[None, :]
    valid = j < count[:, None]
    idx = np.where(valid, first[:, None] + j, 0)
    # A sentinel keeps the gather in range when the table holds no runs at all.
    s_all = np.append(table.starts, 0)
    e_all = np.append(table.ends, 0)
    return RowKeys(np.where(valid, s_all[idx], 0), np.where(valid, e_all[idx], 0))


def with_causal(rule: CheckedRule) -> CheckedRule:
    """The rule ANDed with k <= q (the text stays the user's; the tree gains the term)."""
    tree = BoolOp("and", (rule.tree, Compare(("<=",), (Var("k"), Var("q")))))
    return CheckedRule(rule.text, rule.params, tree, True, rule.max_abs)


def check_custom_n(n) -> None:
    check_n(n)
    if n > CUSTOM_MAX_N:
        raise ValueError(
            f"Custom rules are evaluated pair by pair, which stops at N = {CUSTOM_MAX_N:,} tokens; got N = {n:,}."
        )


def custom_rule(
    expr: str, n: int | None = None, params: Mapping[str, int] | None = None, causal: bool = False
) -> MaskRule:
    """A MaskRule from a user's rule text: name "custom", params (("rule", canonical text),
    (name, value) for each parameter used, ("causal", True) when ANDed with k <= q).

    n: checked against CUSTOM_MAX_N when given (the rule itself works at any N up to it).
    causal: AND the rule with k <= q. The rule also counts as causal (rule.causal) when
    its form forces k <= q, e.g. q >= k and q - k < W. Raises RuleError / ValueError."""
    if not isinstance(causal, bool):
        raise RuleError(f"causal must be True or False, got {causal!r}.")
    if n is not None:
        check_custom_n(n)
    checked = parse_rule(expr, params)
    predicate = compile_rule(with_causal(checked) if causal else checked)
    rule_params = (("rule", checked.text), *checked.params) + ((("causal", True),) if causal else ())
    label = f"custom({checked.text})"

    def mask_mod(b, h, q_idx, kv_idx):
        return predicate(q_idx, kv_idx)

    # The run table of the last N or two is kept with the rule: the receptive field asks
    # for rows layer after layer, the statistics ask twice; the table is bounded by MAX_RUNS.
    lock = threading.Lock()

    dtype = torch.int32 if checked.fits_int32 else torch.int64

    @lru_cache(maxsize=2)
    def table(n_: int) -> RunTable:
        return run_table(predicate, n_, label, dtype)

    def row_keys(q, n_):
        check_custom_n(n_)
        with lock:  # one computation per N even when two sessions ask at once
            t = table(int(n_))
        return rows_of(t, q, label)

    return MaskRule("custom", rule_params, mask_mod, row_keys, None, causal or checked.causal_by_form)
