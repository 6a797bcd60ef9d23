"""The real model under masks (attn.model): every check compares with an independent computation.

The decoder is loaded once per session (first run ever: the GGUF is converted, ~30 s).
Sequences are short (≤ 160 tokens) so the file runs in about a minute on 2 CPU cores.
"""

import json
import math
import re

import numpy as np
import pytest
import torch

from attn import masks, model
from attn.presets import build_stack

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def lm():
    return model.load_model()


@pytest.fixture(scope="module")
def story_ids(lm):
    return model.encode(model.sample_doc("story").text, max_tokens=160).ids


def test_loads_once_and_concurrently(lm):
    import threading

    got = []
    threads = [threading.Thread(target=lambda: got.append(model.load_model())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(g is lm for g in got)
    assert lm.model.config._attn_implementation == "eager"
    assert (lm.path / "model.safetensors").is_file()


def test_model_shape_and_kv_groups_match_repeat_kv(lm):
    from transformers.models.llama.modeling_llama import repeat_kv

    info = model.model_info()
    assert (info.layers, info.heads, info.kv_heads, info.head_dim) == (30, 9, 3, 64)
    # Tag each KV head with its index and let transformers expand it to the query heads.
    kv = torch.arange(3, dtype=torch.float32).reshape(1, 3, 1, 1)
    expanded = repeat_kv(kv, 3).reshape(9).long().tolist()
    for kv_head, heads in enumerate(info.kv_groups):
        assert all(expanded[h] == kv_head for h in heads)
    assert sorted(h for g in info.kv_groups for h in g) == list(range(9))


# The default and custom causal paths run bit-identical here (0.0 apart, at 1 or 2 threads, before and
# after a flex compile). In 2 of 7 full fresh-clone runs on 2026-12-04 they were 3.6e-3 and 1.2e-2 apart:
# a state leak between tests not yet found, left visible rather than tolerated. A mask wrong by a
# single pair moves the logits by 4.8 (checked below).
LOGIT_TOL = 1e-4


def test_full_causal_custom_mask_reproduces_default_logits(story_ids):
    default = model.logits(story_ids)  # the model's own causal mask
    custom = model.logits(story_ids, masks.causal())  # our float additive 4D mask
    assert (default - custom).abs().max().item() <= LOGIT_TOL
    stacked = model.logits(story_ids, masks.LayerStack("causal", (masks.causal(),), 30))  # layered function
    assert (default - stacked).abs().max().item() <= LOGIT_TOL
    # The tolerance still sees one pair: a window of N - 1 masks only the last query's key 0.
    one_pair = model.logits(story_ids, masks.sliding_window(len(story_ids) - 1))
    assert (default - one_pair).abs().max().item() > 100 * LOGIT_TOL


def test_boolean_mask_would_be_misread_by_eager(lm, story_ids):
    """Why the mask is additive: eager adds a bool mask as 0/1 and the model is no longer causal."""
    ids = torch.tensor([story_ids[:64]])
    allowed = torch.tril(torch.ones(64, 64, dtype=torch.bool))[None, None]
    with torch.no_grad():
        wrong = lm.model(ids, attention_mask=allowed).logits[0]
    assert (wrong - model.logits(ids)).abs().max().item() > 1.0


def test_window_at_least_n_equals_full(story_ids):
    n = len(story_ids)
    assert np.array_equal(model.token_losses(story_ids, masks.sliding_window(n)), model.token_losses(story_ids))


BIGBIRD = masks.bigbird(4, (0,), random_blocks=2, seed=7, block=8, causal=True)

# Each rule with its textbook formula (q = query, k = key), written here independently of attn.masks.
ORACLES = [
    (masks.sliding_window(8), lambda q, k: (k <= q) & (q - k < 8)),
    (masks.sinks(2, 6), lambda q, k: (k <= q) & ((k < 2) | (q - k < 6))),
    (masks.dilated(12, 3), lambda q, k: (k <= q) & (q - k < 12) & ((q - k) % 3 == 0)),
    (masks.chunked(16), lambda q, k: (k <= q) & (q // 16 == k // 16)),
    # Bidirectional Longformer pattern: the decoder ANDs it with causal.
    (masks.local_global(6, (0, 5)), lambda q, k: (k <= q) & ((abs(q - k) <= 3) | np.isin(k, [0, 5]) | np.isin(q, [0, 5]))),
    (masks.strided(5), lambda q, k: (k <= q) & ((q - k < 5) | ((q - k) % 5 == 0))),
    (masks.band(6), lambda q, k: (k <= q) & (q - k <= 3)),
    (masks.document((20, 28)), lambda q, k: (k <= q) & ((q < 20) == (k < 20))),
    (masks.prefix_lm(10), lambda q, k: k <= q),  # the prefix's look-ahead is cut by causal
    # BigBird's random blocks come from a seeded hash: its own predicate is the oracle here.
    (BIGBIRD, lambda q, k: BIGBIRD.dense(48).numpy()),
]


@pytest.mark.parametrize("rule, oracle", ORACLES, ids=[r.name for r, _ in ORACLES])
def test_attention_zero_outside_mask_rows_sum_to_one(story_ids, rule, oracle):
    ids = story_ids[:48]
    maps = model.attention_maps(ids, rule, layers=[0, 17, 29])
    n = len(ids)
    q, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    allowed = oracle(q, k)
    assert maps.weights.shape == (3, 9, n, n)
    assert (maps.weights[..., ~allowed] == 0).all()
    assert (maps.weights[..., allowed] > 0).mean() > 0.99
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-5)


def test_per_layer_stack_applies_each_rule_in_its_layers(story_ids):
    ids = story_ids[:64]
    stack = build_stack("sliding_window window=4 | chunked chunk=16", 30, 64)
    got = model.attention_maps(ids, stack)
    local = model.attention_maps(ids, masks.sliding_window(4))
    q = np.arange(64)
    window = (q[None, :] <= q[:, None]) & (q[:, None] - q[None, :] < 4)
    chunk = (q[None, :] <= q[:, None]) & (q[:, None] // 16 == q[None, :] // 16)
    for layer in range(30):
        allowed = window if layer % 2 == 0 else chunk
        assert (got.weights[layer][:, ~allowed] == 0).all(), layer
        assert (got.weights[layer][:, allowed] > 0).mean() > 0.99, layer
    # Layer 0 sees the same input under the same rule, so its weights equal the single-rule run.
    np.testing.assert_allclose(got.weights[0], local.weights[0], atol=1e-6)
    # A uniform stack is the single rule, layer by layer.
    uniform = model.attention_maps(ids, masks.uniform_stack(masks.sliding_window(4), 30), layers=[0, 29])
    np.testing.assert_allclose(uniform.weights, local.weights[[0, 29]], atol=1e-5)


def test_perplexity_is_exp_mean_loss_from_logits(story_ids):
    rule = masks.sliding_window(16)
    lg = model.logits(story_ids, rule).double()  # (N, vocab)
    ids = torch.tensor(story_ids)
    logp = lg.log_softmax(-1)[torch.arange(len(ids) - 1), ids[1:]]  # log p(token t+1 | ..t)
    expected = math.exp(-logp.mean().item())
    assert model.token_losses(story_ids, rule).shape == (len(ids) - 1,)
    assert model.perplexity(story_ids, rule) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("doc", ["contract", "stockroom", "story", "meeting"])
def test_perplexity_orders_by_window_on_every_sample(doc):
    ids = model.encode(model.sample_doc(doc).text, max_tokens=256).ids
    sweep = model.window_sweep(ids, (16, 64, model.FULL))
    ppl = [p.perplexity for p in sweep]
    assert ppl[0] > ppl[1] > ppl[2], (doc, ppl)
    assert [p.window for p in sweep] == [16, 64, None]
    again = model.window_sweep(ids, (16, 37))  # 16 was computed above: reused, not timed as a forward
    assert [p.reused for p in again] == [True, False] and again[0].perplexity == ppl[0]


def test_influence_is_zero_outside_receptive_field(story_ids):
    ids = story_ids[:150]
    rule = masks.sliding_window(3)  # reach after 30 layers: 30·2+1 = 61 positions
    token = 140
    grad = model.influence(ids, rule, token)
    reach = model.receptive_field(rule, len(ids), token)
    assert reach.sum() == 61 and reach[token - 61 : token].all()
    assert (grad[~reach] == 0).all()
    assert (grad[token - 3 : token] > 0).all()  # the query's own window certainly matters
    # Full causal attention: earlier tokens outside that window do move the loss.
    full = model.influence(ids, None, token)
    assert (full[: token - 61] > 0).sum() > 10
    assert (full[token:] == 0).all()


def test_greedy_continuation_with_cache_equals_recomputing(story_ids):
    rule = masks.sliding_window(8)
    prompt = list(story_ids[:40])
    got = model.greedy_continuation(prompt, rule, 4)
    ids = list(prompt)
    for _ in range(4):
        ids.append(int(model.logits(ids, rule)[-1].argmax()))
    assert list(got.new_ids) == ids[40:]
    assert got.prompt_tokens == 40


def test_retrieval_probe_needs_the_fact_in_reach():
    full = model.retrieval_probe(None, 128, trials=2)
    assert full.accuracy == 1.0  # full attention copies the code from ~140 tokens back
    # Window 4: reach after 30 layers is 30·3+1 = 91 tokens, shorter than the gap to the code.
    cut = model.retrieval_probe(masks.sliding_window(4), 128, trials=2)
    assert all(t.gap_tokens > 91 for t in cut.trials)
    assert cut.accuracy == 0.0
    assert [t.expected for t in cut.trials] == [c for _, c in model.PROBE_FACTS[:2]]


def test_encoder_under_band_mask():
    text = "The lighthouse keeper turned the salt clock every morning at the turn of the tide."
    res = model.encoder_attention(text, masks.band(4))
    n = len(res.pieces)
    assert res.pieces[0] == "[CLS]" and res.pieces[-1] == "[SEP]"
    assert res.weights.shape == (6, 12, n, n)
    q = np.arange(n)
    allowed = np.abs(q[:, None] - q[None, :]) <= 2
    assert (res.weights[..., ~allowed] == 0).all()
    np.testing.assert_allclose(res.weights.sum(-1), 1.0, atol=1e-5)
    assert -1 <= res.cosine < 0.999
    assert model.encoder_attention(text).cosine == pytest.approx(1.0, abs=1e-6)


def test_pool_maps_are_exact_block_means():
    rng = np.random.default_rng(0)
    w = rng.random((2, 3, 10, 10))
    pooled = model.pool_maps(w, 4)  # blocks of rows/columns [0,2), [2,5), [5,8), [8,10)
    edges = [0, 2, 5, 8, 10]
    assert pooled.shape == (2, 3, 4, 4)
    for i in range(4):
        for j in range(4):
            block = w[..., edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
            np.testing.assert_allclose(pooled[..., i, j], block.mean(axis=(-2, -1)))
    np.testing.assert_array_equal(model.pool_maps(w, 64), w)  # never upsampled


def test_sample_docs_lengths():
    docs = model.sample_docs()
    assert {"contract", "stockroom", "story", "meeting"} <= {d.name for d in docs}
    for d in docs:
        assert 800 <= model.encode(d.text).total_tokens <= 3000, d.name
        assert d.dependency


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: model.encode("   \n"), "empty"),
        (lambda: model.check_text("x" * (model.MAX_DOC_CHARS + 1)), "limit"),
        (lambda: model.decode_text(b"caf\xe9"), "not UTF-8"),
        (lambda: model.attention_maps(list(range(1, model.limits().map_tokens + 2))), "at most"),
        (lambda: model.window_sweep([5, 6, 7], (16, 0)), "at least 1"),
        (lambda: model.token_losses([5]), "at least 2"),
        (lambda: model.influence([5, 6, 7], None, 0), "token 0 has no loss"),
        (lambda: model.greedy_continuation([5, 6], None, 0), "between 1 and"),
        (lambda: model.greedy_continuation([5, 6], masks.document((1, 1))), "exactly 2 tokens"),
        (lambda: model.token_losses([5, 6, 7], masks.document((1, 1))), "defined for N = 2"),
    ],
)
def test_bad_input_is_refused_in_words(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_cli_ppl_json(tmp_path, attn_cli):
    doc = tmp_path / "doc.txt"
    doc.write_text(model.sample_doc("meeting").text, encoding="utf-8")
    args = ["ppl", "--doc", str(doc), "--pattern", "sliding_window", "--window", "16", "--max-tokens", "96", "--json"]
    r = attn_cli(*args)  # in-process: the model is loaded once for the module
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["tokens"] == 96 and out["truncated"] is True
    assert out["perplexity"] == pytest.approx(math.exp(out["mean_loss"]), rel=1e-9)
    ids = model.encode(doc.read_text(encoding="utf-8"), 96).ids
    assert out["perplexity"] == pytest.approx(model.perplexity(ids, masks.sliding_window(16)), rel=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--doc", "LATIN1"], "not UTF-8"),
        (["--doc", "MISSING"], "No such document"),
        (["--doc", "story", "--pattern", "sliding_window", "--window", "0"], "at least 1"),
        (["--doc", "story", "--n", "64"], "--max-tokens"),
        (["--doc", "story", "--max-tokens", "1"], "between 2 and"),
    ],
)
def test_cli_ppl_bad_input(tmp_path, capsys, args, message):
    """In-process (the model is already loaded): exit 2 and one sentence, no traceback."""
    from attn.cli import main

    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9 au lait")
    paths = {"LATIN1": str(bad), "MISSING": str(tmp_path / "missing.txt")}
    assert main(["ppl", *[paths.get(a, a) for a in args]]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_hardest_tokens_against_a_hand_example():
    # ids:     0  1  2  3  4  5 ; token 5 (id 7) repeats token 1, 4 back; token 3 (id 9) has no copy.
    ids = [5, 7, 8, 9, 8, 7]
    full = np.array([1.0, 1.0, 1.0, 1.0, 1.0])  # losses of tokens 1..5
    masked = np.array([1.0, 1.5, 3.0, 1.2, 4.0])
    window2 = np.tril(np.ones((6, 6), bool)) & ~np.tril(np.ones((6, 6), bool), -2)  # q sees q-1, q
    got = model.hardest_tokens(ids, masked, full, window2, top=3)
    assert [h.token for h in got] == [5, 3, 2]
    assert (got[0].copy_distance, got[0].copy_in_view) == (4, False)  # query 4 cannot see position 1
    assert got[1].copy_distance is None and got[1].why == "no earlier copy of this token"
    assert got[2].change == pytest.approx(0.5) and got[2].copy_distance is None
    assert model.hardest_tokens(ids, masked, full, None, top=1)[0].copy_in_view is None
    near = model.hardest_tokens([1, 2, 2], np.array([0.0, 2.0]), np.zeros(2), window2[:3, :3], top=1)[0]
    assert (near.token, near.copy_distance, near.copy_in_view) == (2, 1, True)


def test_a_split_emoji_is_labelled_with_its_bytes(lm):
    # Byte-level BPE splits 😀 over tokens that decode alone to U+FFFD; their labels must show the
    # bytes instead, and those bytes, joined, are the emoji's UTF-8 encoding.
    text = "I love 😀 pizza 🍕 and café"
    ids = lm.tokenizer(text)["input_ids"]
    pieces = model.token_pieces(lm.tokenizer, ids)
    assert all("\ufffd" not in p for p in pieces), pieces
    assert "".join(lm.tokenizer.decode([i]) for i in ids).count("\ufffd") >= 2  # what plain decode shows
    hexes = " ".join(h for p in pieces for h in re.findall(r"⟨([0-9A-F ]+)⟩", p))
    assert bytes.fromhex(hexes) == "😀🍕".encode()
    assert [p for p in pieces if "⟨" not in p] == ["I", " love", " pizza", " and", " café"]
