"""attn.lessons: every step draws, every question's computed answer matches an independent
computation, grading, URL parsing, and the handout (valid, self-contained HTML)."""

import math
import re
from html.parser import HTMLParser

import numpy as np
import plotly.graph_objects as go
import pytest

import ui
from attn import kv, lessons, masks
from attn.presets import PATTERN_INFO, STACK_PRESETS
from attn.state import decode_keys, decode_view

N = 131072
STEPS = [(l.id, i) for l in lessons.LESSONS.values() for i in range(len(l.steps))]
FAST = [(lid, i) for lid, i in STEPS if not lessons.LESSONS[lid].steps[i].slow]
BENCH_STEP = lessons.LESSON_3.steps[1]  # draws the recorded CPU benchmark


def step(lid, i):
    return lessons.LESSONS[lid].steps[i]


def question(qid):
    return next(q for l in lessons.LESSONS.values() for q in l.questions if q.id == qid)


def extremes(s):
    """Defaults, every control at its first option, every control at its last."""
    return [s.defaults(), {c.name: c.options[0] for c in s.controls}, {c.name: c.options[-1] for c in s.controls}]


# ------------------------------------------------------------------ structure ---
def test_three_lessons_of_five_to_eight_steps_with_two_questions_or_more():
    assert list(lessons.LESSONS) == ["sliding-window", "big-picture", "cost-and-quality"]
    for lesson in lessons.LESSONS.values():
        assert 5 <= len(lesson.steps) <= 8, lesson.id
        assert len(lesson.questions) >= 2, lesson.id
        assert {q.kind for q in lesson.questions} == {"number", "choice"}, lesson.id
        for s in lesson.steps:
            assert 1 <= len(s.controls) <= 2 and s.text.strip(), s.title
            assert (s.figure is None) == s.slow == (s.result_figure is not None)
    ids = [q.id for l in lessons.LESSONS.values() for q in l.questions]
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------------ figures ---
@pytest.mark.parametrize("lid,i", FAST)
def test_every_step_figure_builds_at_defaults_and_extremes(lid, i):
    s = step(lid, i)
    if s is BENCH_STEP and lessons.bench_file() is None:
        with pytest.raises(ValueError, match="No recorded benchmark"):
            s.build_figure()
        return
    for values in extremes(s):
        fig = s.build_figure(values)
        assert isinstance(fig, go.Figure) and fig.data, (s.title, values)
        assert fig.layout.title.text, (s.title, values)
        # Presenter view recolours every figure, so a title that names a colour would then be wrong.
        assert not re.search(r"\b(green|orange|blue|purple|red|yellow)\b", fig.layout.title.text, re.I), \
            fig.layout.title.text
        assert isinstance(s.note_for(values), str)


def test_the_bench_step_is_the_benchmark():
    assert "Measured" in BENCH_STEP.title and [c.name for c in BENCH_STEP.controls] == ["metric"]


def test_step_values_refuse_unknown_values():
    s = lessons.LESSON_1.steps[4]  # window 2..16, layers 1..12
    assert s.values({"window": 99, "layers": 5, "other": 1}) == {"window": 4, "layers": 5}


def test_reach_figure_follows_its_controls():
    s = lessons.LESSON_1.steps[5]  # Mistral 7B, layers 1..32
    growth = s.build_figure({"layers": 32}).data[0]
    assert list(growth.y) == [min(N, l * 4095 + 1) for l in range(1, 33)]
    assert len(s.build_figure({"layers": 3}).data[0].y) == 3


def test_mask_figures_show_the_rule():
    s = lessons.LESSON_1.steps[2]  # sliding window on 32 tokens
    z = np.array(s.build_figure({"window": 5}).data[0].z)
    q, k = np.indices((32, 32))
    assert (z.astype(bool) == ((k <= q) & (q - k < 5))).all()


