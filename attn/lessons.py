"""Guided lessons: steps with text, a live figure and a control or two, and predict-then-reveal questions.

Everything here is data plus pure functions (no Streamlit), so the Lessons page, the handout
and the tests share it:

- a :class:`Lesson` is a sequence of :class:`Step`; a step draws its figure from the library as a
  function of its :class:`Control` values and links to the full page with the same settings;
- a :class:`Question` holds no answer, only the library call that computes it (`solve`); `grade`
  compares a guess with that computed answer and says how far off it was;
- `handout_html` writes a lesson as one self-contained HTML file (plotly.js inline, once).

Questions use fixed settings (not the step's controls) so that a class compares the same prediction.
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import plotly.graph_objects as go

from . import cost_figures, figures, kv, masks, reach, render
from . import lesson_figures as lf
from .presets import STACK_PRESETS, build_stack
from .state import parse_bounded_int
from .text import count, share_text

EXPLORER = "app_pages/mask_explorer.py"
REACH_PAGE = "app_pages/receptive_field.py"
COST_PAGE = "app_pages/serving_cost.py"
MODEL_PAGE = "app_pages/model_attention.py"
BENCH_PAGE = "app_pages/benchmark.py"
# The recorded CPU kernel benchmark the lesson draws: the first of these that exists.
BENCH_FILES = tuple(Path(__file__).resolve().parent.parent / "assets" / "bench" / name
                    for name in ("kernels_cpu_sweep.json", "kernels_cpu.json"))


# ------------------------------------------------------------------ the data ---
@dataclass(frozen=True)
class Control:
    """One knob of a step: the values it may take (`options`, in order) and its default."""

    name: str  # key in the step's values and in the URL
    label: str
    options: tuple
    default: object
    help: str = ""
    fmt: Callable[[object], str] = field(default=str, compare=False)

    def __post_init__(self):
        if self.default not in self.options:
            raise ValueError(f"Control {self.name}: default {self.default!r} is not among its options.")

    @property
    def numeric(self) -> bool:
        return all(isinstance(o, int) and not isinstance(o, bool) for o in self.options)

    def describe(self) -> str:
        if self.numeric and list(self.options) == list(range(self.options[0], self.options[-1] + 1)):
            return f"a whole number from {self.options[0]} to {self.options[-1]}"
        return "one of " + ", ".join(str(o) for o in self.options)

    def parse(self, text: str):
        """URL text -> one of the options; ValueError (plain words) otherwise."""
        t = str(text).strip()
        for o in self.options:
            if str(o) == t:
                return o
        raise ValueError(f"{self.label}: '{t[:30]}' is not allowed here; expected {self.describe()}.")


@dataclass(frozen=True)
class Link:
    """A page of the app and the query parameters that reproduce a step's figure there."""

    page: str  # page script, e.g. app_pages/receptive_field.py
    params: tuple[tuple[str, str], ...]

    @property
    def query(self) -> dict[str, str]:
        return dict(self.params)


def link(page: str, **params) -> Link:
    return Link(page, tuple((k, str(v)) for k, v in params.items()))


@dataclass(frozen=True)
class Question:
    """A predict-then-reveal question. `solve()` computes the answer with the library:
    a number (kind "number"), or one value per choice (kind "choice"; the right choice is the
    option with the smallest value, or the largest when best == "max")."""

    id: str
    prompt: str  # Markdown
    kind: str  # "number" or "choice"
    solve: Callable[[], object] = field(compare=False)
    choices: tuple[str, ...] = ()
    best: str = "min"
    value_label: str = ""  # what a choice's value measures, e.g. "allowed pairs"
    unit: str = ""  # of the number (or of each choice's value)
    tolerance: float = 0.0  # a guess this close counts as right
    relative: bool = False  # tolerance as a share of the answer (0.1 = within 10%)
    explain: Callable[[object], str] | None = field(default=None, compare=False)  # solution -> Markdown

    def tolerance_text(self) -> str:
        if self.kind == "choice":
            return "one right option"
        if self.tolerance == 0:
            return "only the exact answer counts"
        if self.relative:
            return f"within {self.tolerance:.0%} counts as right"
        unit = f" percentage point{'' if self.tolerance == 1 else 's'}" if self.unit == "%" else f" {self.unit}" if self.unit else ""
        return f"within ±{self.tolerance:g}{unit} counts as right"


@dataclass(frozen=True)
class Step:
    """One screen of a lesson. `figure(values)` draws it from the library; a step whose work is
    slow (a real model) has `run(values, progress)` instead, done on request, and draws
    `result_figure(values, result)`."""

    title: str
    text: str  # Markdown (the subset md_to_html understands)
    figure: Callable[[dict], go.Figure] | None = field(default=None, compare=False)
    controls: tuple[Control, ...] = ()
    link: Callable[[dict], Link | None] | None = field(default=None, compare=False)
    questions: tuple[Question, ...] = ()
    note: Callable[[dict], str] | None = field(default=None, compare=False)  # a computed sentence under the figure
    run: Callable[[dict, Callable | None], object] | None = field(default=None, compare=False)
    result_figure: Callable[[dict, object], go.Figure] | None = field(default=None, compare=False)
    result_note: Callable[[dict, object], str] | None = field(default=None, compare=False)
    run_label: str = ""
    # (on screen, on paper): the handout's words for sentences that ask the reader to move a control.
    on_paper: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        missing = [screen for screen, _ in self.on_paper if screen not in self.text]
        if missing:
            raise ValueError(f"Step '{self.title}': on_paper names text the step does not have: {missing}")

    @property
    def paper_text(self) -> str:
        """The step's text for a handout, where no control can be moved."""
        text = self.text
        for screen, paper in self.on_paper:
            text = text.replace(screen, paper)
        return text

    @property
    def slow(self) -> bool:
        return self.run is not None

    def defaults(self) -> dict:
        return {c.name: c.default for c in self.controls}

    def values(self, given: dict | None = None) -> dict:
        """The step's control values: given ones where valid, defaults elsewhere."""
        out = self.defaults()
        for c in self.controls:
            if given and given.get(c.name) in c.options:
                out[c.name] = given[c.name]
        return out

    def build_figure(self, values: dict | None = None, result=None) -> go.Figure:
        v = self.values(values)
        if self.slow:
            if result is None:
                raise ValueError(f"Step '{self.title}' draws its figure from a run; run it first.")
            return self.result_figure(v, result)
        return self.figure(v)

    def link_for(self, values: dict | None = None) -> Link | None:
        return self.link(self.values(values)) if self.link else None

    def note_for(self, values: dict | None = None, result=None) -> str:
        if self.slow:
            return self.result_note(self.values(values), result) if self.result_note and result is not None else ""
        return self.note(self.values(values)) if self.note else ""


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    summary: str
    steps: tuple[Step, ...]

    @property
    def questions(self) -> tuple[Question, ...]:
        return tuple(q for s in self.steps for q in s.questions)


# ------------------------------------------------------------------ helpers ---
def pairs(rule: masks.MaskRule, n: int) -> int:
    """Allowed (query, key) pairs of a rule at length n, counted exactly."""
    return int(render.row_counts(rule, n).sum())


def ints(lo: int, hi: int, step: int = 1) -> tuple[int, ...]:
    return tuple(range(lo, hi + 1, step))


def stack_of(preset: str, n: int):
    p = STACK_PRESETS[preset]
    return build_stack(p.spec, p.layers, n, preset)


@functools.lru_cache(maxsize=16)
def preset_reach(preset: str, n: int) -> reach.TokenReach:
    """Reach of the last token through all of a preset's layers (cached: the figure slices it)."""
    p = STACK_PRESETS[preset]
    return reach.reach_of_token(stack_of(preset, n), n, n - 1, p.layers)


