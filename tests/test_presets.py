"""Pattern metadata, stack parsing and the remarks on degenerate settings."""

import pytest

from attn import masks as M
from attn.presets import PATTERN_INFO, STACK_PRESETS, build_stack, default_params, reach_explanations, rule_notes


@pytest.mark.parametrize("pattern", M.PATTERNS)
def test_defaults_build_a_rule(pattern):
    rule = M.build(pattern, 64, **default_params(pattern, 64))
    assert rule.name == pattern and PATTERN_INFO[pattern].used_by


@pytest.mark.parametrize(
    "rule, expected",
    [
        (M.sliding_window(64), "no effect"),
        (M.sliding_window(500), "no effect"),
        (M.chunked(80), "one chunk"),
        (M.prefix_lm(0), "plain causal"),
        (M.sinks(0, 4), "plain sliding window"),
        (M.sinks(100, 8), "plain causal"),
        (M.sinks(56, 8), "plain causal"),  # 56 + 8 = 64: the last query's window starts at the first non-sink
        (M.prefix_lm(64), "full bidirectional"),
        (M.prefix_lm(1000), "full bidirectional"),
    ],
)
def test_degenerate_settings_are_named(rule, expected):
    notes = rule_notes(rule, 64)
    assert len(notes) == 1 and expected in notes[0]
    # and the remark is true: the rule equals its plain counterpart at this length
    plain = {"no effect": M.causal(), "one chunk": M.causal(), "plain causal": M.causal(), "plain sliding window": M.sliding_window(4),
             "full bidirectional": M.full()}
    assert (rule.dense(64) == plain[expected].dense(64)).all()


@pytest.mark.parametrize("n", [1, 17, 64])  # at N = 2 or 3 a global token alone covers all
@pytest.mark.parametrize("pattern, extra", [
    ("sliding_window", {}), ("band", {}), ("sinks", {"sinks": 2}),
    ("dilated", {"dilation": 1, "causal": True}), ("dilated", {"dilation": 1, "causal": False}),
    ("local_global", {"global_tokens": "mid", "causal": False}), ("local_global", {"global_tokens": "mid", "causal": True}),
    ("bigbird", {"global_tokens": "mid", "random_blocks": 0, "block": 4, "causal": False}),
    ("bigbird", {"global_tokens": "mid", "random_blocks": 0, "block": 4, "causal": True}),
])
def test_window_note_exactly_when_the_window_changes_nothing(pattern, extra, n):
    # Reference: the same rule with a window far longer than any distance. The note must appear
    # exactly when the mask equals it (a band of W = N still masks |q − k| > N // 2).
    # A global token in the middle, not at 0 or N − 1, where it would cover the far corners itself.
    extra = {k: (n // 2,) if v == "mid" else v for k, v in extra.items()}
    endless = M.build(pattern, n, window=10 * n + 10, **extra).dense(n)
    for w in sorted({1, 2, max(n - 1, 1), n, n + 1, max(2 * n - 3, 1), max(2 * n - 2, 1), 2 * n - 1, 3 * n}):
        rule = M.build(pattern, n, window=w, **extra)
        # (Sinks that with the window cover every past get their own note: plain causal.)
        noted = any("the window has no effect" in t or "plain causal" in t for t in rule_notes(rule, n))
        assert noted == bool((rule.dense(n) == endless).all()), (pattern, extra, n, w)


def test_ordinary_settings_have_no_remark():
    assert rule_notes(M.sliding_window(63), 64) == [] and rule_notes(M.local_global(8, [0]), 64) == []
    assert rule_notes(M.band(64), 64) == [] and rule_notes(M.band(125), 64) == []  # |q − k| ≤ 62 misses (0, 63)
    # One short of the degenerate case, and the mask really differs from the plain one.
    assert rule_notes(M.sinks(55, 8), 64) == [] and not (M.sinks(55, 8).dense(64) == M.causal().dense(64)).all()
    assert rule_notes(M.prefix_lm(63), 64) == [] and not (M.prefix_lm(63).dense(64) == M.full().dense(64)).all()


@pytest.mark.parametrize("name", list(STACK_PRESETS))
def test_presets_build(name):
    p = STACK_PRESETS[name]
    stack = build_stack(p.spec, p.layers, 131072, name)
    assert len(list(stack)) == p.layers


def test_stack_and_serving_presets_share_names():
    # One model, one name on every page: where a stack preset's model is also a Serving Cost
    # preset, the keys are the same (Hugging Face ids), and the older names still resolve.
    from attn import kv
    from attn.presets import STACK_ALIASES, stack_preset

    for key in ("mistral-7b-v0.1", "gemma-2-9b"):
        assert key in STACK_PRESETS and key in kv.PRESETS
        assert STACK_PRESETS[key].layers == kv.PRESETS[key].layers
    assert stack_preset("gemma2-9b") is STACK_PRESETS["gemma-2-9b"]
    assert stack_preset("llama4-scout") is STACK_PRESETS["llama-4-scout"]
    assert all(v in STACK_PRESETS and k not in STACK_PRESETS for k, v in STACK_ALIASES.items())
    with pytest.raises(ValueError, match="Unknown preset 'gemma-9b'; choose one of: mistral-7b-v0.1, gemma-2-9b"):
        stack_preset("gemma-9b")


def test_chunk_explanation_matches_what_the_stack_reaches():
    # Chunks alone: no depth crosses a boundary (BFS from the last token stays in its chunk).
    # With a window layer in the stack, the reach does cross, and the text must not say it cannot.
    from attn import reach as R
    alone = [M.chunked(16)]
    mixed = [M.sliding_window(2), M.chunked(16)]
    assert R.reach_of_token(M.LayerStack("c", tuple(alone), 4), 64, 63, 4).counts[-1] == 16
    assert R.reach_of_token(M.LayerStack("m", tuple(mixed), 4), 64, 63, 4).counts[-1] > 16
    assert any("however many layers" in t for t in reach_explanations(alone))
    text = " ".join(reach_explanations(mixed))
    assert "however many layers" not in text and "the sliding_window layers do" in text
