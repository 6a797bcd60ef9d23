"""Receptive Field page through AppTest."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from attn.reach import sliding_window_reach

PAGE = Path(__file__).resolve().parent.parent / "app_pages" / "receptive_field.py"


def open_page(**query):
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.query_params.update(query)
    return at.run()


def metric(at, prefix):
    return next(m for m in at.metric if m.label.startswith(prefix))


def test_sliding_window_reach_follows_the_layer_slider():
    at = open_page(n="64", stack="pattern", pattern="sliding_window", window="4", layers="8", token="63", layer="2")
    assert not at.exception and not at.warning
    assert metric(at, "Reach after layer").value == f"{sliding_window_reach(63, 2, 4)} tokens"
    at.slider(key="layer").set_value(6).run()
    m = metric(at, "Reach after layer")
    assert m.label == "Reach after layer 6" and m.value == f"{sliding_window_reach(63, 6, 4)} tokens"
    assert metric(at, "Whole context").value == "not within 8"  # 8·3 + 1 = 25 < 64 tokens
    assert metric(at, "Layers needed").value == str(-(-63 // 3))  # token 0 reaches 63 once 3l+1 >= 64


def test_presets_and_custom_stack():
    at = open_page(n="131072", stack="gemma-2-9b", token="131071", layer="1")
    assert not at.exception
    assert at.number_input(key="layers").value == 42
    assert metric(at, "Reach after layer 1").value == "4,096 tokens"
    assert metric(at, "Whole context").value == "layer 2"

    # The name earlier versions used: the same stack, no warning, and the link shared now says the new name.
    old = open_page(n="131072", stack="gemma2-9b", token="131071", layer="1")
    assert not old.exception and not old.warning and old.selectbox(key="stack").value == "gemma-2-9b"
    assert metric(old, "Whole context").value == "layer 2"

    at = open_page(n="256", stack="custom", custom="chunked chunk=32 | chunked chunk=32 | causal", layers="6", token="255")
    assert not at.exception and not at.error
    assert metric(at, "Whole context").value == "layer 3"


def test_bad_input_messages():
    at = open_page(layers="0", token="x", stack="bogus")
    assert not at.exception
    assert len(at.warning) == 3 and all(w.value.startswith("Ignored URL parameter") for w in at.warning)

    at = open_page(n="64", token="63")
    at.number_input(key="layers").set_value(65).run()
    assert not at.exception and any("between 1 and 64" in e.value for e in at.error)
    at.number_input(key="layers").set_value(4)
    at.number_input(key="token").set_value(64).run()
    assert not at.exception and not at.error and at.number_input(key="token").value == 63
    assert any("Token 64 is past the end of N = 64; tracing the last token, 63." in i.value for i in at.info)
    at.number_input(key="token").set_value(-1).run()
    assert not at.exception and any("from 0 to 63" in e.value for e in at.error)

    at = open_page(stack="custom", custom="sliding_window wndow=4")
    assert not at.exception and any("not a parameter of sliding_window" in e.value for e in at.error)


def test_custom_rule_reach_equals_the_sliding_window():
    at = open_page(n="64", stack="pattern", pattern="custom", rule="q >= k and q - k < W", rule_params="W=4",
                   layers="8", token="63", layer="5")
    assert not at.exception and not at.error
    assert metric(at, "Reach after layer").value == f"{sliding_window_reach(63, 5, 4)} tokens"


def test_reach_lists_single_positions_and_spans():
    # Every 4th key (a custom rule) for one layer: four single positions; a window of 4: one span.
    at = open_page(n="16", stack="pattern", pattern="custom", rule="q >= k and (q - k) % 4 == 0", layers="2",
                   token="15", layer="1")
    assert not at.exception and not at.error
    assert any("can draw on positions 3, 7, 11, 15 (4 intervals)." in m.value for m in at.markdown)
    at = open_page(n="16", stack="pattern", pattern="sliding_window", window="4", layers="2", token="15", layer="1")
    assert any("can draw on positions 12–15 (1 interval)." in m.value for m in at.markdown)


def test_traced_token_follows_n_until_one_is_picked():
    at = open_page(stack="pattern", pattern="sliding_window", window="4")
    assert at.number_input(key="token").value == 255  # N = 256 by default: the last token
    at.number_input(key="n").set_value(1024).run()
    assert not at.exception and at.number_input(key="token").value == 1023
    assert metric(at, "Share of its context").help.endswith("0..1,023")
    at.number_input(key="token").set_value(100).run()
    at.number_input(key="n").set_value(2048).run()
    assert at.number_input(key="token").value == 100  # a picked token stays
    at.number_input(key="n").set_value(64).run()  # ... unless N shrinks past it
    assert not at.exception and not at.error and at.number_input(key="token").value == 63
    assert any("Token 100 is past the end of N = 64" in i.value for i in at.info)


def test_link_token_past_n_traces_the_last_token():
    at = open_page(n="64", token="1000", stack="pattern", pattern="sliding_window", window="4", layers="8")
    assert not at.exception and not at.error
    assert at.number_input(key="token").value == 63
    assert metric(at, "Reach after layer").value == f"{sliding_window_reach(63, 2, 4)} tokens"
    at = open_page(n="64", token="10")  # a link's token is a choice: N does not move it
    at.number_input(key="n").set_value(128).run()
    assert at.number_input(key="token").value == 10


def test_picking_a_model_stack_raises_a_short_n():
    at = open_page(stack="pattern", pattern="sliding_window", window="4")  # N = 256
    at.selectbox(key="stack").set_value("mistral-7b-v0.1").run()
    assert not at.exception and not at.error
    assert at.number_input(key="n").value == 32768 and at.number_input(key="token").value == 32767
    assert any("N raised to 32,768" in c.value for c in at.caption)
    # 4,096-token windows over 32 layers: token 32,767 sees all of 0..32,767 from layer 9 (9·4095+1 >= 32768 > 8·4095+1).
    assert metric(at, "Whole context").value == "layer 9"
    at.number_input(key="n").set_value(65536).run()
    at.selectbox(key="stack").set_value("longformer-base").run()
    assert at.number_input(key="n").value == 65536  # a longer N is kept


def test_a_bidirectional_mask_counts_every_position_as_context():
    # Full attention from token 10 of 64: all 64 positions reach it at layer 1, which is 100%, not 582%.
    at = open_page(pattern="full", n="64", token="10", layer="1", layers="4")
    assert not at.exception and not at.error
    assert metric(at, "Reach after layer").value == "64 tokens"
    assert metric(at, "Share of its context").value == "100%"
    assert metric(at, "Share of its context").help == "of its context: all 64 tokens (the mask is bidirectional)"
    assert metric(at, "Whole context").value == "layer 1"
    # A band |q − k| <= 3 from token 10: [7, 13] at layer 1 (7 of 64), and it still grows at layer 2.
    at = open_page(pattern="band", window="6", n="64", token="10", layer="1", layers="2")
    assert metric(at, "Reach after layer").value == "7 tokens"
    assert metric(at, "Share of its context").value == f"{7 / 64 * 100:.3g}%"
    assert metric(at, "Whole context").value == "not within 2"
    # Causal: the context is the token and those before it.
    at = open_page(pattern="sliding_window", window="4", n="64", token="10", layer="1", layers="2")
    assert metric(at, "Share of its context").help == "of its context: tokens 0..10"
    assert metric(at, "Share of its context").value == f"{4 / 11 * 100:.3g}%"


def test_a_share_short_of_the_whole_context_is_not_100_percent():
    # Mistral at 131,072 tokens: 32 layers of W = 4,096 reach 32·4095 + 1 = 131,041 of 131,072 tokens.
    at = open_page(stack="mistral-7b-v0.1", n="131072", layer="32")
    assert not at.exception and not at.error
    assert metric(at, "Reach after layer").value == "131,041 tokens"
    assert metric(at, "Share of its context").value == "99.98%"
    assert metric(at, "Whole context").value == "not within 32"
    assert any("draws on 131,041 of the 131,072 tokens of its context: it still grows" in c.value for c in at.caption)


def test_layers_needed_says_why_never():
    # Causal: a later token never reaches an earlier one, however deep.
    at = open_page(n="64", pattern="sliding_window", window="4", token="10", src="50")
    assert not at.exception and metric(at, "Layers needed").value == "never"
    assert "comes after" in metric(at, "Layers needed").help
    # Chunks of 16 never mix: token 5 cannot reach token 40, and more layers would not help.
    at = open_page(n="64", pattern="chunked", chunk="16", token="40", src="5")
    assert metric(at, "Layers needed").value == "never" and "boundary" in metric(at, "Layers needed").help
    assert metric(at, "Whole context").value == "never"  # chunk 32..47 holds token 40 whatever the depth
    # Window 2 over 200 tokens: one token a layer, so 0 → 199 takes 199 layers, past the 64 traced.
    at = open_page(n="200", pattern="sliding_window", window="2", token="199", src="0")
    assert metric(at, "Layers needed").value == "not within 64"


def test_a_link_to_a_model_stack_raises_a_short_n():
    # As picking the stack in the sidebar does: Mistral's 4,096-token windows need more than N = 256.
    at = open_page(stack="mistral-7b-v0.1")
    assert not at.exception and not at.error
    assert at.number_input(key="n").value == 32768 and at.number_input(key="layers").value == 32
    assert any("N raised to 32,768" in c.value for c in at.caption)
    # What the link sets itself is kept.
    at = open_page(stack="mistral-7b-v0.1", n="1024", layers="4")
    assert at.number_input(key="n").value == 1024 and at.number_input(key="layers").value == 4


def test_a_window_past_n_is_named_as_on_the_explorer():
    at = open_page(n="64", pattern="sliding_window", window="100", token="63")
    assert not at.exception and not at.error
    assert [i.value for i in at.info if "no effect" in i.value] == [
        "Window 100 ≥ N = 64: every query already sees all its earlier keys; the window has no effect."]
    assert metric(at, "Whole context").value == "layer 1"


def test_a_layer_past_the_stack_is_said_and_clamped():
    at = open_page(n="64", layers="8", layer="50")
    assert not at.exception
    assert at.slider(key="layer").value == 8
    assert any("Layer 50 is past the 8 layers of this stack; showing layer 8." in i.value for i in at.info)