def reach_through(preset: str, n: int, layers: int) -> go.Figure:
    """Reach growth of the last token through the first `layers` layers of a preset stack."""
    full = preset_reach(preset, n)
    part = reach.TokenReach(full.token, n, full.sets[:layers])
    analytic = None
    rules = STACK_PRESETS[preset].spec.split("|")
    if len(rules) == 1 and rules[0].split()[0] == "sliding_window":
        w = stack_of(preset, n).rules[0].param_dict["window"]
        analytic = [reach.sliding_window_reach(n - 1, layer, w) for layer in range(1, layers + 1)]
    fig = figures.reach_growth_figure(part.counts, n - 1, analytic, part.full_context_layer)
    after = "after layer 1" if layers == 1 else f"after each of layers 1–{layers}"
    fig.update_layout(title=f"{STACK_PRESETS[preset].title}<br><sup>tokens that can influence token {n - 1:,} "
                            f"(N = {n:,}) {after}</sup>")
    # Whole layers only on the axis (plotly would label 1.5, 2.5 …).
    fig.update_xaxes(dtick=1 if layers <= 16 else None, tickformat="d")
    if layers == 1:
        fig.update_xaxes(range=[0.5, 1.5])
    return fig


def reach_note(preset: str, n: int, layers: int) -> str:
    counts = preset_reach(preset, n).counts
    return (f"After {count(layers, 'layer')} token {n - 1:,} can draw on **{counts[layers - 1]:,}** of its {n:,} tokens "
            f"({share_text(counts[layers - 1] / n)}).")


def fmt_number(x: float, unit: str = "") -> str:
    """A number as a student reads it: whole numbers with thousands separators, else 3 significant digits."""
    if unit == "%":
        return f"{x:.1f}%"
    if float(x).is_integer() and abs(x) < 1e15:
        text = f"{int(x):,}"
    else:
        text = f"{x:,.3g}" if abs(x) < 1e6 else f"{x:.3g}"
    return f"{text} {unit}" if unit else text


_SCALE = {
    "k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9, "g": 1e9,
    "billion": 1e9, "t": 1e12, "trillion": 1e12,
}


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
# Units a student may type for a memory answer; only the question's own unit is read as it.
_MEMORY_UNITS = ("b", "kb", "kib", "mb", "mib", "gb", "gib", "tb", "tib", "bytes", "g", "gig")


def _power(base: float, exponent: float) -> float:
    try:
        return base ** exponent
    except OverflowError:
        return math.inf


def parse_guess(text, unit: str = "") -> float:
    """A typed guess -> a number. Accepts 1,234 · 1 234 · 1.7e10 · 17 billion · 20k · 2.5M · 2^34 ·
    1.7×10^10 · 131,072² · 48% (a % question) · 16 GiB (a GiB question)."""
    shown = str(text).strip()[:30]
    t = str(text).strip().lower()
    if not t:
        raise ValueError("Type a number first: make your prediction, then reveal.")
    if len(t) > 40:
        raise ValueError("That is too long for a number; type digits such as 12, 2.5k or 17 billion.")
    if unit and t.endswith(unit.lower()):
        t = t[: -len(unit)].strip()
    if t.endswith("%") and unit != "%":
        raise ValueError(f"'{shown}' is a percentage, but this question asks for "
                         + (f"an amount in {unit}." if unit else "a count, not a share."))
    t = t.rstrip("%").strip()
    # 48,4 is a decimal comma, not forty-eight thousand and four hundred: commas only group by threes.
    if re.search(r"\d,(?=\d)(?!\d{3}(?!\d))", t):
        raise ValueError(f"'{shown}': write decimals with a point (48.4); a comma only groups thousands (1,234).")
    t = re.sub(r"(?<=\d)[,_ ](?=\d)", "", t)
    t = t.replace("×", "x").replace("·", "x").replace("**", "^")
    value = None
    if m := re.fullmatch(rf"({_NUMBER})\s*[x*]\s*10\s*\^\s*([-+]?\d{{1,3}})", t):  # 1.7×10^10
        value = float(m.group(1)) * _power(10.0, int(m.group(2)))
    elif m := re.fullmatch(rf"({_NUMBER})\s*\^\s*(\d{{1,3}})", t):  # 2^34
        value = _power(float(m.group(1)), int(m.group(2)))
    elif m := re.fullmatch(rf"({_NUMBER})\s*([²³])", t):  # 131,072²
        value = _power(float(m.group(1)), 2 if m.group(2) == "²" else 3)
    elif m := re.fullmatch(rf"({_NUMBER})\s*([a-z]*)", t):
        suffix = m.group(2)
        if unit and suffix in _MEMORY_UNITS:
            raise ValueError(f"'{shown}': this question is in {unit}; type the number alone (16) or with its unit "
                             f"(16 {unit}).")
        if suffix and suffix not in _SCALE:
            m = None
        else:
            value = float(m.group(1)) * _SCALE.get(suffix, 1.0)
    if value is None:
        raise ValueError(f"'{shown}' is not a number; type digits such as 12, 2.5k or 17 billion.")
    if not math.isfinite(value):
        raise ValueError("That number is too large.")
    return value


# ------------------------------------------------------------ answers, grades ---
@functools.lru_cache(maxsize=None)
def solve(question: Question):
    """The question's answer, computed by the library (once per process)."""
    sol = question.solve()
    if question.kind == "number":
        if sol is None:
            raise ValueError(f"Question {question.id} has no numeric answer.")
        return float(sol)
    values = tuple(float(v) for v in sol)
    if len(values) != len(question.choices):
        raise ValueError(f"Question {question.id}: {len(values)} values for {len(question.choices)} choices.")
    return values


def answer(question: Question):
    """The right answer: a number, or the label of the right choice."""
    sol = solve(question)
    if question.kind == "number":
        return sol
    pick = min if question.best == "min" else max
    return question.choices[sol.index(pick(sol))]


def answer_text(question: Question) -> str:
    a = answer(question)
    return a if question.kind == "choice" else fmt_number(a, question.unit)


@dataclass(frozen=True)
class Grade:
    """How a guess compares with the computed answer.

    Numbers: abs_error = guess − answer, rel_error = abs_error / answer.
    Choices: the same between the value of the chosen option and that of the right one.
    """

    question: str
    guess: object
    answer: object
    answer_text: str
    correct: bool
    abs_error: float | None
    rel_error: float | None
    summary: str  # one sentence: right, or how far off
    explanation: str  # Markdown, computed
    options: tuple[tuple[str, str], ...] = ()  # choice: (label, its computed value as text)


def _times(x: float) -> str:
    return f"{x:.3g}" if x < 100 or x >= 1e9 else f"{x:,.0f}"


def relative_error_text(rel: float) -> str:
    """How far off, relative to the answer (rel = guess / answer − 1), in words a student reads
    one way only: a percentage while the guess is within a factor of two, then how many times
    larger or smaller ("4,194,304 times smaller", not "100.0% of the answer"). A guess of the other
    sign, or zero, says so. Multiples stay short (a guess of -1e308 must not print 300 digits)."""
    ratio = rel + 1
    if 0.5 <= ratio <= 2:
        # One decimal, or two significant digits where one decimal would print a miss as 0.0%.
        share = f"{abs(rel):.1%}" if abs(rel) >= 0.0005 else f"{abs(rel) * 100:.2g}%"
        return f"{share} {'above' if rel > 0 else 'below'} the answer"
    if ratio > 2:
        return f"{_times(ratio)} times the answer"
    if ratio > 0:
        return f"{_times(1 / ratio)} times smaller than the answer"
    return "zero, where the answer is not" if ratio == 0 else "the other sign from the answer"


def option_values(question: Question, sol) -> tuple[tuple[str, str], ...]:
    """A choice question's options with their computed values as text (shown with the answer)."""
    unit = f" {question.value_label}" if question.value_label else ""
    return tuple((c, fmt_number(v, question.unit) + unit) for c, v in zip(question.choices, sol))


def _answer_apart_from(right: float, guess: float, unit: str) -> str:
    """The answer as shown, with more digits where the short form would equal an inexact guess
    ("Answer: 48.44%" beside a guess of 48.4, not "48.4%")."""
    text = fmt_number(right, unit)
    typed = f"{guess:g}%" if unit == "%" else fmt_number(guess, unit)
    for digits in range(2, 8):
        if guess == right or text != typed:
            break
        text = f"{right:.{digits}f}%" if unit == "%" else fmt_number(float(f"{right:.{digits + 2}g}"), unit)
    return text


