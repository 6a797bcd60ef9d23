"""Every pattern against a brute-force double loop over (q, k) written from the definitions."""

import numpy as np
import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask

from attn import masks as M
from attn.render import row_counts, tile_overview

SIZES = [1, 2, 7, 64, 257]


def brute(n, allowed):
    return np.array([[bool(allowed(q, k)) for k in range(n)] for q in range(n)], dtype=bool)


def bigbird_ref(window, globals_, r, seed, block, n, causal):
    """Reference BigBird: the random draws are re-derived per block with Python ints."""

    def draws(qb):
        nb = qb + 1 if causal else -(-n // block)
        out = set()
        for j in range(r):
            lo, hi = j * nb // r, (j + 1) * nb // r
            if hi > lo:
                out.add(lo + M._mix(qb, j, seed) % (hi - lo))
        return out

    table = {qb: draws(qb) for qb in range(-(-n // block))}

    def allowed(q, k):
        local = (0 <= q - k < window) if causal else abs(q - k) <= window // 2
        ok = local or k in globals_ or q in globals_ or (k // block) in table[q // block]
        return ok and (k <= q or not causal)

    return allowed


# (factory(n) -> rule, reference predicate factory(n) -> allowed(q, k))
CASES = {
    "full": (lambda n: M.full(), lambda n: lambda q, k: True),
    "causal": (lambda n: M.causal(), lambda n: lambda q, k: k <= q),
    "sliding_window_1": (lambda n: M.sliding_window(1), lambda n: lambda q, k: k == q),
    "sliding_window_4": (lambda n: M.sliding_window(4), lambda n: lambda q, k: k <= q and q - k < 4),
    "sliding_window_ge_n": (lambda n: M.sliding_window(n + 3), lambda n: lambda q, k: k <= q),
    "band_1": (lambda n: M.band(1), lambda n: lambda q, k: q == k),
    "band_6": (lambda n: M.band(6), lambda n: lambda q, k: abs(q - k) <= 3),
    "band_7": (lambda n: M.band(7), lambda n: lambda q, k: abs(q - k) <= 3),
    "dilated_causal": (lambda n: M.dilated(9, 3), lambda n: lambda q, k: 0 <= q - k < 9 and (q - k) % 3 == 0),
    "dilated_bidir": (lambda n: M.dilated(10, 2, False), lambda n: lambda q, k: abs(q - k) <= 5 and (q - k) % 2 == 0),
    "dilated_1": (lambda n: M.dilated(5, 1), lambda n: lambda q, k: 0 <= q - k < 5),
    "local_global": (
        lambda n: M.local_global(4, [0, n - 1]),
        lambda n: lambda q, k: abs(q - k) <= 2 or k in (0, n - 1) or q in (0, n - 1),
    ),
    "local_global_runs_causal": (
        lambda n: M.local_global(3, [i for i in (1, 2, 3, 40) if i < n], causal=True),
        lambda n: lambda q, k: k <= q and (q - k < 3 or k in (1, 2, 3, 40) or q in (1, 2, 3, 40)),
    ),
    "bigbird": (
        lambda n: M.bigbird(4, [0], 2, 7, 4, n),
        lambda n: bigbird_ref(4, {0}, 2, 7, 4, n, False),
    ),
    "bigbird_causal": (
        lambda n: M.bigbird(3, [n - 1], 3, 1, 8, causal=True),
        lambda n: bigbird_ref(3, {n - 1}, 3, 1, 8, n, True),
    ),
    "strided": (lambda n: M.strided(4), lambda n: lambda q, k: k <= q and (q - k < 4 or (q - k) % 4 == 0)),
    "strided_1": (lambda n: M.strided(1), lambda n: lambda q, k: k <= q),
    "chunked": (lambda n: M.chunked(5), lambda n: lambda q, k: q // 5 == k // 5 and k <= q),
    "chunked_bidir": (lambda n: M.chunked(6, causal=False), lambda n: lambda q, k: q // 6 == k // 6),
    "sinks": (lambda n: M.sinks(2, 3), lambda n: lambda q, k: k <= q and (k < 2 or q - k < 3)),
    "sinks_0": (lambda n: M.sinks(0, 3), lambda n: lambda q, k: 0 <= q - k < 3),
    "prefix_lm": (lambda n: M.prefix_lm(5), lambda n: lambda q, k: k < 5 or k <= q),
    "prefix_lm_empty": (lambda n: M.prefix_lm(0), lambda n: lambda q, k: k <= q),
    "document": (
        lambda n: M.document([n // 3, n - 2 * (n // 3), n // 3] if n >= 3 else [n]),
        lambda n: _doc_ref([n // 3, n - 2 * (n // 3), n // 3] if n >= 3 else [n], True),
    ),
    "document_bidir": (
        lambda n: M.document([1] * (n % 2) + [2] * (n // 2), causal=False),
        lambda n: _doc_ref([1] * (n % 2) + [2] * (n // 2), False),
    ),
    "or_window_prefix": (
        lambda n: M.or_masks(M.sliding_window(2), M.prefix_lm(3)),
        lambda n: lambda q, k: (k <= q and q - k < 2) or k < 3 or k <= q,
    ),
    "and_band_causal": (lambda n: M.and_masks(M.band(8), M.causal()), lambda n: lambda q, k: k <= q and q - k <= 4),
    "not_window": (lambda n: M.not_mask(M.sliding_window(3)), lambda n: lambda q, k: not (k <= q and q - k < 3)),
    "not_local_global": (
        lambda n: M.not_mask(M.local_global(2, [0])),
        lambda n: lambda q, k: not (abs(q - k) <= 1 or k == 0 or q == 0),
    ),
    "and_dilated_causal": (lambda n: M.and_masks(M.dilated(6, 2, False), M.causal()), lambda n: lambda q, k: 0 <= q - k <= 3 and (q - k) % 2 == 0),
}


def _doc_ref(lengths, causal):
    doc = [i for i, L in enumerate(lengths) for _ in range(L)]
    return lambda q, k: doc[q] == doc[k] and (k <= q or not causal)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_dense_matches_brute_force(case, n):
    make_rule, make_ref = CASES[case]
    rule = make_rule(n)
    expected = brute(n, make_ref(n))
    assert np.array_equal(rule.dense(n).numpy(), expected)
    # The exact row form (intervals / progressions) counts the same keys per query.
    assert np.array_equal(row_counts(rule, n), expected.sum(axis=1))


@pytest.mark.parametrize("window", [1, 2, 3, 16, 300])
@pytest.mark.parametrize("n", [1, 7, 64, 257])
def test_sliding_window_matches_textbook_oracle(window, n):
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    masked = (j > i) | ((i - j) >= window)
    assert torch.equal(M.sliding_window(window).dense(n), ~masked)


def test_bigbird_draws_distinct_blocks():
    n, block, r = 256, 8, 4
    rule = M.bigbird(1, [], r, 3, block, n)
    dense = rule.dense(n).numpy()
    for qb in range(n // block):
        row = dense[qb * block]  # window 1 = only the diagonal; other keys come from random blocks
        blocks = {k // block for k in np.flatnonzero(row)} - {qb}
        assert len(blocks) in (r, r - 1)  # r distinct draws, one may be the query's own block


def test_bigbird_seed_changes_mask():
    a = M.bigbird(4, [0], 2, 0, 8, 256).dense(256)
    b = M.bigbird(4, [0], 2, 1, 8, 256).dense(256)
    assert not torch.equal(a, b)
    assert torch.equal(a, M.bigbird(4, [0], 2, 0, 8, 256).dense(256))


RULES_FOR_FLEX = [
    M.full(),
    M.causal(),
    M.sliding_window(5),
    M.band(6),
    M.dilated(9, 3),
    M.local_global(4, [0, 5, 255]),
    M.bigbird(8, [0], 3, 1, 16, 256),
    M.bigbird(8, [0], 3, 1, 16, causal=True),
    M.strided(4),
    M.chunked(10),
    M.sinks(2, 5),
    M.prefix_lm(10),
    M.document([100, 56, 100]),
    M.not_mask(M.sliding_window(5)),
    M.and_masks(M.band(20), M.causal()),
]


@pytest.mark.parametrize("rule", RULES_FOR_FLEX, ids=lambda r: r.label)
def test_create_block_mask_accepts_rule_on_cpu(rule):
    n, block = 256, 16
    bm = create_block_mask(rule.mask_mod, B=None, H=None, Q_LEN=n, KV_LEN=n, device="cpu", BLOCK_SIZE=block)
    # Which 16x16 blocks FlexAttention will visit == blocks holding an allowed pair, counted independently.
    visited = bm.to_dense()[0, 0].bool().numpy()
    expected = tile_overview(rule, n, tile_size=block).counts > 0
    assert np.array_equal(visited, expected)


def test_layer_stack_gemma2_alternates():
    stack = M.gemma2_stack(layers=42, window=4096)
    rules = list(stack)
    assert len(rules) == 42
    assert rules[0].name == "sliding_window" and rules[1].name == "causal"
    assert all(r.name == ("sliding_window" if i % 2 == 0 else "causal") for i, r in enumerate(rules))
    with pytest.raises(ValueError, match="Layer 42"):
        stack.rule_for_layer(42)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: M.sliding_window(0), "window must be at least 1"),
        (lambda: M.sliding_window(-3), "window must be at least 1"),
        (lambda: M.build("sliding_window", 0, window=4), "between 1 and 131072"),
        (lambda: M.build("sliding_window", 131073, window=4), "between 1 and 131072"),
        (lambda: M.build("local_global", 8, window=2, global_tokens=(8,)), "Global token 8 does not exist"),
        (lambda: M.build("document", 10, lengths=(3, 4)), "add up to 7 tokens, but N is 10"),
        (lambda: M.build("nope", 8), "Unknown pattern"),
        (lambda: M.build("chunked", 8, chunk=0), "chunk size must be at least 1"),
        (lambda: M.sliding_window(4).dense(20000), "dense masks stop"),
        (lambda: M.document([5, 0]), "document length must be at least 1"),
        (lambda: M.bigbird(4, [0], 2, 0, 4), "needs N"),
    ],
)
def test_bad_input_raises_value_error_in_words(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_document_mask_follows_the_index_device():
    """flex_attention on a GPU calls mask_mod with CUDA indices; the document table must move with them.
    The meta device stands in for CUDA here: indexing a CPU table with meta indices fails the same way."""
    rule = M.document([3, 5])
    q = torch.arange(8, device="meta")[:, None]
    k = torch.arange(8, device="meta")[None, :]
    out = rule.mask_mod(torch.tensor(0, device="meta"), torch.tensor(0, device="meta"), q, k)
    assert out.device.type == "meta" and out.shape == (8, 8)
    assert rule.dense(8).tolist() == [[(q // 3 == k // 3 if max(q, k) < 3 else min(q, k) >= 3) and k <= q for k in range(8)] for q in range(8)]