def test_the_model_step_draws_a_sweep():
    from attn.model import SweepPoint

    s = lessons.LESSON_3.steps[4]
    assert s.slow and s.run_label
    with pytest.raises(ValueError, match="run it first"):
        s.build_figure()
    points = [SweepPoint(8, "w8", math.log(90.0), 90.0, 0.1), SweepPoint(32, "w32", math.log(40.0), 40.0, 0.1),
              SweepPoint(None, "full", math.log(30.0), 30.0, 0.1)]
    fig = s.build_figure(None, points)
    assert list(fig.data[0].x) == [8, 32] and list(fig.data[0].y) == [90.0, 40.0]
    assert set(fig.data[1].y) == {30.0} and "full causal" in fig.data[1].name
    assert "first 256 tokens" in fig.layout.title.text and list(fig.layout.xaxis.tickvals) == [8, 32]
    note = s.note_for(None, points)
    assert "perplexity **30.0**" in note and "W = 8: 90.0 (3.0×)" in note and s.note_for() == ""
    assert lessons.sweep_windows(64) == (8, 16, 32, "full") and lessons.sweep_windows(256)[-2:] == (128, "full")


def test_bench_figure_reads_recorded_rows(tmp_path):
    import json

    rows = [dict(backend=b, pattern="sliding_window", rule="sliding_window(window=64)", n=n, status="ok", time_ms=t,
                 peak_bytes=2**20 * n, useful_tflops_s=1e-3, executed_tflops_s=2e-3, device_name="cpu (test, 2 threads)",
                 date="2026-01-02T03:04:05+00:00", dtype="float32", torch="2.13.0",
                 note="1-min load average 3.5 on 2 CPUs before this row", batch=1, heads=8, head_dim=64)
            for b, ts in (("naive", (1.0, 4.0)), ("flex", (2.0, 3.0))) for n, t in zip((256, 512), ts)]
    rows.append(dict(rows[0], n=1024, status="skipped", reason="estimated 9 GiB > budget", time_ms=None))
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(rows))
    loaded = lessons.bench_rows(path)
    fig = lessons.bench_figure(loaded, "time_ms")
    assert {t.name.split(" ")[0]: list(t.y) for t in fig.data} == {"flex": [2.0, 3.0], "naive": [1.0, 4.0]}
    assert "cpu (test, 2 threads)" in fig.layout.title.text and "2026-01-02" in fig.layout.title.text
    assert list(lessons.bench_figure(loaded, "peak_bytes").data[0].y) == [256.0, 512.0]  # MiB
    assert len(lessons.bench_figure(loaded, "tflops").data) == 4  # useful and executed per backend
    note = lessons.bench_note(loaded)
    assert "load average was 3.5–3.5" in note and "1 size(s) did not run" in note and "2026-01-02" in note
    with pytest.raises(ValueError, match="No recorded benchmark"):
        lessons.bench_rows(tmp_path / "missing.json")


# ------------------------------------------------------------------ links ---
@pytest.mark.parametrize("lid,i", STEPS)
def test_links_name_a_page_and_settings_it_accepts(lid, i):
    s = step(lid, i)
    pages = {p[0] for p in ui.PAGES}
    for values in extremes(s):
        target = s.link_for(values)
        if target is None:
            continue
        assert target.page in pages
        query = target.query
        if "pattern" in query:  # the explorer, or the receptive field with one pattern: read as they read it
            decoded, notices = decode_view(query)
            assert not notices
            pattern = decoded["pattern"]
            raw = {k: decoded[k] for k in PATTERN_INFO[pattern].params if k in decoded}
            masks.build(pattern, decoded["n"], **ui.rule_params(pattern, raw))
        if target.page == lessons.REACH_PAGE and query.get("stack") != "pattern":
            assert query["stack"] in STACK_PRESETS and int(query["layer"]) <= int(query["layers"])
        if target.page == lessons.COST_PAGE:
            assert query["model"] in kv.PRESETS and int(query["ctx"]) in lessons.CONTEXTS


# ------------------------------------------------------------------ answers ---
def test_full_pairs_is_n_squared():
    assert lessons.answer(question("full-pairs")) == N * N