def grade(question: Question, guess) -> Grade:
    """Compare a guess (a number or typed text; a choice label or index) with the computed answer."""
    sol = solve(question)
    right = answer(question)
    explanation = question.explain(sol) if question.explain else ""
    if question.kind == "number":
        g = parse_guess(guess, question.unit) if isinstance(guess, str) else float(guess)
        diff = g - right
        rel = diff / right if right else None
        limit = question.tolerance * abs(right) if question.relative else question.tolerance
        correct = abs(diff) <= limit + 1e-9 * max(1.0, abs(right))
        if diff == 0:
            summary = "Exactly right."
        else:
            # A difference of percentages is in percentage points (50% for 48.4% is 1.6 points, 3.2% too high).
            points = f"{abs(diff):.1f}" if abs(diff) >= 0.05 else f"{abs(diff):.2g}"  # not "0.0 points too low"
            gap = f"{points} percentage points" if question.unit == "%" else fmt_number(abs(diff), question.unit)
            # The guess is named first: "Right: 179,869,184 too low" alone reads as if that were the guess.
            typed = f"{g:g}%" if question.unit == "%" else fmt_number(g, question.unit)  # 0.484% is not "0.5%"
            how = f"your {typed} is {gap} too {'high' if diff > 0 else 'low'}"
            how += f" ({relative_error_text(rel)})" if rel is not None else ""
            if question.unit == "%" and 0 < abs(g) <= 1 < abs(right):
                how += f"; a share typed as a fraction? {g:g} is {g * 100:g}%"
            summary = f"Right: {how}, {question.tolerance_text()}." if correct else \
                f"Off: {how}; {question.tolerance_text()}."
        return Grade(question.id, g, right, _answer_apart_from(right, g, question.unit), correct, diff, rel, summary,
                     explanation)
    if isinstance(guess, int) and not isinstance(guess, bool) and 0 <= guess < len(question.choices):
        guess = question.choices[guess]
    if guess not in question.choices:
        raise ValueError("Pick one of the options first: make your prediction, then reveal.")
    values = dict(zip(question.choices, sol))
    diff = values[guess] - values[right]
    rel = diff / values[right] if values[right] else None
    correct = guess == right
    options = option_values(question, sol)
    if correct:
        summary = "Right."
    else:
        ratio = values[guess] / values[right] if values[right] else math.inf
        summary = f"Not this one: your pick comes to {ratio:.3g}× the right option's {question.value_label or 'value'}."
    return Grade(question.id, guess, right, right, correct, diff, rel, summary, explanation, options)


# ------------------------------------------------------------ lesson 1 ---
N_SMALL = (8, 16, 32, 64, 128)
BIG_N = masks.MAX_N  # 131,072 tokens


def _grid(rule, n, what):
    return figures.grid_figure(rule, n, title=lf.grid_title(rule, n, what))


def _q_full_pairs() -> Question:
    return Question(
        "full-pairs",
        f"Full attention over a **{BIG_N:,}-token** text: how many (query, key) pairs does **one head** score "
        "in **one layer**? Type a number (12, 2.5e9 and 40 billion all work).",
        "number",
        lambda: pairs(masks.full(), BIG_N),
        tolerance=0.10,
        relative=True,
        explain=lambda a: f"Each of the {BIG_N:,} queries scores all {BIG_N:,} keys: {BIG_N:,}² = **{fmt_number(a)}** "
        "pairs, for one head in one layer. A model repeats that for every head of every layer.",
    )


# The cost question compares masks at different lengths: a window makes cost linear in N,
# but linear with a large constant can still cost more than quadratic at a smaller N.
CHEAPEST = (
    ("Causal attention over 16,384 tokens", masks.causal(), 16384),
    (f"Sliding window W = 4,096 over {BIG_N:,} tokens", masks.sliding_window(4096), BIG_N),
    ("Full (bidirectional) attention over 16,384 tokens", masks.full(), 16384),
)


def _q_cheapest() -> Question:
    def explain(values):
        best = values.index(min(values))
        (label_w, rule_w, n_w), value_w = CHEAPEST[1], values[1]
        # The options' pair counts are listed with the answer (option_values); not repeated here.
        text = f"Fewest: **{CHEAPEST[best][0]}**."
        if best != 1:
            text += (f" A window makes the cost linear in N (about N·W = {n_w:,} × {rule_w.param_dict['window']:,}), "
                     f"but at this length it still comes to {value_w / values[best]:.3g}× the cheapest: linear with a "
                     "large constant can lose to quadratic on a shorter text.")
        return text

    return Question(
        "cheapest-pairs",
        "Which of these scores the **fewest** (query, key) pairs per head and layer?",
        "choice",
        lambda: tuple(pairs(rule, n) for _, rule, n in CHEAPEST),
        choices=tuple(label for label, _, _ in CHEAPEST),
        value_label="pairs",
        explain=explain,
    )


# 1,020, not 1,000: "W per layer" (⌈1020/128⌉ = 8) and the true W − 1 per layer (⌈1020/127⌉ = 9)
# give different answers, so the slip this step corrects is graded wrong.
W_HOPS, T_HOPS = 128, 1020


def _q_layers_until() -> Question:
    def explain(a):
        hop = W_HOPS - 1
        return (f"One layer carries information at most W − 1 = {hop} positions; {T_HOPS:,} positions need "
                f"**{int(a)}** layers ({int(a) - 1} layers reach back only {(int(a) - 1) * hop:,}).")

    return Question(
        "window-hops",
        f"With a sliding window of **W = {W_HOPS}** in every layer, after how many layers can token **{T_HOPS:,}** "
        "first use information from token **0**?",
        "number",
        lambda: reach.layers_until(masks.sliding_window(W_HOPS), T_HOPS + 1, 0, T_HOPS),
        unit="",
        explain=explain,
    )


def _q_mistral_reach() -> Question:
    def explain(a):
        stack = stack_of("mistral-7b-v0.1", BIG_N)
        w, layers = stack.rules[0].param_dict["window"], stack.layers
        return (f"Each layer adds W − 1 = {w - 1:,} positions: {layers} × {w - 1:,} + 1 = **{fmt_number(a)}** of the "
                f"{BIG_N:,} tokens, though no single layer looks more than {w:,} back. That is what the mask "
                "*allows*; whether a trained model really uses it is another question (lesson 3).")

    return Question(
        "mistral-reach",
        f"Mistral 7B v0.1 has 32 layers, each a sliding window of 4,096 tokens. On a {BIG_N:,}-token text, how many "
        "tokens can the **last** token draw on after all 32 layers (itself included)?",
        "number",
        lambda: preset_reach("mistral-7b-v0.1", BIG_N).counts[-1],
        # Exact: 131,041 is 31 short of the whole text (131,072), and "all of it" is the very slip
        # this step corrects; a relative tolerance would accept it.
        tolerance=0.0,
        explain=explain,
    )


def _reach_map(w: int, layers: int) -> go.Figure:
    n = 48
    result = reach.reach_of_token(masks.sliding_window(w), n, n - 1, layers)
    fig = figures.reach_map_figure(result.sets, n - 1)
    # Taller rows than the Receptive Field page's: a handful of layers must read as a picture here.
    fig.update_layout(title=f"Sliding window W = {w}: inputs that can reach token {n - 1} (the line marks it)",
                      height=240 + 28 * layers)
    fig.update_yaxes(dtick=1)
    fig.update_xaxes(dtick=4)
    return fig


def _reach_note(v: dict) -> str:
    n, w, layers = 48, v["window"], v["layers"]
    reached = reach.reach_of_token(masks.sliding_window(w), n, n - 1, layers).counts[-1]
    return (f"After {count(layers, 'layer')} token {n - 1} draws on **{reached}** tokens: min({n}, L·(W−1)+1) = "
            f"min({n}, {layers}·{w - 1}+1). One layer alone gives it only {min(w, n)}.")


