"""Every page fuzzed with hostile URL parameters and edge widget values (AppTest, no browser).

A link or a widget value must never crash a page. A refused URL value gives the notice
"Ignored URL parameter <key>: …" (app-wide keys: a toast) and its widget keeps its default; an
accepted value gives no such notice; an unknown key is ignored without a word; an invalid setting
gives an st.error / st.warning / st.info beside it; every bounded widget holds a value inside its
bounds; and no run ends in an exception or shows a traceback.

Which texts each key must refuse is written here from the rules the pages document (whole
numbers in a range, exact choices, 1/0 flags, comma lists, free text), not taken from the pages'
own parsers, so a parser that starts accepting junk (or refusing good values) fails here.
Texts whose reading is a matter of taste (full-width or Arabic-Indic digits, "+5", "1_0") are
"any": only the no-crash and bounds checks apply to them.

Cases come from random.Random with fixed seeds: the same cases on every run, and a failing case's
id names its page and number. The Model Attention cases run the real SmolLM2-135M on the CPU with
16–64 tokens (as tests/test_app_model.py does, they are not marked `gpu` and run in CI); the
values that would make the page read 256 tokens (a refused `tokens`) are sent with a view that
runs no forward pass.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` run as a script (not `python -m pytest`): the pages import ui, attn
    sys.path.insert(0, str(ROOT))

from attn import kernels, kv, lessons, limits, model, reach  # noqa: E402
from attn.masks import MAX_N  # noqa: E402
from attn.presets import PARAMS, PATTERN_INFO, PICKABLE, STACK_PRESETS  # noqa: E402
from attn.state import INT_MAX  # noqa: E402

APP = ROOT / "app.py"
PAGES = ROOT / "app_pages"
MODEL_CASE = pytest.mark.timeout(600)  # the first case loads the model (about 5 s here, 30 s on a first install)
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "/')


# ------------------------------------------------------------------ running pages ---
def open_page(name: str, query: dict, timeout: int = 300) -> AppTest:
    """Home and Lessons run inside app.py (their page links need the navigation); the others alone."""
    if name in ("home", "lessons"):
        at = AppTest.from_file(str(APP), default_timeout=timeout)
        at.query_params.update(query)
        if name == "lessons":
            at.switch_page(str(PAGES / "lessons.py"))
    else:
        at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=timeout)
        at.query_params.update(query)
    return at.run()


def shown(at: AppTest) -> list[str]:
    out = []
    for elements in (at.markdown, at.caption, at.error, at.warning, at.info, at.success, at.code, at.toast):
        out += [str(e.value) for e in elements]
    return out


def brief(query) -> dict:
    return {k: (v[:40] + f"…({len(v)})" if isinstance(v, str) and len(v) > 40 else v) for k, v in query.items()}


def check_clean(at: AppTest, case) -> None:
    """No exception, no traceback text, every bounded widget inside its bounds."""
    if at.exception:
        e = at.exception[0]
        pytest.fail(f"{case}: exception {e.value!r}\n" + "\n".join(e.stack_trace[-6:]), pytrace=False)
    for text in shown(at):
        assert not any(m in text for m in TRACEBACK_MARKS), f"{case}: traceback shown: {text[:300]}"
    for w in at.number_input:
        if w.value is not None:
            assert (w.min is None or w.value >= w.min) and (w.max is None or w.value <= w.max), \
                f"{case}: number input {w.key} = {w.value} outside {w.min}..{w.max}"
    for w in at.slider:
        values = w.value if isinstance(w.value, (tuple, list)) else (w.value,)
        assert all(w.min <= v <= w.max for v in values), f"{case}: slider {w.key} = {w.value} outside {w.min}..{w.max}"


def notices(at: AppTest, toasts: bool = False) -> list[str]:
    return [str(w.value) for w in (at.toast if toasts else at.warning)]


def refused_keys(texts: list[str]) -> set[str]:
    prefix = "Ignored URL parameter "
    return {t[len(prefix):].split(":", 1)[0] for t in texts if t.startswith(prefix)}


def hinted_keys(texts: list[str]) -> set[str]:
    prefix = "Unknown URL parameter '"
    return {t[len(prefix):].split("' was ignored", 1)[0] for t in texts if t.startswith(prefix)}


# ------------------------------------------------------------------ hostile values ---
NOT_A_NUMBER = [
    "", " ", "\t\n", "x", "1.5", "1e3", "nan", "inf", "-inf", "-", "--5", "0x10", "1_000", "1,2", "1,,x", ",,,",
    "1;;2", "None", "[1]", "²", "\u202e12", "12\u202e", "😀", "\x00", "' OR 1=1 --", "'; DROP TABLE masks;--",
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "%00%ff", "%2C%2C1", "%", "{{7*7}}", "${n}",
    "x" * 10_000, "1" * 13, str(10**30), "-" + str(10**30),
]
ODD_DIGITS = ["５", "٣", "１２", "+5", "٣٢"]  # full-width / Arabic-Indic digits, explicit sign: "any"
JUNK_TEXT = [
    "", " ", "\u202e", "x" * 10_000, "__import__('os')", "q >= k and", "<script>alert(1)</script>", "' OR 1=1 --",
    "%2e%2e%2f", "1,,x", "😀" * 50, "\x00", "a | | b", "sliding_window window=10**30", "causal |", "{{7*7}}",
]
UNKNOWN_KEYS = ["utm_source", "__proto__", "N", "n ", "x" * 200, "<b>k</b>", "fbclid", "%2e", "ns[]", "😀"]
NEAR_MISSES = {"N", "n "}  # of UNKNOWN_KEYS, the only ones that look like a page's key ("n"): a hint is allowed


@dataclass(frozen=True)
class Int:
    """A whole number lo..hi written in plain ASCII digits. `ok_hi` caps the accepted values drawn
    (keeps the run light); `skip` are numbers never drawn (a known bug, tested on its own);
    `odd`: also draw the "any" texts (other digits, "+5")."""

    lo: int
    hi: int
    ok_hi: int | None = None
    skip: tuple = ()
    odd: bool = True

    def lists(self, rng):
        top = min(self.hi, self.ok_hi if self.ok_hi is not None else self.hi)
        above = next(v for v in range(self.hi + 1, self.hi + 10**6) if v not in self.skip)
        ok = [str(self.lo), str(top), f"  {rng.randint(self.lo, top)} ", str(rng.randint(self.lo, top)), f"00{self.lo}"]
        refused = [str(above), str(self.lo - 1), str(self.lo - 10**6), *NOT_A_NUMBER]
        odd = [t for t in ODD_DIGITS if self.odd and as_int(t) not in self.skip]
        return ok, refused, odd


def as_int(text):
    try:
        return int(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Float:
    lo: float
    hi: float

    def lists(self, rng):
        ok = [str(self.lo), str(self.hi), f" {(self.lo + self.hi) / 2} ", f"{self.hi:e}"]
        refused = ["nan", "-nan", "inf", "-inf", "1e400", str(self.hi * 2 + 1), str(self.lo - 1), "", " ", "x", "0x10",
                   "1,5", "1.2.3", "<script>", "x" * 10_000, "\u202e1"]
        return ok, refused, ["1_0", "٣", "５"]


@dataclass(frozen=True)
class Choice:
    """One of `options`, exactly as written (`strip`: surrounding spaces allowed)."""

    options: tuple
    strip: bool = False

    def lists(self, rng):
        opts = [str(o) for o in self.options]
        o = rng.choice(opts)
        padded = [f" {o}", f"{o} ", f"{o}\t"]
        variants = [v for v in (o.upper(), o.title(), o + "x", o[:-1]) if v not in opts]
        refused = [*variants, "", "none", *rng.sample(NOT_A_NUMBER, 6), *([] if self.strip else padded)]
        return [o, rng.choice(opts), *(padded if self.strip else [])], refused, []


@dataclass(frozen=True)
class Flag:
    def lists(self, rng):
        ok = ["1", "0", "true", "FALSE", " yes ", "No"]
        refused = ["", "2", "-1", "on", "off", "y", "١", "nan", "x" * 10_000, "<script>", "1,0", "%31", "1\x00"]
        return ok, refused, ["１"]


@dataclass(frozen=True)
class IntList:
    """Comma (or ';') separated whole numbers ≥ minimum, at most 7 digits, at most 64 items; empty items skipped."""

    minimum: int

    def lists(self, rng):
        m = self.minimum
        ok = ["", ",,,", f"{m}, {m + 5}", f"{m + 1};{m + 2}", f" {m + 3} ,{m + 4}, ", "9999999",
              ",".join(str(m + i) for i in range(64))]
        refused = ["1,,x", str(m - 1), "1.5", "99999999", ",".join(["1"] * 65), "1 2", "0x1", "nan", "<script>",
                   "x" * 10_000, "--1", "1,-", "\u202e1"]
        return ok, refused, ["٣", "５,６"]


@dataclass(frozen=True)
class ChoiceList:
    """Comma separated choices, each exactly as written; empty items skipped."""

    options: tuple

    def lists(self, rng):
        opts = [str(o) for o in self.options]
        a, b = rng.choice(opts), rng.choice(opts)
        ok = ["", f"{a}", f"{a},{b}" if a != b else a, f",{a},,", ",".join(opts)]
        refused = [f"{a}, {b}", f"{a},zzz", " " + a, "1,,x", "x" * 10_000, "<script>", "*", a.upper() + "x"]
        return ok, refused, [f"{a},{a}"]  # a repeated choice: accepted, shown twice


@dataclass(frozen=True)
class Text:
    def lists(self, rng):
        return JUNK_TEXT, [], []  # any text is taken; the page checks it when it is used


def sample(spec, rng):
    """(value, verdict): a good value ("ok"), a value to refuse ("refused"), or an "any" text."""
    ok, refused, odd = spec.lists(rng)
    r = rng.random()
    if r < 0.35 or not refused:
        return rng.choice(ok), "ok"
    if r < 0.9 or not odd:
        return rng.choice(refused), "refused"
    return rng.choice(odd), "any"


# ------------------------------------------------------------------ the pages' keys ---
def view_keys(n_min: int = 8, n_ok_hi: int = 512) -> dict:
    """attn.state.decode_view: N, two flags, and pattern A / pattern B ("b_") with every parameter."""
    kind = {"int": lambda s: Int(s.minimum, INT_MAX.get(s.name, MAX_N)), "bool": lambda s: Flag(),
            "int_list": lambda s: IntList(s.minimum), "text": lambda s: Text()}
    keys = {"n": Int(n_min, MAX_N, ok_hi=n_ok_hi), "compare": Flag(), "labels": Flag()}
    for prefix in ("", "b_"):
        keys[prefix + "pattern"] = Choice(tuple(PICKABLE))
        keys |= {prefix + name: kind[spec.kind](spec) for name, spec in PARAMS.items()}
    return keys


STACKS = ("pattern", *STACK_PRESETS, "custom")
REACH_KEYS = view_keys() | {
    "stack": Choice(STACKS), "custom": Text(), "layers": Int(1, reach.MAX_LAYERS), "token": Int(0, MAX_N - 1, ok_hi=600),
    "layer": Int(1, reach.MAX_LAYERS), "src": Int(0, MAX_N - 1, ok_hi=600),
}
ON_GPU = torch.cuda.is_available()
BENCH_NS = tuple(n for n in (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
                 if ON_GPU or n <= limits.BENCH_CPU_MAX_N)
BENCH_KEYS = view_keys() | {
    "ns": ChoiceList(BENCH_NS), "heads": Int(1, limits.BENCH_MAX_HEADS), "kvh": Int(1, limits.BENCH_MAX_HEADS),
    "hd": Choice((32, 64, 128)), "dtype": Choice(("bfloat16", "float16", "float32") if ON_GPU else ("float32",)),
    "backends": ChoiceList(tuple(kernels.BACKENDS)), "docs": Int(1, 64),
}
CONTEXTS = tuple(sorted({1 << p for p in range(10, 21)} | {3 << p for p in range(9, 19)}))
COST_KEYS = {
    "model": Choice((*kv.PRESETS, "custom")), "ctx": Choice(CONTEXTS), "batch": Int(1, kv.MAX_BATCH),
    "wdtype": Choice(kv.WEIGHT_DTYPES), "kvdtype": Choice(kv.KV_DTYPES), "design": Choice(kv.DESIGN_KINDS),
    "window": Int(1, kv.MAX_CONTEXT), "every": Int(0, kv.MAX_LAYERS), "sinks": Int(0, kv.MAX_CONTEXT),
    "chunk": Int(1, kv.MAX_CONTEXT), "overhead": Float(0.0, 64.0), "c_layers": Int(1, kv.MAX_LAYERS),
    "c_qh": Int(1, kv.MAX_HEADS), "c_kvh": Int(1, kv.MAX_HEADS), "c_hd": Int(1, kv.MAX_HEAD_DIM),
    "c_params": Float(0.001, 10000.0), "c_windows": Text(),
}
# The home page's window slider runs 1..16; 17..48 crash it (test_home_window_above_the_slider_crashes).
HOME_KEYS = {"w": Int(1, 16), "layers": Int(1, 12)}
APP_KEYS = {"present": Choice(("1", "0")), "img_fmt": Choice(("png", "svg"))}  # app.py: notices as toasts
LIM = model.limits()
DOCS = tuple(d.name for d in model.sample_docs())
SECTIONS = ("Attention maps", "Loss per token", "Window sweep", "Retrieval", "Influence vs reach", "Continuation",
            "Encoder (bidirectional)")
MODEL_KEYS = view_keys(n_min=16) | {
    "doc": Choice((*DOCS, "paste")), "tokens": Int(16, LIM.loss_tokens, ok_hi=64), "stack": Choice(STACKS),
    "custom": Text(), "view": Choice(SECTIONS), "layer": Int(0, 29), "head": Int(0, 8),
    "target_tok": Int(1, LIM.loss_tokens - 1),
}


@dataclass
class Case:
    query: dict = field(default_factory=dict)
    verdict: dict = field(default_factory=dict)  # key -> "ok" / "refused" / "any"

    def put(self, rng, key, spec, dup: float = 0.15):
        value, verdict = sample(spec, rng)
        if rng.random() < dup:  # a repeated key: the last value counts
            value = [rng.choice(NOT_A_NUMBER[:20]), value]
        self.query[key], self.verdict[key] = value, verdict

    def unknown(self, rng, known, count=1):
        for key in rng.sample([k for k in UNKNOWN_KEYS if k not in known], count):
            self.query[key] = rng.choice(JUNK_TEXT)


def draw(rng, keys: dict, k: int, focus=()) -> Case:
    """k random keys of the page (plus the `focus` keys), each with a hostile or good value, and an unknown key."""
    case = Case()
    for key in [*focus, *rng.sample(sorted(set(keys) - set(focus)), k)]:
        case.put(rng, key, keys[key])
    case.unknown(rng, keys)
    return case


def pattern_case(rng, keys: dict, k: int) -> Case:
    """Usually a valid pattern with all its parameters fuzzed (so the build sees hostile accepted values)."""
    case = draw(rng, keys, k)
    if rng.random() < 0.7:
        pattern = rng.choice(PICKABLE)
        case.query["pattern"], case.verdict["pattern"] = pattern, "ok"
        for name in PATTERN_INFO[pattern].params:
            case.put(rng, name, keys[name], dup=0)
    return case


def check_notices(at: AppTest, case: Case, label: str, app_keys=()) -> None:
    """A notice for exactly the refused keys; none for accepted or unknown keys, except a
    "did you mean" hint, which only a near miss of a real key may get."""
    page_refused = refused_keys(notices(at))
    toast_refused = refused_keys(notices(at, toasts=True))
    for key, verdict in case.verdict.items():
        got = key in (toast_refused if key in app_keys else page_refused)
        value = case.query[key][-1] if isinstance(case.query[key], list) else case.query[key]
        if verdict == "refused":
            assert got, f"{label}: {key}={value[:60]!r} should be refused with a notice; notices: {notices(at)}"
        elif verdict == "ok":
            assert not got, f"{label}: {key}={value[:60]!r} is valid but was refused: {notices(at)}"
    unknown = set(case.query) - set(case.verdict)
    assert not (unknown & (page_refused | toast_refused)), f"{label}: unknown keys got notices"
    hinted = hinted_keys(notices(at))
    assert hinted <= unknown & NEAR_MISSES, f"{label}: hints for {hinted - NEAR_MISSES}: {notices(at)}"


def run_case(page: str, case: Case, label: str, title: str, app_keys=()) -> AppTest:
    at = open_page(page, case.query)
    where = f"{label} {brief(case.query)}"
    check_clean(at, where)
    check_notices(at, case, where, app_keys)
    assert at.title and at.title[0].value == title, f"{where}: page did not draw its title"
    return at


# ------------------------------------------------------------------ URL fuzz ---
@pytest.mark.parametrize("i", range(6))
def test_url_fuzz_home(i):
    rng = random.Random(f"home-{i}")
    case = draw(rng, HOME_KEYS | APP_KEYS, 2, focus=("w", "layers"))
    run_case("home", case, f"home-{i}", "Attention Mask Lab", app_keys=APP_KEYS)


@pytest.mark.parametrize("i", range(8))
def test_url_fuzz_lessons(i):
    rng = random.Random(f"lessons-{i}")
    case = Case()
    case.put(rng, "lesson", Choice(tuple(lessons.LESSON_IDS)) if rng.random() < 0.3 else Choice((rng.choice(lessons.LESSON_IDS),)))
    last = lambda v: v[-1] if isinstance(v, list) else v  # noqa: E731
    lesson = lessons.LESSONS.get(last(case.query["lesson"])) if case.verdict["lesson"] == "ok" else None
    lesson = lesson or lessons.LESSONS[lessons.LESSON_IDS[0]]
    case.put(rng, "step", Int(1, len(lesson.steps), odd=False))  # the step decides which controls are read
    step = int(last(case.query["step"]).strip()) if case.verdict["step"] == "ok" else 1
    for c in lesson.steps[step - 1].controls:  # the controls the link is read for
        case.put(rng, c.name, Choice(tuple(c.options), strip=True))
    case.unknown(rng, {"lesson", "step", *(c.name for s in lesson.steps for c in s.controls)})
    at = run_case("lessons", case, f"lessons-{i}", "Lessons")
    assert at.session_state["lesson"] in lessons.LESSONS and 1 <= at.session_state["step"] <= len(lesson.steps)


@pytest.mark.parametrize("i", range(12))
def test_url_fuzz_mask_explorer(i):
    rng = random.Random(f"explorer-{i}")
    case = pattern_case(rng, view_keys(), 6)
    run_case("mask_explorer", case, f"explorer-{i}", "Mask Explorer")


@pytest.mark.parametrize("i", range(8))
def test_url_fuzz_receptive_field(i):
    rng = random.Random(f"reach-{i}")
    case = pattern_case(rng, REACH_KEYS, 6)
    if rng.random() < 0.5:  # a custom stack with hostile rules
        case.query["stack"], case.verdict["stack"] = "custom", "ok"
        case.put(rng, "custom", Text(), dup=0)
    case.query.setdefault("n", "96")  # keeps the reach matrix and the 64-layer search light
    case.verdict.setdefault("n", "ok")
    run_case("receptive_field", case, f"reach-{i}", "Receptive Field")


@pytest.mark.parametrize("i", range(5))
def test_url_fuzz_benchmark(i):
    rng = random.Random(f"bench-{i}")
    case = pattern_case(rng, BENCH_KEYS, 4)
    for key in ("ns", "heads", "kvh", "backends", "docs"):
        case.put(rng, key, BENCH_KEYS[key])
    run_case("benchmark", case, f"bench-{i}", "Benchmark")


@pytest.mark.parametrize("i", range(10))
def test_url_fuzz_serving_cost(i):
    rng = random.Random(f"cost-{i}")
    focus = ("model",) if i % 2 else ()
    case = draw(rng, COST_KEYS, 7, focus=focus)
    if i % 2:  # half the cases open the custom model, whose c_* keys are then used
        case.query["model"], case.verdict["model"] = "custom", "ok"
    run_case("serving_cost", case, f"cost-{i}", "Serving Cost")


@MODEL_CASE
@pytest.mark.parametrize("i", range(5))
def test_url_fuzz_model_attention_no_forward(i):
    """Every key fuzzed, `tokens` included; the Window sweep view runs no forward pass before its button."""
    rng = random.Random(f"model-light-{i}")
    case = pattern_case(rng, MODEL_KEYS, 6)
    case.put(rng, "tokens", MODEL_KEYS["tokens"])
    case.query["view"], case.verdict["view"] = "Window sweep", "ok"
    at = run_case("model_attention", case, f"model-light-{i}", "Model Attention")
    assert not at.get("plotly_chart")  # nothing ran


@MODEL_CASE
@pytest.mark.parametrize("i", range(3))
def test_url_fuzz_model_attention_forward(i):
    """Fuzzed keys with a real forward (maps, loss or influence) on 16–48 tokens."""
    rng = random.Random(f"model-forward-{i}")
    case = pattern_case(rng, MODEL_KEYS, 5)
    for key in ("tokens", "view", "doc"):
        case.query.pop(key, None)
        case.verdict.pop(key, None)
    case.query |= {"tokens": str(16 * (i + 1)), "doc": DOCS[i % len(DOCS)],
                   "view": ("Attention maps", "Loss per token", "Influence vs reach")[i]}
    for key in ("layer", "head", "target_tok"):
        case.put(rng, key, MODEL_KEYS[key])
    run_case("model_attention", case, f"model-forward-{i}", "Model Attention")


FIRST_LESSON = lessons.LESSONS[lessons.LESSON_IDS[0]]
EVERY_KEY = {  # page: (its URL keys, its title)
    "home": (HOME_KEYS | APP_KEYS, "Attention Mask Lab"),
    "lessons": ({"lesson": Choice(tuple(lessons.LESSON_IDS)), "step": Int(1, len(FIRST_LESSON.steps), odd=False)}
                | {c.name: Choice(tuple(c.options), strip=True) for c in FIRST_LESSON.steps[0].controls}, "Lessons"),
    "mask_explorer": (view_keys(), "Mask Explorer"),
    "receptive_field": (REACH_KEYS, "Receptive Field"),
    "benchmark": (BENCH_KEYS, "Benchmark"),
    "serving_cost": (COST_KEYS, "Serving Cost"),
    "model_attention": ({k: v for k, v in MODEL_KEYS.items() if k != "tokens"}, "Model Attention"),
}


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("page", [pytest.param(p, marks=MODEL_CASE) if p == "model_attention" else p for p in EVERY_KEY])
def test_url_every_key_refused(page, offset):
    """Every key the page reads at once, each with a value it must refuse (the hostile catalogue in turn;
    offset 1 repeats each key, the refused value last), plus unknown keys: a notice per key, and the
    page at its defaults, which are valid (no error)."""
    keys, title = EVERY_KEY[page]
    rng = random.Random(f"every-{page}-{offset}")
    case = Case()
    for idx, (key, spec) in enumerate(sorted(keys.items())):
        ok, refused, _ = spec.lists(rng)
        if refused:  # free text has nothing to refuse
            value = refused[(idx * 7 + offset * 3) % len(refused)]
            case.query[key], case.verdict[key] = ([rng.choice(ok), value] if offset else value), "refused"
    if page == "model_attention":
        case.query["tokens"], case.verdict["tokens"] = "16", "ok"  # the default view runs the model: keep it small
    case.unknown(rng, keys, count=3)
    at = run_case(page, case, f"every-{page}-{offset}", title, app_keys=APP_KEYS if page == "home" else ())
    assert not at.error, [e.value for e in at.error]


# ------------------------------------------------------------------ widget fuzz ---
def errors(at) -> str:
    return " | ".join(e.value for e in at.error)


def step(at, widget, value, case):
    """Set one widget, rerun, check the run is clean; return the AppTest."""
    widget.set_value(value).run()
    check_clean(at, case)
    return at


def test_widgets_home():
    at = open_page("home", {})
    check_clean(at, "home")
    for w, layers in ((1, 1), (16, 12), (1, 12), (16, 1)):
        at.slider(key="w").set_value(w)
        step(at, at.slider(key="layers"), layers, f"home w={w} layers={layers}")
        text = " ".join(m.value for m in at.markdown)
        noun = "layer" if layers == 1 else "layers"  # "after 1 layer", written out here, not by the page's helper
        assert f"after **{layers}** {noun} it can draw on **{reach.sliding_window_reach(47, layers, w)}**" in text
        assert not at.warning and at.query_params["w"] == str(w)


@pytest.mark.parametrize("w", ["17", "48"])
def test_home_window_above_the_slider_is_refused(w):  # was a crash: the link allowed 1..48, the slider 1..16
    at = open_page("home", {"w": w})
    check_clean(at, f"home w={w}")
    assert any("Ignored URL parameter w" in n for n in notices(at)) and at.slider(key="w").value == 4


def test_widgets_lessons():
    at = open_page("lessons", {"lesson": "sliding-window", "step": "1"})
    check_clean(at, "lessons")
    guess = "guess.full-pairs"
    for text, message in (("", "Type a number first"), ("   ", "Type a number first"), ("x" * 10_000, "too long"),
                          ("__import__('os')", "is not a number"), ("nan", "is not a number"),
                          ("1e999", "too large"), ("1e308 billion", "too large"), ("²", "is not a number")):
        at.text_input(key=guess).set_value(text).run()
        at.button(key=f"reveal.{guess[6:]}").click().run()
        check_clean(at, f"lessons guess {text[:20]!r}")
        assert any(message in w.value for w in at.warning), (text[:20], notices(at))
        assert not at.success and not at.error  # not graded
    for text in ("-1e308", "٣"):  # numbers: graded, right or wrong
        at.text_input(key=guess).set_value(text).run()
        at.button(key=f"reveal.{guess[6:]}").click().run()
        check_clean(at, f"lessons guess {text!r}")
        assert at.success or at.error and at.error[0].value.startswith("**Answer:"), text
        at.button(key=f"again.{guess[6:]}").click().run()
    # Every control of the lesson at its first and last option, step by step.
    lesson = lessons.LESSONS["sliding-window"]
    for k, s in enumerate(lesson.steps, start=1):
        assert at.session_state["step"] == k
        for c in s.controls:
            for value in (c.options[0], c.options[-1]):
                w = at.select_slider(key=f"lsn.{lesson.id}.{k}.{c.name}") if c.numeric else \
                    at.selectbox(key=f"lsn.{lesson.id}.{k}.{c.name}")
                step(at, w, value, f"lessons step {k} {c.name}={value}")
        if k < len(lesson.steps):
            at.button(key="next").click().run()
    check_clean(at, "lessons last step")


def test_widgets_mask_explorer():
    at = open_page("mask_explorer", {"n": "64"})
    check_clean(at, "explorer")
    n = at.number_input(key="n")
    for value in (8, 7, -5, MAX_N + 1, 10**30, 64):  # out of range: Streamlit puts back the default (8)
        step(at, at.number_input(key="n"), value, f"explorer n={value}")
        assert not at.error
    step(at, at.number_input(key="window"), 1, "explorer window=1")
    step(at, at.number_input(key="window"), MAX_N, "explorer window=MAX_N")
    assert any(f"Window {MAX_N} ≥ N = 64" in i.value for i in at.info)
    # A custom rule: junk is refused with a message, never run.
    step(at, at.selectbox(key="pattern"), "custom", "explorer custom")
    bad_rules = {"__import__('os')": "not allowed", "q >= k and": "not a valid rule", "": "empty",
                 "q.__class__": "Attribute access", "   ": "empty", "open('/etc/passwd')": "not allowed",
                 "q >= k and q - k < Z": "Z", "\x00": "Control character", "(" * 200 + "q" + ")" * 200: "",
                 "q ** 10 ** 10 > k": "", "k < q" + " and k < q" * 120: "", "q >= k; import os": ""}
    for rule, message in bad_rules.items():
        step(at, at.text_input(key="rule"), rule, f"explorer rule {rule[:30]!r}")
        assert at.error and message in errors(at), (rule[:40], errors(at))
        assert not at.get("plotly_chart")
    step(at, at.text_input(key="rule"), "q >= k and q - k < W", "explorer good rule")
    for params in ("W=", "W=x", "=3", "q=1", "W=10**30", "W=" + "9" * 40, "W=1, S", "__class__=1"):
        step(at, at.text_input(key="rule_params"), params, f"explorer rule_params {params!r}")
        assert at.error, params
    step(at, at.text_input(key="rule_params"), "W=3", "explorer good params")
    assert not at.error and at.get("plotly_chart")
    # Comma lists of token indices and document lengths.
    step(at, at.selectbox(key="pattern"), "local_global", "explorer local_global")
    for text, message in (("1,,x", "'x' is not a whole number"), ("-1", "at least 0"), ("64", "does not exist"),
                          ("99999999", "is not a whole number"), (",".join(["1"] * 65), "At most 64")):
        step(at, at.text_input(key="global_tokens"), text, f"explorer global_tokens {text[:20]!r}")
        assert message in errors(at), (text[:20], errors(at))
    step(at, at.selectbox(key="pattern"), "document", "explorer document")
    for text in ("", "0", "10, 20", "x", "65"):
        step(at, at.text_input(key="lengths"), text, f"explorer lengths {text!r}")
        assert at.error, text
    # Pattern B with junk, then a valid B: three figures.
    step(at, at.text_input(key="lengths"), "64", "explorer lengths 64")
    step(at, at.checkbox(key="compare"), True, "explorer compare")
    step(at, at.selectbox(key="b_pattern"), "custom", "explorer b custom")
    step(at, at.text_input(key="b_rule"), "q >= k and", "explorer b junk rule")
    assert any("Fix the setting" in e.value for e in at.error)
    step(at, at.selectbox(key="b_pattern"), "bigbird", "explorer b bigbird")
    seed = at.number_input(key="b_seed")
    step(at, seed, int(seed.max), "explorer b seed at the widget's max")
    assert not at.error  # the widget's maximum is what masks.build takes (attn.limits.PARAM_MAX)
    step(at, at.number_input(key="b_seed"), 4, "explorer b seed=4")
    # random_blocks stops at attn.limits.BIGBIRD_MAX_RANDOM_BLOCKS (at 131072 one view took 22 s and 2.9 GB)
    for key, value in (("b_block", MAX_N), ("b_block", 1), ("b_random_blocks", 64), ("b_random_blocks", 10**6)):
        step(at, at.number_input(key=key), value, f"explorer {key}={value}")
    assert not at.error and len(at.get("plotly_chart")) == 3


def test_widgets_receptive_field():
    at = open_page("receptive_field", {"n": "64", "layers": "4", "token": "63"})
    check_clean(at, "reach")
    for value in (0, -1, reach.MAX_LAYERS + 1, 10**12):
        step(at, at.number_input(key="layers"), value, f"reach layers={value}")
        assert f"between 1 and {reach.MAX_LAYERS}" in errors(at)
    step(at, at.number_input(key="layers"), 1, "reach layers=1")
    assert not at.error and not at.slider  # one layer: no layer slider
    step(at, at.number_input(key="layers"), reach.MAX_LAYERS, "reach layers=64")
    step(at, at.slider(key="layer"), reach.MAX_LAYERS, "reach layer=64")
    step(at, at.number_input(key="layers"), 3, "reach layers=3 below the slider")
    assert at.slider(key="layer").value == 3  # clamped to the new number of layers
    step(at, at.number_input(key="token"), -1, "reach token=-1")
    assert "from 0 to 63" in errors(at)
    for value in (64, 10**9):  # past the end: the last token is traced, with a note
        step(at, at.number_input(key="token"), value, f"reach token={value}")
        assert not at.error and at.number_input(key="token").value == 63
        assert any("past the end of N = 64" in i.value for i in at.info)
    step(at, at.number_input(key="token"), 0, "reach token=0")
    for value in (-5, 64, 10**6):
        step(at, at.number_input(key="src"), value, f"reach src={value}")
        assert "from 0 to 63" in errors(at)
    step(at, at.number_input(key="src"), 0, "reach src=0")
    assert not at.error
    for source in STACK_PRESETS:
        step(at, at.selectbox(key="stack"), source, f"reach stack={source}")
        assert not at.error and at.number_input(key="layers").value == STACK_PRESETS[source].layers
    step(at, at.selectbox(key="stack"), "custom", "reach custom")
    for text, message in (("", "empty"), ("|||", "empty"), ("causal |", "Empty item"), ("nope", "Unknown pattern"),
                          ("sliding_window window=abc", "must be a whole number"), ("sliding_window window=0", "must be within"),
                          ("sliding_window window=10**30", "must be a whole number"), ("x" * 10_000, "Unknown pattern"),
                          ("__import__('os')", "Unknown pattern"), ("chunked chunk=8 | <script>", "Unknown pattern")):
        step(at, at.text_input(key="custom"), text, f"reach custom {text[:20]!r}")
        assert message in errors(at), (text[:20], errors(at))


def test_widgets_benchmark():
    at = open_page("benchmark", {"ns": "256,512", "heads": "2", "kvh": "1", "hd": "32"})
    check_clean(at, "bench")
    step(at, at.multiselect(key="ns"), [], "bench no sizes")
    assert "at least one sequence length" in errors(at)
    step(at, at.multiselect(key="ns"), list(BENCH_NS), "bench every size")
    step(at, at.multiselect(key="backends"), [], "bench no backends")
    assert "at least one backend" in errors(at)
    step(at, at.multiselect(key="backends"), list(kernels.BACKENDS), "bench every backend")
    assert not at.error
    for heads, kvh, bad in ((64, 3, True), (8, 16, True), (64, 64, False), (1, 1, False), (65, 1, False), (0, 0, False)):
        at.number_input(key="heads").set_value(heads)
        step(at, at.number_input(key="kvh"), kvh, f"bench heads={heads} kvh={kvh}")
        assert bool(at.error) == bad, (heads, kvh, errors(at))  # 65 and 0: out of range, put back to 1
    step(at, at.number_input(key="window"), 1, "bench window=1")
    step(at, at.number_input(key="window"), MAX_N, "bench window=MAX_N")
    assert not at.error
    step(at, at.selectbox(key="pattern"), "custom", "bench custom")
    step(at, at.text_input(key="rule"), "__import__('os')", "bench junk rule")
    assert "not allowed" in errors(at)
    step(at, at.selectbox(key="pattern"), "document", "bench document")
    assert not at.error, errors(at)  # a number of documents, packed at every N (one list fits one N only)
    for docs in (1, 64):
        step(at, at.number_input(key="docs"), docs, f"bench docs={docs}")
        assert not at.error, (docs, errors(at))
    assert "_bench_rows" not in at.session_state  # nothing was run


def test_widgets_serving_cost():
    at = open_page("serving_cost", {"model": "custom", "c_layers": "4", "c_qh": "8", "c_kvh": "2"})
    check_clean(at, "cost")
    for text, message in (("-1", "is not a window"), ("1e9", "is not a window"), ("999999999", "from 1 to"),
                          ("4096, full", "2 entries but the model has 4 layers"), ("x" * 4000, "is not a window"),
                          (",".join(["1"] * 2000), "At most")):
        step(at, at.text_input(key="c_windows"), text, f"cost c_windows {text[:20]!r}")
        assert message in errors(at), (text[:20], errors(at))
    for text in ("64, full, 64, full", ",,,", ""):
        step(at, at.text_input(key="c_windows"), text, f"cost c_windows {text!r}")
        assert not at.error, (text, errors(at))
    step(at, at.number_input(key="c_kvh"), 16, "cost kvh > qh")
    assert "cannot exceed" in errors(at)
    step(at, at.number_input(key="c_kvh"), 8, "cost kvh = qh")
    for key, value in (("c_layers", kv.MAX_LAYERS), ("c_hd", kv.MAX_HEAD_DIM), ("c_params", 0.001),
                       ("batch", kv.MAX_BATCH), ("overhead", 64.0), ("c_layers", 10**9)):  # the last: clamped
        step(at, at.number_input(key=key), value, f"cost {key}={value}")
        assert not at.error, (key, value, errors(at))
    step(at, at.select_slider(key="ctx"), CONTEXTS[-1], "cost ctx max")
    at = open_page("serving_cost", {"model": "llama-3.1-8b", "ctx": str(CONTEXTS[-1])})
    check_clean(at, "cost llama 1M")
    for design, key, value, bad in (("sliding", "window", kv.MAX_CONTEXT, False), ("hybrid", "every", 0, False),
                                    ("sinks", "sinks", kv.MAX_CONTEXT, False), ("chunked", "chunk", 1, False)):
        step(at, at.selectbox(key="design"), design, f"cost design={design}")
        step(at, at.number_input(key=key), value, f"cost {design} {key}={value}")
        assert bool(at.error) == bad, (design, key, value, errors(at))


@MODEL_CASE
def test_widgets_model_attention():
    at = open_page("model_attention", {"doc": "story", "tokens": "16", "window": "8"})
    check_clean(at, "model")
    assert not at.error
    for value in (15, 10**9):  # out of range: Streamlit puts the widget back to its default (16)
        step(at, at.number_input(key="tokens"), value, f"model tokens={value}")
    step(at, at.number_input(key="tokens"), 16, "model tokens=16")
    step(at, at.slider(key="layer"), 29, "model layer=29")
    step(at, at.slider(key="head"), 8, "model head=8")
    step(at, at.number_input(key="window"), 1, "model window=1")
    assert not at.error and at.get("plotly_chart")
    step(at, at.selectbox(key="pattern"), "custom", "model custom")
    for rule in ("__import__('os')", "q >= k and"):
        step(at, at.text_input(key="rule"), rule, f"model rule {rule!r}")
        assert at.error, rule
    step(at, at.selectbox(key="stack"), "custom", "model custom stack")
    for text in ("", "sliding_window window=abc", "x" * 10_000):
        step(at, at.text_input(key="custom"), text, f"model stack {text[:20]!r}")
        assert at.error, text[:20]
    step(at, at.text_input(key="custom"), "chunked chunk=8 | causal", "model good stack")
    assert not at.error
    step(at, at.segmented_control(key="view"), "Influence vs reach", "model influence")
    for value in (1, 15, 99):  # 99: out of range, put back to the default
        step(at, at.number_input(key="target_tok"), value, f"model target_tok={value}")
        assert not at.error
    # Pasted text: empty, too long, odd characters.
    step(at, at.selectbox(key="doc"), "paste", "model paste")
    for text, message in (("   \n ", "empty"), ("x" * (limits.DOC_CHARS + 1), "limit")):
        step(at, at.text_area(key="_pasted"), text, f"model paste {text[:10]!r}")
        assert any(message in i.value for i in at.info), (text[:10], [i.value for i in at.info])
    step(at, at.text_area(key="_pasted"), "\u202e<script>alert(1)</script> ٣ 😀 ' OR 1=1 --", "model paste junk")
    assert not at.error


@MODEL_CASE
def test_model_influence_on_a_one_token_text_says_why():  # was a crash: number_input(min 1, max 0)
    at = open_page("model_attention", {"doc": "paste", "tokens": "16", "view": "Influence vs reach"})
    at.text_area(key="_pasted").set_value("x").run()
    check_clean(at, "model influence, pasted 'x'")
    assert any("at least 2 tokens" in i.value for i in at.info)
