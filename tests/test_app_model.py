"""Model Attention page through AppTest, against values computed here from the model's logits."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from attn import masks, model

PAGE = Path(__file__).resolve().parent.parent / "app_pages" / "model_attention.py"


def open_page(**query):
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.query_params.update(query)
    return at.run()


def spec_array(z):
    """A Plotly JSON array: plain nested lists, or the typed form {dtype, bdata (base64), shape}."""
    if isinstance(z, dict):
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(
            [int(x) for x in str(z.get("shape", "-1")).split(",")])
    return np.asarray(z, dtype=float)


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


@pytest.fixture(scope="module")
def story_ids():
    doc = model.sample_doc("story")
    return model.encode(doc.text, 96).ids


def reference_perplexity(ids, rule):
    """exp(mean cross-entropy) from the logits, computed here rather than by token_losses."""
    logits = model.logits(list(ids), rule)  # (N, vocab)
    logp = torch.log_softmax(logits[:-1].double(), dim=-1)
    nll = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    return float(torch.exp(nll.mean()))


def test_attention_maps_view_draws_masked_and_full(story_ids):
    at = open_page(doc="story", tokens="96", pattern="sliding_window", window="8", layer="3", head="4")
    assert not at.exception and not at.error
    keys = [c.key for c in at.get("plotly_chart")]
    assert keys == ["fig_masked", "fig_full", "fig_grid"]
    # Side by side on one colour scale: its top is the larger of the two maps' largest weights.
    maps = [json.loads(c.proto.spec)["data"][0] for c in at.get("plotly_chart")[:2]]
    tops, peaks = [m["zmax"] for m in maps], [float(np.nanmax(spec_array(m["z"]))) for m in maps]
    assert tops[0] == tops[1] == pytest.approx(max(peaks), rel=1e-6)
    # The page's statement about weight outside the window, checked against the model's own maps.
    full = model.attention_maps(list(story_ids), None, layers=[3]).weights[0, 4]
    allowed = masks.sliding_window(8).dense(96).numpy()
    share = full[~allowed].sum() / full.sum()
    assert any(f"**{share:.1%}**" in m.value for m in at.markdown)


def test_loss_view_perplexities_match_the_logits(story_ids):
    at = open_page(doc="story", tokens="96", pattern="sliding_window", window="8", view="Loss per token")
    assert not at.exception and not at.error
    # fp32 losses on the page vs float64 here: equal to 1e-4 relative.
    masked = float(metric(at, "Perplexity under the mask"))
    full = float(metric(at, "Perplexity, full attention"))
    assert masked == pytest.approx(reference_perplexity(story_ids, masks.sliding_window(8)), rel=1e-4, abs=0.01)
    assert full == pytest.approx(reference_perplexity(story_ids, None), rel=1e-4, abs=0.01)
    assert masked > full  # an 8-token window without sinks hurts
    table = at.dataframe[0].value
    assert len(table) == 12 and (np.diff(table["change"].to_numpy()) <= 1e-9).all()  # worst first


def test_influence_is_zero_outside_the_reach():
    at = open_page(doc="story", tokens="64", stack="custom", custom="chunked chunk=16", view="Influence vs reach",
                   target_tok="40")
    assert not at.exception and not at.error
    # Chunks of 16 in every layer: token 40 (query 39) reaches only its chunk 32..47, i.e. positions 32..39.
    assert metric(at, "Positions the mask allows") == "8 of 40"
    # Nothing lies more than 64 tokens before token 40: a dash, not a 0% that reads as a finding.
    assert metric(at, "Influence from > 64 tokens back") == "—"


def test_influence_from_far_back_is_a_share_of_the_gradient():
    at = open_page(doc="story", tokens="128", pattern="full", view="Influence vs reach", target_tok="127")
    assert not at.exception and not at.error
    share = metric(at, "Influence from > 64 tokens back")
    assert share.endswith("%") and 0 < float(share[:-1]) < 100, share  # full attention: some, not all, from far back


def test_bad_input_gives_messages():
    at = open_page(doc="nope", tokens="5", view="Maps!", layer="99")
    assert not at.exception
    notices = " ".join(w.value for w in at.warning)
    for key in ("doc", "tokens", "view", "layer"):
        assert f"Ignored URL parameter {key}" in notices
    at = open_page(doc="paste")
    assert not at.exception
    assert any("empty" in i.value for i in at.info)
    at = open_page(doc="story", tokens="64", pattern="sliding_window", window="0")
    assert not at.exception
    at = open_page(doc="story", tokens="64", stack="custom", custom="sliding_window window=abc")
    assert not at.exception and at.error


def test_window_sweep_runs_on_request(story_ids):
    at = open_page(doc="story", tokens="96", view="Window sweep")
    assert not at.exception and not at.get("plotly_chart")  # nothing runs before the button
    at.multiselect(key="_windows").set_value([8, "full"]).run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert [c.key for c in at.get("plotly_chart")] == ["fig_sweep"]
    table = at.dataframe[0].value
    full = table[table["mask"] == "full causal"]["perplexity"].iloc[0]
    assert full == pytest.approx(reference_perplexity(story_ids, None), rel=1e-3)
    assert len(table) == 3  # window 8, full, and window 8 with 4 sinks
    # Seconds stay a number column; a row whose losses came from the cache has none of its own.
    assert table["forward (s)"].dtype.kind == "f"
    assert (table["forward (s)"].isna() == (table["losses"] == "reused from an earlier run")).all()


def test_a_one_token_text_gets_one_plain_message():
    at = open_page(doc="paste", view="Loss per token")
    at.text_area(key="_pasted").set_value("a").run()
    assert not at.exception and not at.error
    assert model.encode("a", 16).n == 1
    assert [i.value for i in at.info if "single token" in i.value] == [
        "This text is a single token: the decoder's views need at least 2 tokens (one to read, one to predict). "
        "Type a longer text, or pick the encoder view."]
    assert len(at.info) == 1  # not also "the window has no effect": with one token nothing does
    assert any("**1 token**" in m.value for m in at.markdown)
    assert not at.get("plotly_chart")


def test_a_window_longer_than_the_text_is_noted():
    # 16 tokens under a 64-token window: the mask changes nothing, and the page says so.
    at = open_page(doc="story", tokens="16", window="64", view="Attention maps")
    assert not at.exception
    assert any("Window 64 ≥ N = 16" in i.value and "no effect" in i.value for i in at.info), [i.value for i in at.info]
    at = open_page(doc="story", tokens="16", window="8", view="Attention maps")
    assert not any("no effect" in i.value for i in at.info)