LESSON_1 = Lesson(
    "sliding-window",
    "From full to sliding window",
    "Why full attention gets expensive, how a sliding window caps the cost, and why stacking "
    "windowed layers still lets information travel far: Mistral 7B reaches 131k tokens with a 4,096 window.",
    (
        Step(
            "Every token looks at every token",
            "In attention, each token (a **query**) compares itself with other tokens (**keys**) and mixes in what "
            "it finds. In **full attention** every query looks at every key: a text of N tokens means N × N pairs.\n\n"
            "The picture is the **mask**: row = query, column = key, dark = allowed. Change N and watch the "
            "square fill up: double the text and the pairs quadruple.",
            on_paper=(
                ('Change N and watch the square fill up', 'The larger N, the fuller the square'),
            ),
            figure=lambda v: _grid(masks.full(), v["n"], "Full attention: every query row uses every key column"),
            controls=(Control("n", "Tokens N", N_SMALL, 16),),
            link=lambda v: link(EXPLORER, pattern="full", n=v["n"]),
            questions=(_q_full_pairs(),),
            note=lambda v: f"N = {v['n']}: **{pairs(masks.full(), v['n']):,}** pairs. Double it to "
                           f"N = {2 * v['n']}: **{pairs(masks.full(), 2 * v['n']):,}**.",
        ),
        Step(
            "Causal: never look ahead",
            "A language model predicts the next token, so a token may not look at tokens after it: **causal** "
            "attention keeps only the lower triangle (key k ≤ query q). That halves the work but it still grows "
            "as N², and the first token sees only itself while the last sees everything before it.",
            figure=lambda v: _grid(masks.causal(), v["n"], "Causal: query q uses keys k ≤ q"),
            controls=(Control("n", "Tokens N", N_SMALL, 16),),
            link=lambda v: link(EXPLORER, pattern="causal", n=v["n"]),
            note=lambda v: f"**{pairs(masks.causal(), v['n']):,}** of {v['n'] ** 2:,} pairs: N(N+1)/2.",
        ),
        Step(
            "Sliding window: a fixed look-back",
            "A **sliding window** of W keeps causal's rule and adds one more: a token sees itself and the W − 1 "
            "tokens just before it, never further (masked where k > q or q − k ≥ W). Every row now has at most W "
            "allowed cells, however long the text: the cost is about N·W.\n\n"
            "Mistral 7B v0.1 uses W = 4,096.",
            figure=lambda v: _grid(masks.sliding_window(v["window"]), 32,
                                   f"Sliding window W = {v['window']}: itself and {v['window'] - 1} before"),
            controls=(Control("window", "Window W", ints(1, 16), 4),),
            link=lambda v: link(EXPLORER, pattern="sliding_window", window=v["window"], n=32),
            questions=(_q_cheapest(),),
            note=lambda v: f"Each row has at most {v['window']} allowed cells: "
                           f"**{pairs(masks.sliding_window(v['window']), 32):,}** pairs at N = 32.",
        ),
        Step(
            "How the cost grows",
            "Now count the pairs of all three at longer lengths: that shows **quadratic** against **linear** growth. "
            "On these log-log axes N² is a line twice as steep as N·W.\n\n"
            "- full: N² pairs\n- causal: N(N+1)/2, half of full, still quadratic\n"
            "- sliding window: each query sees at most W keys, so about N·W: linear in N\n\n"
            "Move W: past N = W the window line shifts up or down but keeps its slope; below it, a window of W "
            "holds every earlier token, so its line is the causal one.",
            on_paper=(
                ('Move W: past N = W the window line shifts up or down', 'Past N = W, another window size shifts the window line up or down'),
            ),
            figure=lambda v: lf.pairs_growth_figure(v["window"]),
            controls=(Control("window", "Window W (tokens)", (256, 512, 1024, 2048, 4096, 8192), 4096,
                              fmt=lambda x: f"{x:,}"),),
            link=lambda v: link(EXPLORER, pattern="sliding_window", window=v["window"], n=BIG_N),
            note=lambda v: f"At N = {BIG_N:,}, a window of {v['window']:,} keeps "
                           f"**{pairs(masks.sliding_window(v['window']), BIG_N) / pairs(masks.causal(), BIG_N):.1%}** "
                           "of causal attention's pairs.",
        ),
        Step(
            "Information travels one window per layer",
            "A window hides the far past from one layer, but a transformer stacks layers. Token 40 can see token "
            "37 in layer 1, and token 37 already carries what *it* saw of tokens before it. So every layer extends "
            "the reach by W − 1 positions: after L layers a token can draw on L·(W − 1) + 1 tokens.\n\n"
            "The picture shows which inputs can reach the last token after each layer.",
            figure=lambda v: _reach_map(v["window"], v["layers"]),
            controls=(Control("window", "Window W", ints(2, 16), 4), Control("layers", "Layers L", ints(1, 12), 3)),
            link=lambda v: link(REACH_PAGE, stack="pattern", pattern="sliding_window", window=v["window"], n=48,
                                layers=v["layers"], token=47, layer=v["layers"]),
            questions=(_q_layers_until(),),
            note=_reach_note,
        ),
        Step(
            "Mistral 7B: 4,096 × 32 layers",
            "Mistral 7B v0.1 stacks 32 layers, each with a window of 4,096 tokens. No layer looks further back "
            "than 4,096 tokens, yet the reach of the last token grows by 4,095 with every layer.\n\n"
            "Predict the total first, then slide the layers up to 32.",
            on_paper=(
                ('then slide the layers up to 32.', 'then, in the lab, slide the layers up to 32 (the figure shows the layers chosen when this handout was made).'),
            ),
            figure=lambda v: reach_through("mistral-7b-v0.1", BIG_N, v["layers"]),
            controls=(Control("layers", "Layers", ints(1, 32), 4),),
            link=lambda v: link(REACH_PAGE, stack="mistral-7b-v0.1", n=BIG_N, layers=32, token=BIG_N - 1,
                                layer=v["layers"]),
            questions=(_q_mistral_reach(),),
            note=lambda v: reach_note("mistral-7b-v0.1", BIG_N, v["layers"]),
        ),
    ),
)


# ------------------------------------------------------------ lesson 2 ---
GLOBAL_SPOTS = (0, 16, 32)


def _globals(count: int) -> tuple[int, ...]:
    return GLOBAL_SPOTS[:count]


def _q_longformer_hops() -> Question:
    n, source, target = 4096, 1000, 4095

    def explain(a):
        band_only = reach.layers_until(masks.local_global(512, (), False), n, source, target)
        return (f"Token {source:,} → global token 0 in layer 1, token 0 → token {target:,} in layer 2: **{int(a)}** "
                f"layers. Through the windows alone (256 each side) it would take {band_only} layers.")

    return Question(
        "longformer-hops",
        f"Longformer base: 12 layers, a window of 512 (256 on each side), token 0 global. On {n:,} tokens, after how "
        f"many layers can token **{target:,}** use information from token **{source:,}**, {target - source:,} "
        "positions away?",
        "number",
        lambda: reach.layers_until(stack_of("longformer-base", n), n, source, target),
        explain=explain,
    )


def _bigbird_base(n: int) -> masks.MaskRule:
    # google/bigbird-roberta-base: blocks of 64, 3 random blocks, a 3-block window, and the first and
    # last block global (ITC). The window is approximated by a token band of 192.
    return masks.bigbird(192, tuple(range(64)) + tuple(range(n - 64, n)), 3, 0, 64, n, False)


COST_OPTIONS = (
    ("Longformer base: window 512 + token 0 global", lambda n: masks.local_global(512, (0,), False)),
    ("BigBird base: window 192 + 128 global tokens + 3 random blocks of 64", _bigbird_base),
    ("Attention sinks: 4 sinks + window 4,096 (causal)", lambda n: masks.sinks(4, 4096)),
)