def test_cheapest_pairs_against_brute_force_counts():
    q = question("cheapest-pairs")
    rows = np.arange(16384)
    causal_dense = 0
    for lo in range(0, 16384, 2048):  # the textbook predicate, pair by pair
        qi = np.arange(lo, lo + 2048)[:, None]
        causal_dense += int((np.arange(16384)[None, :] <= qi).sum())
    window = int(np.minimum(np.arange(N) + 1, 4096).sum())  # each row: itself and up to 4,095 before
    expected = (causal_dense, window, 16384 * 16384)
    assert lessons.solve(q) == tuple(float(x) for x in expected)
    assert causal_dense == int((rows + 1).sum())
    assert lessons.answer(q) == q.choices[int(np.argmin(expected))]


def test_layers_until_for_a_window_of_128():
    assert lessons.answer(question("window-hops")) == math.ceil(1020 / 127) == 9
    # "W per layer" would say ⌈1020/128⌉ = 8: the question tells the two apart.
    assert math.ceil(1020 / 128) == 8 and not lessons.grade(question("window-hops"), 8).correct


def test_mistral_reach_is_32_windows():
    q = question("mistral-reach")
    assert lessons.answer(q) == 32 * 4095 + 1 == 131041
    # "The whole text" (131,072) and "32 windows of 4,096" are the slips this step corrects: wrong.
    assert lessons.grade(q, "131041").correct
    assert not lessons.grade(q, "131072").correct and not lessons.grade(q, 32 * 4096).correct


def _bfs_layers(adjacent, n, source, target, max_layers=64):
    """Layers until source reaches target: a plain breadth-first search, one hop per layer."""
    seen = np.zeros(n, bool)
    seen[target] = True
    for layer in range(1, max_layers + 1):
        seen = seen | adjacent(layer, seen)
        if seen[source]:
            return layer
    return None


def test_longformer_hops_by_breadth_first_search():
    n, g = 4096, 0
    k = np.arange(n)

    def adjacent(layer, seen):  # keys any seen query may attend to: |q - k| <= 256, or k global, or q global
        out = np.zeros(n, bool)
        for q in np.flatnonzero(seen):
            out |= (np.abs(q - k) <= 256) | (k == g) | (q == g)
        return out

    assert lessons.answer(question("longformer-hops")) == _bfs_layers(adjacent, n, 1000, 4095) == 2


def _union_length(intervals):
    total, end = 0, -1
    for a, b in sorted(intervals):  # closed intervals [a, b]
        if b > end:
            total += b - max(a, end + 1) + 1
            end = b
    return total


def test_sparse_cost_against_independent_counts():
    q = question("sparse-cost")
    rows = np.arange(N)
    # Longformer: band |q-k| <= 256, plus key 0; query 0 sees everything.
    band = np.minimum(rows + 256, N - 1) - np.maximum(rows - 256, 0) + 1
    longformer = int((band + (rows > 256))[1:].sum()) + N  # rows 1.. : band, plus key 0 when outside it
    # Sinks: keys 0..3 and the last 4,096 (itself included), causal.
    sinks = int((np.minimum(rows + 1, 4096) + np.clip(rows + 1 - 4096, 0, 4)).sum())
    # BigBird: band |q-k| <= 96, global blocks 0 and last, 3 random key blocks of 64 per query block
    # (the seeded draws of attn.masks); global rows see everything. Union of intervals row by row.
    blocks = N // 64
    globals_ = [(0, 63), (N - 64, N - 1)]
    bigbird = 128 * N
    for qb in range(blocks):
        picks = [int(masks._random_blocks(qb, j, 0, 3, blocks)[0]) for j in range(3)]
        fixed = globals_ + [(p * 64, p * 64 + 63) for p in picks]
        for r in range(qb * 64, qb * 64 + 64):
            if r < 64 or r >= N - 64:
                continue
            bigbird += _union_length(fixed + [(max(r - 96, 0), min(r + 96, N - 1))])
    expected = (longformer, bigbird, sinks)
    assert lessons.solve(q) == tuple(float(x) for x in expected)
    assert lessons.answer(q) == q.choices[int(np.argmin(expected))]


