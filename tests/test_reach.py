"""Receptive field against brute-force BFS over the layer graph and analytic answers."""

import json
import random

import numpy as np
import pytest

from attn import masks as M
from attn.presets import build_stack
from attn.reach import as_stack, layers_until, reach_matrix, reach_of_token, sliding_window_reach, until


def bfs_reach(target, n, token, layers):
    """Reach sets after layers 1..L by breadth-first search over (layer, position) nodes."""
    rules = list(as_stack(target, layers))
    dense = [r.dense(n).numpy() for r in rules]
    out = []
    for l in range(1, layers + 1):
        frontier, seen = {token}, {token}
        for j in range(l - 1, -1, -1):  # layer j+1 first, walking back to the input
            nxt = set(frontier)
            for q in frontier:
                nxt.update(np.flatnonzero(dense[j][q]).tolist())
            frontier = nxt
        out.append(frontier)
    return out


def rules_for(n):
    return [
        M.full(),
        M.causal(),
        M.sliding_window(4),
        M.band(6),
        M.dilated(9, 3),
        M.dilated(8, 2, False),
        M.local_global(3, [5]),
        M.bigbird(3, [0], 2, 1, 4, n),
        M.strided(5),
        M.chunked(7),
        M.chunked(6, causal=False),
        M.sinks(2, 3),
        M.prefix_lm(9),
        M.document([n // 2, n - n // 2]),
    ]


@pytest.mark.parametrize("n", [2, 13, 60])
def test_every_pattern_matches_bfs(n):
    for rule in rules_for(n):
        for token in {0, n // 3, n - 1}:
            ref = bfs_reach(rule, n, token, 4)
            got = reach_of_token(rule, n, token, 4)
            for l in range(4):
                assert set(np.flatnonzero(got.sets[l]).tolist()) == ref[l], (rule.label, token, l)
            assert set(np.flatnonzero(reach_matrix(rule, n, 4)[token]).tolist()) == ref[3]


def test_random_stacks_match_bfs():
    rng = random.Random(0)
    n = 300
    pool = rules_for(n)
    for _ in range(6):
        cycle = tuple(rng.choice(pool) for _ in range(rng.randint(2, 4)))
        stack = M.LayerStack("random", cycle, 6)
        for token in (rng.randrange(n), n - 1):
            ref = bfs_reach(stack, n, token, 6)
            got = reach_of_token(stack, n, token, 6)
            assert [set(np.flatnonzero(s).tolist()) for s in got.sets] == ref


@pytest.mark.parametrize("window", [2, 4, 128])
def test_sliding_window_analytic(window):
    n = 1000
    for token in (0, 57, 999):
        got = reach_of_token(M.sliding_window(window), n, token, 12)
        assert got.counts == [sliding_window_reach(token, l, window) for l in range(1, 13)]
        # and the reach is the contiguous block that ends at the token
        last = got.sets[-1]
        assert last[token - got.counts[-1] + 1 : token + 1].all() and last.sum() == got.counts[-1]


def test_mistral_reach_at_131072():
    got = reach_of_token(M.sliding_window(4096), 131072, 131071, 32)
    assert got.counts[-1] == 32 * 4095 + 1 == 131041
    assert got.full_context_layer is None


def test_chunked_never_leaves_its_chunk():
    got = reach_of_token(M.chunked(64), 1024, 700, 40)
    assert all(c == 700 - 640 + 1 for c in got.counts)
    assert not got.sets[:, :640].any() and not got.sets[:, 704:].any()


@pytest.mark.parametrize("n", [13, 60])
def test_whole_context_is_0_to_token_only_under_a_causal_mask(n):
    # Reference: a mask is causal when its dense matrix has nothing above the diagonal; then a
    # token's context is 0..token, else all n positions. The first layer at which the BFS reach
    # covers that context is the whole-context layer, and no share can pass 100%.
    for rule in rules_for(n):
        causal = not np.triu(rule.dense(n).numpy(), 1).any()
        for token in {0, n // 3, n - 1}:
            got = reach_of_token(rule, n, token, 6)
            context = token + 1 if causal else n
            assert got.context == context, (rule.label, token)
            ref = bfs_reach(rule, n, token, 6)
            first = next((l + 1 for l in range(6) if len(ref[l]) == context), None)
            assert got.full_context_layer == first, (rule.label, token)
            assert max(got.counts) <= got.context


def test_bidirectional_reach_counts_later_tokens():
    # Full attention from token 10 of 64: every position at layer 1, 100% of a 64-token context.
    got = reach_of_token(M.full(), 64, 10, 2)
    assert got.counts == [64, 64] and got.context == 64 and got.full_context_layer == 1
    # A band of |q − k| <= 3 grows 3 a side per layer: [10 − 3l, 10 + 3l], all of 0..63 at l = 18.
    got = reach_of_token(M.band(6), 64, 10, 20)
    assert got.counts[:4] == [7, 13, 19, 23] and got.full_context_layer == 18  # [1, 19], then [0, 22]


def test_local_global_reaches_everything_by_layer_2():
    n = 500
    got = reach_of_token(M.local_global(4, [10]), n, 400, 3)  # Longformer: bidirectional
    assert got.counts[0] == 5 + 1 and got.counts[1] == n and got.full_context_layer == 2
    # Made causal, the global token only gathers its own past: two hops no longer reach everything.
    causal = reach_of_token(M.local_global(4, [10], causal=True), n, 400, 3)
    assert causal.sets[1][:11].all() and not causal.sets[1][11:390].any()


def test_gemma2_stack_at_131072():
    got = reach_of_token(build_stack("sliding_window window=4096 | causal", 42, 131072), 131072, 131071, 42)
    assert got.counts[0] == 4096 and got.counts[1] == 131072 and got.full_context_layer == 2


def test_layers_until():
    # token 1000 sees token 0 once l·(W−1)+1 >= 1001
    assert layers_until(M.sliding_window(128), 2048, 0, 1000) == -(-1000 // 127)
    assert layers_until(M.chunked(64), 1024, 0, 700) is None


def bfs_until(target, n, source, dest, max_layers):
    """(fewest layers, whether the reach had stopped growing) by BFS, independent of reach.py."""
    ref = bfs_reach(target, n, dest, max_layers)
    hit = next((l + 1 for l in range(max_layers) if source in ref[l]), None)
    return hit, ref[-1] == ref[-2]


@pytest.mark.parametrize("rule, n, source, dest, why", [
    (M.sliding_window(4), 40, 10, 25, None),  # 5 layers: 3 positions a hop
    (M.sliding_window(4), 40, 30, 10, "later"),  # causal: a later source never reaches
    (M.chunked(8), 40, 3, 20, "closed"),  # other chunk: the reach stops at 16..23
    (M.chunked(8, causal=False), 40, 30, 20, "closed"),  # bidirectional, still another chunk
    (M.band(4), 40, 39, 0, "deeper"),  # 2 positions a layer: 39 needs 20 layers, more than the 6 traced
    (M.band(4), 40, 9, 0, None),  # bidirectional: a later source reaches an earlier token
])
def test_until_says_why_no_depth_is_found(rule, n, source, dest, why):
    got = until(rule, n, source, dest, max_layers=6)
    hit, stopped = bfs_until(rule, n, source, dest, 6)
    assert got.layers == hit and got.why == why
    if why in ("later", "closed"):
        assert stopped  # the BFS reach had stopped growing too
    if why == "deeper":
        assert not stopped and until(rule, n, source, dest, max_layers=20).layers == 20


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: reach_of_token(M.causal(), 64, 3, 0), "between 1 and 64"),
        (lambda: reach_of_token(M.causal(), 64, 3, 65), "between 1 and 64"),
        (lambda: reach_of_token(M.causal(), 64, 64, 2), "from 0 to 63"),
        (lambda: reach_of_token(M.causal(), 64, -1, 2), "from 0 to 63"),
        (lambda: build_stack("", 4), "empty"),
        (lambda: reach_matrix(M.causal(), 2000, 2), "up to N = 1024"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.fixture
def run_cli(attn_cli):
    return lambda *args: attn_cli("reach", *args)


def test_cli_reach_json(run_cli):
    r = run_cli("--pattern", "sliding_window", "--window", "4", "--n", "64", "--layers", "5", "--token", "63", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["reach"] == [sliding_window_reach(63, l, 4) for l in range(1, 6)]
    assert out["full_context_layer"] is None and out["context"] == 64
    r = run_cli("--pattern", "full", "--n", "64", "--layers", "2", "--token", "10", "--json")
    assert json.loads(r.stdout)["context"] == 64 and json.loads(r.stdout)["full_context_layer"] == 1
    r = run_cli("--stack", "chunked chunk=16 | causal", "--n", "64", "--layers", "3", "--json")
    assert json.loads(r.stdout)["reach"] == [16, 64, 64]
    # A model preset, under its name and under the name earlier versions used: the same reach.
    new, old = (json.loads(run_cli("--preset", name, "--n", "8192", "--layers", "3", "--json").stdout)["reach"]
                for name in ("gemma-2-9b", "gemma2-9b"))
    assert new == old == [4096, 8192, 8192]  # local layer (window 4096), then a global one


@pytest.mark.parametrize(
    "args",
    [["--pattern", "causal", "--n", "64", "--layers", "0"], ["--pattern", "causal", "--n", "64", "--layers", "2", "--token", "64"],
     ["--stack", "", "--n", "64", "--layers", "2"], ["--preset", "nope", "--n", "64", "--layers", "2"]],
)
def test_cli_reach_bad_input_exits_2(args, run_cli):
    r = run_cli(*args)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