def _q_sparse_cost() -> Question:
    def explain(values):
        i = values.index(min(values))
        per_query = ", ".join(f"{label.split(':')[0]} {v / BIG_N:,.0f}" for (label, _), v in zip(COST_OPTIONS, values))
        return (f"Keys per query on average: {per_query}. BigBird's 128 global tokens each see all {BIG_N:,} keys and "
                "are seen by every token, and its random blocks add 192 keys per query; the sinks mask is causal "
                f"but its window is 4,096 wide. Fewest pairs: **{COST_OPTIONS[i][0]}**.")

    return Question(
        "sparse-cost",
        f"At N = {BIG_N:,} tokens, which of these masks scores the **fewest** (query, key) pairs?",
        "choice",
        lambda: tuple(pairs(make(BIG_N), BIG_N) for _, make in COST_OPTIONS),
        choices=tuple(label for label, _ in COST_OPTIONS),
        value_label="pairs",
        explain=explain,
    )


def _q_gemma_kv() -> Question:
    model = kv.PRESETS["gemma-2-9b"]

    def explain(a):
        local = [w for w in model.windows if w is not None]
        return (f"{len(local)} of {model.layers} layers keep {local[0]:,} tokens instead of {BIG_N:,}: "
                f"{len(local)}/{model.layers} × (1 − {local[0]:,}/{BIG_N:,}) = **{a:.1f}%**. The global layers keep "
                "everything, so the saving can never pass 50%.")

    return Question(
        "gemma-kv",
        "Gemma 2 9B alternates local layers (window 4,096) with global layers; a local layer only keeps the last "
        f"4,096 tokens in its KV cache. At {BIG_N:,} tokens, what **share of the KV cache** does this save against "
        "full attention in every layer? (In %.)",
        "number",
        lambda: 100 * kv.kv_saving(model, BIG_N),
        unit="%",
        # ±1 point: "half the layers, so 50%" (1.6 points off) is the slip the explanation corrects,
        # and nothing above 50% can be right.
        tolerance=1.0,
        explain=explain,
    )


def _q_llama4_hops() -> Question:
    def explain(a):
        return (f"Chunked layers never cross a chunk boundary, however many are stacked; layer {int(a)} is the first "
                "global layer and connects every token to its whole past in one hop.")

    return Question(
        "llama4-hops",
        "Llama 4 Scout repeats: 3 chunked layers (chunks of 8,192 tokens, nothing crosses a chunk boundary), then "
        f"1 global layer. On {BIG_N:,} tokens, after how many layers can the last token first use token **0**?",
        "number",
        lambda: reach.layers_until(stack_of("llama-4-scout", BIG_N), BIG_N, 0, BIG_N - 1),
        explain=explain,
    )


LESSON_2 = Lesson(
    "big-picture",
    "Keeping the big picture",
    "A window loses the far past. Global tokens, random links, sink tokens and global layers bring it back "
    "cheaply: Longformer, BigBird, StreamingLLM, Gemma 2 and Llama 4.",
    (
        Step(
            "Global tokens: a shortcut to everywhere",
            "Encoders such as Longformer read the whole text at once, so their window reaches both ways (a **band**: "
            "|q − k| ≤ W/2). A few **global** tokens are added: a global token attends to every token and every "
            "token attends to it — a full row and a full column in the mask.\n\n"
            "Any two tokens are then at most two hops apart: in through the global token, out again.",
            figure=lambda v: _grid(masks.local_global(v["window"], _globals(v["globals"]), False), 48,
                                   f"Band W = {v['window']} + global tokens {list(_globals(v['globals']))}"),
            controls=(Control("window", "Window W (W/2 each side)", ints(2, 12, 2), 4),
                      Control("globals", "Global tokens (at 0, 16, 32)", ints(0, 3), 1)),
            link=lambda v: link(EXPLORER, pattern="local_global", window=v["window"],
                                global_tokens=",".join(map(str, _globals(v["globals"]))), causal=0, n=48),
            note=lambda v: f"**{pairs(masks.local_global(v['window'], _globals(v['globals']), False), 48):,}** pairs "
                           f"of {48 * 48:,}; without global tokens: "
                           f"{pairs(masks.local_global(v['window'], (), False), 48):,}.",
        ),
        Step(
            "Longformer: the global token as a shortcut",
            "Longformer base has 12 layers with a window of 512 and token 0 ([CLS]) global. Follow the last token "
            "of a 4,096-token text layer by layer: how quickly can information from the far end of the text reach "
            "it? Predict first, then slide.",
            on_paper=(
                ('Predict first, then slide.', 'Predict first, then slide through the layers in the lab.'),
            ),
            figure=lambda v: reach_through("longformer-base", 4096, v["layers"]),
            controls=(Control("layers", "Layers", ints(1, 12), 1),),
            link=lambda v: link(REACH_PAGE, stack="longformer-base", n=4096, layers=12, token=4095, layer=v["layers"]),
            questions=(_q_longformer_hops(),),
            note=lambda v: reach_note("longformer-base", 4096, v["layers"]),
        ),
        Step(
            "BigBird: window, global and random",
            "BigBird groups tokens in blocks and adds, for each block of queries, a few **random** blocks of keys "
            "(drawn once, with a seed). Random links are shortcuts across the text, like the long-range links of a "
            "small-world network; with window and global tokens, the BigBird paper proves such sparse attention "
            "keeps the expressive power of full attention.",
            figure=lambda v: _grid(masks.bigbird(6, (0,), v["random"], v["seed"], 4, 64, False), 64,
                                   f"BigBird: band 6 + token 0 global + {v['random']} random block(s) of 4, seed {v['seed']}"),
            controls=(Control("random", "Random blocks per query block", ints(0, 3), 2),
                      Control("seed", "Seed of the random draws", ints(0, 9), 0)),
            link=lambda v: link(EXPLORER, pattern="bigbird", window=6, global_tokens=0, random_blocks=v["random"],
                                seed=v["seed"], block=4, causal=0, n=64),
            questions=(_q_sparse_cost(),),
            note=lambda v: f"**{pairs(masks.bigbird(6, (0,), v['random'], v['seed'], 4, 64, False), 64):,}** pairs of "
                           f"{64 * 64:,}; the random blocks change with the seed, the window and global token do not.",
        ),
        Step(
            "Attention sinks: keep the first tokens",
            "Trained models put a lot of attention on the very first tokens, whatever they say. Cut them off with a "
            "window and a streaming model falls apart. StreamingLLM keeps the first S tokens (**sinks**) visible "
            "forever next to the window: a thin column on the left of the mask, and a cache of S + W tokens.",
            figure=lambda v: _grid(masks.sinks(v["sinks"], v["window"]), 48,
                                   f"{v['sinks']} sink token(s) + sliding window W = {v['window']}"),
            controls=(Control("sinks", "Sink tokens S", ints(0, 6), 4), Control("window", "Window W", ints(2, 16), 8)),
            link=lambda v: link(EXPLORER, pattern="sinks", sinks=v["sinks"], window=v["window"], n=48),
            note=lambda v: f"Each token keeps at most S + W = {v['sinks'] + v['window']} keys: "
                           f"**{pairs(masks.sinks(v['sinks'], v['window']), 48):,}** pairs at N = 48.",
        ),
        Step(
            "Gemma 2: local and global layers take turns",
            "Gemma 2 alternates a sliding-window layer (W = 4,096) with a full causal layer, 42 layers in all. "
            "The global layer restores the whole context in one hop; the local layers keep half of the KV cache "
            "small. Watch the reach jump at layer 2.",
            on_paper=(
                ('Watch the reach jump at layer 2.', 'The reach jumps at layer 2.'),
            ),
            figure=lambda v: reach_through("gemma-2-9b", BIG_N, v["layers"]),
            controls=(Control("layers", "Layers", ints(1, 42), 6),),
            link=lambda v: link(REACH_PAGE, stack="gemma-2-9b", n=BIG_N, layers=42, token=BIG_N - 1, layer=v["layers"]),
            questions=(_q_gemma_kv(),),
            note=lambda v: reach_note("gemma-2-9b", BIG_N, v["layers"]),
        ),
        Step(
            "Llama 4: chunked layers, with global ones in between",
            "Llama 4 cuts the text into chunks of 8,192 tokens; in a **chunked** layer a token only sees earlier "
            "tokens of its own chunk (q // C == k // C). One layer in four is a full causal (global) layer. "
            "Predict where the reach of the last token jumps, then slide through the layers.",
            on_paper=(
                ('then slide through the layers.', 'then check it in the lab by sliding through the layers.'),
            ),
            figure=lambda v: reach_through("llama-4-scout", BIG_N, v["layers"]),
            controls=(Control("layers", "Layers", ints(1, 48), 3),),
            link=lambda v: link(REACH_PAGE, stack="llama-4-scout", n=BIG_N, layers=48, token=BIG_N - 1, layer=v["layers"]),
            questions=(_q_llama4_hops(),),
            note=lambda v: reach_note("llama-4-scout", BIG_N, v["layers"]),
        ),
    ),
)