def test_gemma_kv_saving_from_the_published_config():
    # google/gemma-2-9b: 42 layers alternating local (sliding_window 4096) and global.
    expected = 100 * (21 / 42) * (1 - 4096 / N)
    assert lessons.answer(question("gemma-kv")) == pytest.approx(expected, abs=1e-9)


def test_llama4_hops_is_the_first_global_layer():
    spec = STACK_PRESETS["llama-4-scout"].spec.split("|")
    first_global = next(i for i, r in enumerate(spec) if r.split()[0] == "causal") + 1
    assert 0 // 8192 != (N - 1) // 8192  # token 0 and the last token are in different chunks
    assert lessons.answer(question("llama4-hops")) == first_global == 4


def _blocks_and_pairs(allowed_by_distance, n, block=128):
    """Brute force over every (query, key) pair, one query block at a time: allowed pairs, and the
    block x block tiles holding at least one. Causal rules: keys after a block's last query never count."""
    touched = useful = 0
    keys = np.arange(n, dtype=np.int32)
    for qb in range(n // block):
        d = np.arange(qb * block, (qb + 1) * block, dtype=np.int32)[:, None] - keys[None, : (qb + 1) * block]
        a = allowed_by_distance(d)  # d = q - k
        useful += int(np.count_nonzero(a))
        touched += int(a.reshape(block, qb + 1, block).any(axis=(0, 2)).sum())
    return touched, useful


def test_block_flops_against_brute_force_block_counts():
    q = question("block-flops")
    n = lessons.BLOCK_QUESTION_N
    # The textbook predicates on d = q - k (d & (m-1) is d % m for the powers of two used here, d >= 0).
    predicates = {
        "sliding": lambda d: (d >= 0) & (d < 1024),
        "dilated": lambda d: (d >= 0) & (d < 2048) & ((d & 1) == 0),
        "strided": lambda d: (d >= 0) & ((d < 128) | ((d & 127) == 0)),
    }
    counts = {k: _blocks_and_pairs(p, n) for k, p in predicates.items()}
    expected = tuple(4 * 64 * counts[k][0] * 128 * 128 for k in lessons.BLOCK_RULES)
    assert lessons.solve(q) == tuple(float(x) for x in expected)
    assert lessons.answer(q) == lessons.BLOCK_RULES["sliding"][0]
    assert counts["strided"][1] < counts["sliding"][1]  # the fewest useful pairs, yet the most blocks


def test_mistral_80_percent_saving():
    # 1 - 4096/T >= 0.8  <=>  T >= 5 * 4096
    assert lessons.answer(question("mistral-80")) == 5 * 4096


def test_llama_kv_gib():
    # 2 (K, V) x 8 KV heads x 128 dims x 2 bytes x 32 layers x 131,072 tokens
    assert lessons.answer(question("llama-kv")) == 2 * 8 * 128 * 2 * 32 * N / 2**30 == 16


def test_every_answer_has_an_explanation_with_the_answer():
    for lesson in lessons.LESSONS.values():
        for q in lesson.questions:
            text = q.explain(lessons.solve(q))
            assert lessons.answer_text(q).split(" ")[0] in text, q.id


# ------------------------------------------------------------------ grading ---
def test_grade_numbers():
    q = question("window-hops")  # exact: 9
    g = lessons.grade(q, "9")
    assert g.correct and g.abs_error == 0 and g.rel_error == 0 and g.answer == 9
    g = lessons.grade(q, 12)
    assert not g.correct and g.abs_error == 3 and g.rel_error == pytest.approx(1 / 3) and "too high" in g.summary
    q = question("full-pairs")  # within 10%
    assert lessons.grade(q, "16 billion").correct
    g = lessons.grade(q, "15e9")
    assert not g.correct and g.abs_error == pytest.approx(15e9 - N * N) and "too low" in g.summary
    # The summary names the guess before the gap: 17 billion is 179,869,184 below 2**34.
    assert lessons.grade(q, "17 billion").summary.startswith(
        "Right: your 17,000,000,000 is 179,869,184 too low (1.0% below the answer)"), lessons.grade(q, "17 billion").summary
    assert lessons.grade(q, N * N * 1.0999).correct and not lessons.grade(q, N * N * 1.1001).correct
    q = question("gemma-kv")  # ±5 percentage points
    right = lessons.answer(q)
    assert lessons.grade(q, f"{right + 0.9:.2f}%").correct and not lessons.grade(q, right - 1.1).correct
    assert not lessons.grade(q, "50%").correct and not lessons.grade(q, "53%").correct  # the slip; past the 50% ceiling
    g = lessons.grade(q, "50%")  # the answer is 48.4%: 1.6 percentage points, 3.2% of the answer
    assert f"{50 - right:.1f} percentage points too high ({(50 - right) / right:.1%} above the answer)" in g.summary, g.summary


def test_far_off_guesses_say_how_many_times_not_a_huge_percentage():
    q = question("window-hops")  # exact: 9
    assert "3 too high (33.3% above the answer)" in lessons.grade(q, 12).summary
    assert "(2.25 times smaller than the answer)" in lessons.grade(q, 4).summary  # 9 / 4, past a factor of two
    assert "(44.4% below the answer)" in lessons.grade(q, 5).summary
    assert "(10 times the answer)" in lessons.grade(q, 90).summary
    assert "(900 times smaller than the answer)" in lessons.grade(q, 0.01).summary
    assert "(zero, where the answer is not)" in lessons.grade(q, 0).summary
    g = lessons.grade(q, "-1e308")
    assert "(the other sign from the answer)" in g.summary and len(g.summary) < 200
    # The case a student met: 4,096 for the 17,179,869,184 pairs of full attention at N = 131,072.
    g = lessons.grade(question("full-pairs"), 4096)
    assert "too low (4,194,304 times smaller than the answer)" in g.summary, g.summary
    assert "1.25e+307 times the answer" in lessons.relative_error_text(1.25e307)


def test_grade_choices():
    q = question("cheapest-pairs")
    values = lessons.solve(q)
    right = lessons.answer(q)
    g = lessons.grade(q, right)
    assert g.correct and g.abs_error == 0 and len(g.options) == 3
    wrong = next(i for i, c in enumerate(q.choices) if c != right)
    g = lessons.grade(q, wrong)  # by index, as a radio's position
    assert not g.correct and g.guess == q.choices[wrong]
    assert g.abs_error == values[wrong] - min(values)
    assert g.rel_error == pytest.approx(values[wrong] / min(values) - 1)
    # The option values are listed once, with the answer, not again in the explanation; same ratio format.
    assert dict(g.options)[q.choices[1]] == "528,484,352 pairs" and "528,484,352" not in g.explanation
    assert "3.94×" in g.explanation and "3.94×" in lessons.grade(q, 1).summary
    with pytest.raises(ValueError, match="Pick one"):
        lessons.grade(q, "none of these")
    with pytest.raises(ValueError, match="Pick one"):
        lessons.grade(q, None)


@pytest.mark.parametrize("text,value", [
    ("8", 8), ("1,234", 1234), ("1 234 567", 1234567), ("17e9", 17e9), ("1.7E10", 1.7e10), ("17 billion", 17e9),
    ("20k", 20000), ("2.5M", 2.5e6), (" 16 GiB ", 16), ("-3", -3), (".5", 0.5),
    # Powers, as the explanations write them (131,072² pairs): values by hand.
    ("2^34", 17_179_869_184), ("2**34", 17_179_869_184), ("131,072²", 17_179_869_184), ("1.7×10^10", 1.7e10),
    ("1.7 x 10^10", 1.7e10), ("4*10^3", 4000),
])
def test_parse_guess(text, value):
    assert lessons.parse_guess(text, "GiB") == pytest.approx(value)


@pytest.mark.parametrize("text, unit, message", [
    ("48,4", "%", "write decimals with a point"),  # a decimal comma, not 484
    ("1,23", "", "write decimals with a point"),
    ("50%", "", "asks for a count, not a share"),
    ("16GB", "GiB", "this question is in GiB"), ("16 gb", "GiB", "this question is in GiB"),
    ("16g", "GiB", "this question is in GiB"),  # not 16 × 10⁹ GiB
    ("9^999", "", "too large"),
])
def test_parse_guess_explains_a_slip(text, unit, message):
    with pytest.raises(ValueError, match=message):
        lessons.parse_guess(text, unit)
    assert lessons.parse_guess("48.4%", "%") == 48.4 and lessons.parse_guess("1,234,567", "") == 1_234_567


def test_the_answer_shown_differs_from_an_inexact_guess():
    # Gemma 2's saving is 48.4375%: a guess of 48.4 is graded right but is not the answer, so the answer
    # shows the digits that tell them apart.
    q = next(q for s in lessons.LESSON_2.steps for q in s.questions if q.id.startswith("gemma"))
    assert lessons.solve(q) == pytest.approx(48.4375)
    assert lessons.grade(q, "48.4").answer_text == "48.44%"
    assert lessons.grade(q, "50").answer_text == "48.4%"


@pytest.mark.parametrize("text", ["", "   ", "eight", "1..2", "12 apples", "1e999", "9" * 50, None])
def test_parse_guess_refuses(text):
    with pytest.raises(ValueError):
        lessons.parse_guess(text)


# ------------------------------------------------------------------ URL ---
def test_url_parsers_validate_lesson_step_and_controls():
    query = {"lesson": "big-picture", "step": "3", "random": "1", "seed": "7"}
    values, notices = decode_keys(query, lessons.url_parsers(query))
    assert not notices and values == {"lesson": "big-picture", "step": 3, "random": 1, "seed": 7}
    bad = {"lesson": "big-picture", "step": "3", "random": "99", "seed": "x"}
    values, notices = decode_keys(bad, lessons.url_parsers(bad))
    assert values == {"lesson": "big-picture", "step": 3} and len(notices) == 2
    junk = {"lesson": "<script>", "step": "0", "window": "4"}
    values, notices = decode_keys(junk, lessons.url_parsers(junk))
    assert values == {} and len(notices) == 2  # step 1 of the first lesson has no 'window' control
    stale = {"lesson": "sliding-window", "step": "9"}
    values, notices = decode_keys(stale, lessons.url_parsers(stale))
    assert values == {"lesson": "sliding-window"} and "within 1..6, got 9" in notices[0]
    assert lessons.url_params("sliding-window", 5, {"window": 9}) == {"lesson": "sliding-window", "step": 5,
                                                                       "window": 9, "layers": 3}


# ------------------------------------------------------------------ handout ---
class _Checker(HTMLParser):
    """Fails on mismatched or unclosed tags; collects text and counts scripts."""

    VOID = {"meta", "br", "img", "hr", "input", "link"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.text, self.scripts, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts[-1] += data
        else:
            self.text.append(data)


def _check(doc: str) -> _Checker:
    c = _Checker()
    c.feed(doc)
    c.close()
    assert not c.errors and not c.stack, (c.errors[:3], c.stack)
    return c


@pytest.mark.parametrize("lid", ["sliding-window", "big-picture"])
def test_handout_is_valid_html_with_every_step_and_answer(lid):
    lesson = lessons.LESSONS[lid]
    doc = lessons.handout_html(lesson, {0: {c.name: c.options[-1] for c in lesson.steps[0].controls}},
                               plotly_js="/* plotly.js stand-in */")
    assert doc.startswith("<!DOCTYPE html>")
    c = _check(doc)
    text = " ".join(c.text)
    for s in lesson.steps:
        assert s.title in text
    answers = text[text.index("Answers"):]
    for q in lesson.questions:
        assert lessons.answer_text(q) in answers
        if q.kind == "choice":  # every option with its computed value, as on the page
            for label, value in lessons.option_values(q, lessons.solve(q)):
                assert f"{label}: {value}" in answers, (q.id, label)
    assert doc.count('class="question"') == len(lesson.questions)
    assert doc.count("Plotly.newPlot") == len(lesson.steps)
    assert sum("plotly.js stand-in" in s for s in c.scripts) == 1
    assert f"{lesson.steps[0].controls[0].fmt(lesson.steps[0].controls[0].options[-1])}" in text  # settings used


def test_handout_inlines_plotly_once_and_handles_the_model_step():
    from attn.model import SweepPoint
    from plotly.offline import get_plotlyjs

    lesson = lessons.LESSON_3
    slow = next(i for i, s in enumerate(lesson.steps) if s.slow)
    without = lessons.handout_html(lesson, plotly_js="/*js*/")
    _check(without)
    assert f"press “{lesson.steps[slow].run_label}”" in without
    points = [SweepPoint(8, "w8", 4.0, math.exp(4.0), 0.1), SweepPoint(None, "full", 3.0, math.exp(3.0), 0.1)]
    doc = lessons.handout_html(lesson, results={slow: points})
    c = _check(doc)
    assert sum(get_plotlyjs()[:200] in s for s in c.scripts) == 1  # the library itself, inline, once
    assert "<script src" not in doc  # nothing fetched from the network
    has_bench = lessons.bench_file() is not None
    assert doc.count("Plotly.newPlot") == len(lesson.steps) - (0 if has_bench else 1)


# Words that ask the reader to move a control (or press one): on paper nothing moves.
MOVE_A_CONTROL = re.compile(r"^(Change|Move|Watch|Drag|Toggle|Slide|Press|Click|Try)\b|\bthen (slide|move|change|press|watch)\b"
                            r"|\byou (press|click|move|slide)\b")


@pytest.mark.parametrize("lid", list(lessons.LESSON_IDS))
def test_handouts_ask_for_no_control_but_the_lab_still_does(lid):
    lesson = lessons.LESSONS[lid]
    text = " ".join(_check(lessons.handout_html(lesson, plotly_js="/**/")).text)
    for sentence in re.split(r"(?<=[.?!])\s+", text):
        if MOVE_A_CONTROL.search(sentence.strip()) and "in the lab" not in sentence and "in the app" not in sentence:
            pytest.fail(f"{lid}: the handout asks for a control: {sentence!r}")
    # On screen the steps keep their own words.
    for step in lesson.steps:
        for screen, paper in step.on_paper:
            assert screen in step.text and paper in step.paper_text and screen not in step.paper_text


def test_on_paper_must_name_the_steps_own_words():
    with pytest.raises(ValueError, match="on_paper names text the step does not have"):
        lessons.Step("t", "Move W.", on_paper=(("Slide W.", "W."),))


def test_markdown_is_escaped():
    out = lessons.md_to_html("A **bold** and *it* `x<y` <script>alert(1)</script>\n\n- one\n- [two](https://example.org)")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<strong>bold</strong>" in out and "<em>it</em>" in out and "<code>x&lt;y</code>" in out
    assert '<ul><li>one</li><li><a href="https://example.org">two</a></li></ul>' in out


def test_small_misses_and_fractions_are_said_plainly():
    # 31 of 131,041 is 0.024%, not "0.0%"; 48.4 for 48.4375% is 0.038 points, not "0.0 points".
    assert "31 too high (0.024% above the answer)" in lessons.grade(question("mistral-reach"), "131072").summary
    g = lessons.grade(question("gemma-kv"), "48.4")
    assert g.correct and "0.038 percentage points too low" in g.summary, g.summary
    assert "within ±1 percentage point counts" in g.summary
    # A share typed as a fraction is echoed as typed and named.
    g = lessons.grade(question("gemma-kv"), "0.484")
    assert not g.correct and "your 0.484%" in g.summary and "0.484 is 48.4%" in g.summary, g.summary


def test_reach_notes_say_one_layer_and_many_layers():
    """'After 1 layer', 'after 3 layers': no 'layer(s)'; the counts are the reach of the last token."""
    from attn import lessons, masks, reach

    one = lessons.reach_note("mistral-7b-v0.1", 131072, 1)
    assert one.startswith("After 1 layer token 131,071 can draw on **4,096** of its 131,072"), one
    three = lessons._reach_note({"window": 8, "layers": 3})
    expected = reach.reach_of_token(masks.sliding_window(8), 48, 47, 3).counts[-1]
    assert three.startswith(f"After 3 layers token 47 draws on **{expected}** tokens"), three
    assert expected == min(48, 3 * 7 + 1)