# ------------------------------------------------------------ lesson 3 ---
BLOCK_RULES = {
    "sliding": ("Sliding window W = 1,024", masks.sliding_window(1024)),
    "dilated": ("Dilated window W = 2,048, every 2nd key", masks.dilated(2048, 2, True)),
    "strided": ("Strided (Sparse Transformer), stride 128", masks.strided(128)),
}
BLOCK_QUESTION_N = 32768


def _explorer_link(rule: masks.MaskRule, n: int, **view) -> Link:
    params = {k: (",".join(map(str, v)) if isinstance(v, tuple) else int(v) if isinstance(v, bool) else v)
              for k, v in rule.params}
    return link(EXPLORER, pattern=rule.name, n=n, **params, **view)


def _q_blocks() -> Question:
    def explain(values):
        stats = {k: render.mask_stats(rule, BLOCK_QUESTION_N) for k, (_, rule) in BLOCK_RULES.items()}
        listed = "; ".join(f"{label}: {st_.allowed_pairs:,} pairs in {st_.blocks_touched:,} blocks"
                           for (label, _), st_ in zip(BLOCK_RULES.values(), stats.values()))
        best = list(BLOCK_RULES)[values.index(min(values))]
        sparsest = min(stats, key=lambda k: stats[k].allowed_pairs)
        text = f"{listed}. Fewest FLOPs executed: **{BLOCK_RULES[best][0]}**."
        if sparsest != best:
            text += (f" {BLOCK_RULES[sparsest][0]} lets the fewest pairs through, but they are spread over "
                     f"{stats[sparsest].blocks_touched / stats[best].blocks_touched:.1f}× as many blocks "
                     "(a key every 128 positions back lands in every block left of the diagonal). "
                     "A kernel pays for blocks, not pairs.")
        return text

    return Question(
        "block-flops",
        "A block-sparse kernel (FlexAttention) computes every 128 × 128 block of the mask that holds at least one "
        f"allowed pair, in full. At N = {BLOCK_QUESTION_N:,} (head dimension 64), which of these **executes the "
        "fewest FLOPs**?",
        "choice",
        lambda: tuple(render.mask_stats(rule, BLOCK_QUESTION_N).executed_flops_blocks(64) for _, rule in BLOCK_RULES.values()),
        choices=tuple(label for label, _ in BLOCK_RULES.values()),
        value_label="FLOPs executed per head",
        explain=explain,
    )


def bench_file() -> Path | None:
    return next((p for p in BENCH_FILES if p.exists()), None)


def bench_rows(path: Path | None = None) -> list[dict]:
    """The recorded CPU benchmark (attn.bench rows); ValueError when none has been recorded."""
    path = path or bench_file()
    if path is None or not path.exists():
        names = " or ".join(p.name for p in BENCH_FILES)
        raise ValueError(f"No recorded benchmark yet (assets/bench/{names}): record one with "
                         "`python -m attn bench --pattern sliding_window --window 256 --n 256,512,1024,2048,4096 "
                         "--json assets/bench/kernels_cpu.json`.")
    rows = json.loads(path.read_text())
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and "backend" in r for r in rows):
        raise ValueError(f"{path.name} holds no benchmark rows.")
    return rows


BENCH_METRICS = {
    "time_ms": "kernel time (median)",
    "peak_bytes": "peak memory of one call",
    "tflops": "useful vs executed TFLOP/s",
}


def bench_figure(rows: list[dict], metric: str) -> go.Figure:
    """The Benchmark page's figures (attn.bench_figures) for recorded rows, titled with their origin."""
    from . import bench_figures as bf

    origin = bf.device_label(rows)
    if metric == "time_ms":
        return bf.growth_figure(rows, "time_ms", f"Kernel time vs N<br><sup>{origin}</sup>", "median time (ms)")
    if metric == "peak_bytes":
        return bf.growth_figure(rows, "peak_bytes", f"Peak memory vs N<br><sup>{origin}</sup>", "peak memory (MiB)",
                                scale=1 / 2**20)
    if metric == "tflops":
        return bf.throughput_figure(rows, f"Useful vs executed TFLOP/s<br><sup>{origin}</sup>")
    raise ValueError(f"Unknown metric {metric!r}; choose one of {', '.join(BENCH_METRICS)}.")


def bench_note(rows: list[dict]) -> str:
    """How the recorded run was set up, from its rows (CPU timings depend on what else was running)."""
    r = rows[0]
    shape = f"batch {r['batch']}, {r['heads']} heads, head dim {r['head_dim']}, {r['dtype']}, torch {r['torch']}"
    loads = [float(m.group(1)) for x in rows for m in [re.search(r"load average ([0-9.]+)", x.get("note") or "")] if m]
    load = (f" The machine's 1-minute load average was {min(loads):.1f}–{max(loads):.1f} while recording: "
            "other work shared the cores, so read the curves' slopes more than their exact values." if loads else "")
    skipped = sum(x.get("status") != "ok" for x in rows)
    skip = f" {skipped} size(s) did not run (skipped before they could run out of memory or time)." if skipped else ""
    return f"Recorded on {r['device_name']}, {str(r['date'])[:10]}: {shape}; pattern {r['rule']}.{load}{skip}"


MISTRAL = kv.PRESETS["mistral-7b-v0.1"]
SERVING_MODELS = ("mistral-7b-v0.1", "llama-3.1-8b", "gemma-2-9b")
# The Serving Cost page's context choices: powers of two and the halfway points between them, 1k … 1M.
CONTEXTS = tuple(sorted({1 << p for p in range(10, 21)} | {3 << p for p in range(9, 19)}))


def tokens_text(t: int) -> str:
    return f"{t // 1024:,}k" if t % 1024 == 0 else f"{t / 1024:.1f}k"


def _contexts(model: kv.ModelSpec, context: int):
    return cost_figures.context_grid(extra=[context, 2048, *cost_figures.bend_points(model, kv.Design("own"))])


def _q_mistral_saving() -> Question:
    def explain(a):
        w = MISTRAL.windows[0]
        return (f"Every layer keeps {w:,} tokens instead of T: the saving 1 − {w:,}/T reaches 80% when "
                f"T = {w:,} / 0.2 = **{fmt_number(a)}** tokens. Below {w:,} tokens it saves nothing at all.")

    return Question(
        "mistral-80",
        "Mistral 7B v0.1's window of 4,096 caps each layer's KV cache at 4,096 tokens. At what context length does "
        "it **first save 80%** of the KV cache against full attention? (In tokens.)",
        "number",
        lambda: kv.context_for_saving(MISTRAL, 0.8),
        tolerance=0.10,
        relative=True,
        explain=explain,
    )


def _q_llama_kv() -> Question:
    model = kv.PRESETS["llama-3.1-8b"]

    def explain(a):
        per = kv.kv_bytes_per_token_layer(model, "bf16")
        return (f"2 (K and V) × {model.kv_heads} KV heads × {model.head_dim} × 2 bytes = {per:,.0f} bytes per token "
                f"and layer, × {model.layers} layers × {BIG_N:,} tokens = **{a:.3g} GiB** — next to "
                f"{kv.weights_bytes(model) / 2**30:.3g} GiB of weights.")

    return Question(
        "llama-kv",
        f"Llama 3.1 8B (32 layers, 8 KV heads of dimension 128, full attention) in bf16 serves one sequence of "
        f"{BIG_N:,} tokens. How many **GiB** does its KV cache take?",
        "number",
        lambda: kv.kv_bytes(model, BIG_N) / 2**30,
        unit="GiB",
        tolerance=0.10,
        relative=True,
        explain=explain,
    )


# The perplexity sweep runs a real model on the CPU: a short piece of text and a few windows.
SWEEP_TOKENS = (64, 128, 256)
SWEEP_WINDOWS = (8, 16, 32, 64, 128)


def sweep_windows(tokens: int) -> tuple:
    """Windows shorter than the text (a longer one equals full attention), then 'full'."""
    from .model import FULL

    return tuple(w for w in SWEEP_WINDOWS if w < tokens) + (FULL,)


@functools.cache
def _doc_titles() -> dict[str, str]:
    """Sample documents (assets/docs/index.json, as attn.model reads it): name -> title."""
    index = Path(__file__).resolve().parent.parent / "assets" / "docs" / "index.json"
    return {e["name"]: e["title"] for e in json.loads(index.read_text(encoding="utf-8"))}


def _doc_title(name: str) -> str:
    return _doc_titles()[name]


def run_sweep(values: dict, progress: Callable | None = None):
    """Perplexity of the chosen sample document's first tokens under each window (attn.model)."""
    from . import model

    doc = model.sample_doc(values["doc"])
    enc = model.encode(doc.text, values["tokens"])
    return model.window_sweep(enc, sweep_windows(values["tokens"]), progress=progress)


def sweep_figure(values: dict, points) -> go.Figure:
    """The Model Attention page's perplexity-vs-window figure, titled with the document read."""
    from .model import DECODER_NAME
    from .model_figures import sweep_figure as model_sweep_figure

    full = next((p.perplexity for p in points if p.window is None), None)
    fig = model_sweep_figure({"sliding window": [(p.window, p.perplexity) for p in points]}, full, values["tokens"])
    fig.update_layout(title=f"{DECODER_NAME} on “{_doc_title(values['doc'])}”, first {values['tokens']} tokens:<br>"
                            "perplexity under each sliding window (lower is better)", margin=dict(t=70))
    windows = sorted(p.window for p in points if p.window is not None)
    fig.update_xaxes(tickvals=windows, ticktext=[str(w) for w in windows])  # label the windows run, nothing else
    return fig


def sweep_note(values: dict, points) -> str:
    """The sweep in words: each window's perplexity as a multiple of full attention's."""
    full = next((p.perplexity for p in points if p.window is None), None)
    windowed = sorted((p for p in points if p.window is not None), key=lambda p: p.window)
    if full is None or not windowed:
        return ""
    parts = ", ".join(f"W = {p.window}: {p.perplexity:.1f} ({p.perplexity / full:.1f}×)" for p in windowed)
    return (f"Full attention: perplexity **{full:.1f}**. {parts}. Only the first {values['tokens']} tokens were read, so "
            "this is short-range memory; the document's long-range links (hundreds to thousands of tokens) need "
            "more tokens — try them on the Model Attention page.")


LESSON_3 = Lesson(
    "cost-and-quality",
    "What it costs and what it breaks",
    "What a sparse mask really saves — in kernel time, in KV-cache memory on real GPUs — and what it costs a real "
    "language model that reads a text through a window.",
    (
        Step(
            "Kernels compute blocks, not pairs",
            "GPUs work on tiles. A block-sparse kernel such as FlexAttention cuts the mask into 128 × 128 blocks (its "
            "default on a GPU; this lab uses 64 × 64 on a CPU) and "
            "skips a block only if **none** of its pairs is allowed; any other block is computed in full. Here every "
            "cell is one block, coloured by the share of its pairs that are useful.\n\n"
            "So the pairs a mask allows (useful work) and the work the kernel executes can be far apart. The link "
            "opens the Mask Explorer's kernel-blocks view, which also tells the **full** blocks (computed without "
            "calling the mask rule) from the **partial** ones (masked pair by pair).",
            figure=lambda v: lf.blocks_figure(BLOCK_RULES[v["pattern"]][1], v["n"], BLOCK_RULES[v["pattern"]][0]),
            controls=(Control("pattern", "Pattern", tuple(BLOCK_RULES), "sliding", fmt=lambda k: BLOCK_RULES[k][0]),
                      Control("n", "Tokens N", (2048, 4096, 8192), 4096, fmt=lambda x: f"{x:,}")),
            link=lambda v: _explorer_link(BLOCK_RULES[v["pattern"]][1], v["n"], draw="blocks"),
            questions=(_q_blocks(),),
            note=lambda v: lf.blocks_note(BLOCK_RULES[v["pattern"]][1], v["n"]),
        ),
        Step(
            "Measured: time and memory on a CPU",
            "Masked attention timed for real, through four backends. Three compute the same mask: **naive** (the "
            "textbook code: an N × N score matrix, masked, softmax), **sdpa_mask** (PyTorch's fused kernel with a "
            "dense boolean mask) and **flex** (FlexAttention with a block mask built from the rule). The fourth, "
            "**sdpa_causal**, runs the fused kernel on the plain causal mask: the cost of attending to the whole "
            "past, which a sparse mask should beat. Times are medians after warm-up; "
            "the title says where and when they were recorded.",
            figure=lambda v: bench_figure(bench_rows(), v["metric"]),
            note=lambda v: bench_note(bench_rows()),
            controls=(Control("metric", "Show", tuple(BENCH_METRICS), "time_ms", fmt=BENCH_METRICS.get),),
            link=lambda v: link(BENCH_PAGE),
        ),
        Step(
            "KV cache: the window caps the memory",
            "While generating, a model keeps the keys and values of past tokens (the **KV cache**) for every layer. "
            "Full attention keeps all T tokens; a sliding window only needs the last W, so the cache stops growing "
            "at W. Move the context length along the curves. The two flat dotted lines are for scale: linear "
            "attention and Mamba layers keep a fixed-size state instead of a cache, whatever the context.",
            on_paper=(
                ('Move the context length along the curves.', 'The dots mark the context length chosen for this handout.'),
            ),
            figure=lambda v: cost_figures.kv_figure(MISTRAL, kv.Design("own"), v["ctx"], 1, "bf16",
                                                    _contexts(MISTRAL, v["ctx"])),
            controls=(Control("ctx", "Context (tokens)", CONTEXTS, 8192, fmt=tokens_text),),
            link=lambda v: link(COST_PAGE, model="mistral-7b-v0.1", ctx=v["ctx"], batch=1, design="own"),
            questions=(_q_mistral_saving(),),
            note=lambda v: f"At {v['ctx']:,} tokens the window saves **{kv.kv_saving(MISTRAL, v['ctx']):.0%}** of "
                           "Mistral 7B's KV cache.",
        ),
        Step(
            "Will it fit on the GPU?",
            "GPU memory must hold the weights and the KV cache. The weights are fixed; the cache grows with the "
            "context (and with every extra user in a batch). Compare a windowed model (Mistral 7B v0.1), a hybrid "
            "(Gemma 2) and full attention (Llama 3.1 8B) against real GPU sizes.",
            figure=lambda v: cost_figures.vram_figure(kv.PRESETS[v["model"]], kv.Design("own"), v["ctx"], 1, "bf16",
                                                      "bf16", 0, _contexts(kv.PRESETS[v["model"]], v["ctx"])),
            controls=(Control("model", "Model", SERVING_MODELS, "mistral-7b-v0.1", fmt=lambda k: kv.PRESETS[k].title),
                      Control("ctx", "Context (tokens)", CONTEXTS, 32768, fmt=tokens_text)),
            link=lambda v: link(COST_PAGE, model=v["model"], ctx=v["ctx"], batch=1, design="own"),
            questions=(_q_llama_kv(),),
            note=lambda v: f"{kv.PRESETS[v['model']].title} at {v['ctx']:,} tokens: KV cache "
                           f"**{kv.size_text(kv.kv_bytes(kv.PRESETS[v['model']], v['ctx']))}**, weights "
                           f"{kv.size_text(kv.weights_bytes(kv.PRESETS[v['model']]))} (bf16).",
        ),
        Step(
            "What a window breaks: a real model's perplexity",
            "Cheaper is only half the story. Here a real language model, SmolLM2-135M-Instruct (trained with full causal "
            "attention), reads the start of a sample document through sliding windows of different sizes. "
            "**Perplexity** measures how surprised it is by each next token (lower is better).\n\n"
            "Running the model takes a while on a CPU, so it runs when you press the button.",
            on_paper=(
                ('so it runs when you press the button.', 'so in the lab it runs when you press the button.'),
            ),
            controls=(Control("doc", "Sample document", tuple(_doc_titles()), "story", fmt=_doc_title),
                      Control("tokens", "Tokens of the document", SWEEP_TOKENS, 256)),
            link=lambda v: link(MODEL_PAGE, doc=v["doc"], tokens=v["tokens"], view="Window sweep"),
            run=run_sweep,
            result_figure=sweep_figure,
            result_note=sweep_note,
            run_label="Run the model",
        ),
    ),
)


LESSONS: dict[str, Lesson] = {l.id: l for l in (LESSON_1, LESSON_2, LESSON_3)}
LESSON_IDS = tuple(LESSONS)


def get_lesson(lesson_id: str) -> Lesson:
    if lesson_id not in LESSONS:
        raise ValueError(f"Unknown lesson '{str(lesson_id)[:30]}'; choose one of: {', '.join(LESSON_IDS)}.")
    return LESSONS[lesson_id]


# ------------------------------------------------------------------ URL state ---
def parse_lesson(text: str) -> str:
    if text not in LESSONS:
        raise ValueError(f"unknown lesson '{str(text)[:30]}'.")
    return text


def _peek(query, key):
    v = query.get(key)
    return v[-1] if isinstance(v, (list, tuple)) and v else v


def url_parsers(query) -> dict:
    """Parsers for a Lessons URL: the lesson, its step, and that step's controls. The lesson and
    step are peeked at leniently to know which controls to expect; every value is then validated."""
    raw = _peek(query, "lesson")
    lesson = LESSONS.get(raw) if isinstance(raw, str) else None
    lesson = lesson or LESSONS[LESSON_IDS[0]]
    try:
        step_no = parse_bounded_int(_peek(query, "step") or "1", "Step", 1, len(lesson.steps))
    except ValueError:
        step_no = 1
    out = {
        "lesson": parse_lesson,
        "step": lambda t, n=len(lesson.steps): parse_bounded_int(t, "Step", 1, n),
    }
    for c in lesson.steps[step_no - 1].controls:
        out[c.name] = c.parse
    return out


# Every control's URL name in any step: a link may carry another step's controls, which are no mistake.
URL_CONTROL_NAMES = frozenset(c.name for lesson in LESSONS.values() for step in lesson.steps for c in step.controls)


def url_params(lesson_id: str, step_no: int, values: dict) -> dict:
    """What the URL holds for a view: lesson, step (1-based) and the step's control values."""
    step = get_lesson(lesson_id).steps[step_no - 1]
    return {"lesson": lesson_id, "step": step_no, **step.values(values)}


# ------------------------------------------------------------------ handout ---
_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)"), r'<a href="\2">\1</a>'),
]


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, repl in _INLINE:
        out = pattern.sub(repl, out)
    return out


def md_to_html(text: str) -> str:
    """The Markdown the lessons use, as HTML: paragraphs, '- ' lists, **bold**, *italic*, `code`, links.
    Text is escaped first, so nothing in it can inject markup."""
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [l.strip() for l in block.splitlines() if l.strip()]
        if lines and all(l.startswith("- ") for l in lines):
            blocks.append("<ul>" + "".join(f"<li>{_inline(l[2:])}</li>" for l in lines) + "</ul>")
        elif lines:
            blocks.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(blocks)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1a1a1a; line-height: 1.5; }
h1 { margin-bottom: 0.2rem; } .summary { font-size: 1.1rem; color: #333; }
section.step { border-top: 2px solid #ddd; margin-top: 2rem; padding-top: 1rem; }
.settings, .meta { color: #555; font-size: 0.9rem; }
.question { border: 1px solid #999; border-radius: 6px; padding: 0.6rem 1rem; margin: 1rem 0; background: #fafafa; }
.space { border-bottom: 1px solid #666; height: 2.2rem; margin: 0.4rem 0 0.6rem; }
.choice { margin: 0.2rem 0; } .answers li { margin-bottom: 0.8rem; }
code { background: #f0f0f0; padding: 0 0.2rem; border-radius: 3px; }
@media print { section.step { page-break-inside: avoid; } }
"""


def _settings_text(step: Step, values: dict) -> str:
    return " · ".join(f"{c.label}: {c.fmt(values[c.name])}" for c in step.controls)


def handout_html(lesson: Lesson, values: dict | None = None, results: dict | None = None,
                 plotly_js: str | None = None) -> str:
    """The lesson as one self-contained HTML page: every step's text and figure (interactive Plotly,
    plotly.js inlined once so it opens offline), the questions with room to answer, and the answers,
    computed by the library, at the end.

    values: {step index (0-based): control values} (defaults elsewhere); results: {step index: the
    result of a slow step's run} — a slow step without one explains how to run it in the app.
    """
    import plotly.io as pio

    if plotly_js is None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    values, results = values or {}, results or {}
    parts = []
    q_no = 0
    for i, step in enumerate(lesson.steps):
        v = step.values(values.get(i))
        body = [f'<section class="step" id="step-{i + 1}">',
                f"<h2>Step {i + 1} of {len(lesson.steps)}: {html.escape(step.title)}</h2>", md_to_html(step.paper_text)]
        if step.controls:
            body.append(f'<p class="settings">Figure settings: {html.escape(_settings_text(step, v))}</p>')
        if step.slow and i not in results:
            body.append(f"<p><em>This figure comes from running a real model. Open the lesson in the app and press "
                        f"“{html.escape(step.run_label)}” to compute it (it takes a minute on a CPU).</em></p>")
        else:
            try:
                fig = step.build_figure(v, results.get(i))
            except ValueError as e:  # e.g. no recorded benchmark on this installation: say so, in place
                body.append(f"<p><em>No figure: {html.escape(str(e))}</em></p>")
            else:
                # Outside Streamlit nothing widens the margins for tick labels: let plotly do it.
                fig.update_xaxes(automargin=True)
                fig.update_yaxes(automargin=True)
                body.append(pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=f"figure-{i + 1}",
                                        config={"displaylogo": False, "responsive": True}))
                note = step.note_for(v, results.get(i))
                if note:
                    body.append(md_to_html(note))
        for q in step.questions:
            q_no += 1
            body.append(f'<div class="question"><p><strong>Question {q_no}.</strong> {_inline(q.prompt)} '
                        f"<em>({html.escape(q.tolerance_text())})</em></p>")
            if q.kind == "choice":
                body += [f'<p class="choice">☐ {html.escape(c)}</p>' for c in q.choices]
            else:
                body.append('<p>Your prediction:</p><div class="space"></div>')
            body.append('<p>Why:</p><div class="space"></div></div>')
        body.append("</section>")
        parts.append("\n".join(body))
    answers = []
    for q in lesson.questions:
        a = html.escape(answer_text(q))
        sol = solve(q)
        why = md_to_html(q.explain(sol)) if q.explain else ""
        listed = ("<ul>" + "".join(f"<li>{html.escape(label)}: {html.escape(v)}</li>" for label, v in option_values(q, sol))
                  + "</ul>") if q.kind == "choice" else ""
        answers.append(f"<li><p><strong>{a}</strong></p>{listed}{why}</li>")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(lesson.title)} — Attention Mask Lab handout</title>",
        f"<style>{_CSS}</style>",
        f'<script type="text/javascript">{plotly_js}</script>',
        "</head>",
        "<body>",
        f"<h1>{html.escape(lesson.title)}</h1>",
        f'<p class="summary">{_inline(lesson.summary)}</p>',
        '<p class="meta">A handout from Attention Mask Lab. Every figure and answer was computed by the lab\'s '
        "library from the same mask rules the app runs. Predict first, then check the answers at the end.</p>",
        *parts,
        '<section class="step" id="answers">',
        "<h2>Answers</h2>",
        '<ol class="answers">',
        *answers,
        "</ol>",
        "</section>",
        "</body>",
        "</html>",
    ])
