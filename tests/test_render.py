"""Tile overview and statistics against dense-then-average and analytic counts."""

import numpy as np
import pytest

from attn import masks as M
from attn.render import first_cut_row, mask_csv, mask_stats, row_counts, tile_overview

RULES = [
    lambda n: M.sliding_window(37),
    lambda n: M.band(50),
    lambda n: M.dilated(64, 3),
    lambda n: M.local_global(16, [0, 500, n - 1]),
    lambda n: M.bigbird(16, [0], 3, 5, 32, n),
    lambda n: M.strided(31),
    lambda n: M.chunked(100),
    lambda n: M.sinks(4, 20),
    lambda n: M.prefix_lm(300),
    lambda n: M.document([400, 100, n - 500]),
    lambda n: M.not_mask(M.local_global(16, [3])),
]


@pytest.mark.parametrize("n", [1000, 1024])
@pytest.mark.parametrize("tiles", [512, 100, 7])
@pytest.mark.parametrize("make", RULES)
def test_overview_equals_dense_then_average(make, n, tiles):
    rule = make(n)
    dense = rule.dense(n).numpy().astype(np.int64)
    ov = tile_overview(rule, n, tiles)
    e = ov.edges
    assert e[0] == 0 and e[-1] == n
    counts = np.add.reduceat(np.add.reduceat(dense, e[:-1], axis=0), e[:-1], axis=1)
    sizes = np.diff(e)
    # Exact equality of fractions: same integer counts over the same areas.
    assert np.array_equal(ov.counts, counts)
    assert np.array_equal(ov.fractions, counts / (sizes[:, None] * sizes[None, :]))


@pytest.mark.parametrize("tiles", [7, 512])
@pytest.mark.parametrize("make", [lambda: M.strided(31), lambda: M.dilated(64, 3), lambda: M.dilated(5, 7, causal=False)])
def test_strided_key_sets_over_several_query_chunks_equal_dense(make, tiles):
    """N = 5,000 spans three chunks of the strided (progression) path, and a tile of 715 rows (7 tiles)
    is split between two chunks: each chunk's rows must add into their tile rows exactly."""
    n = 5000
    rule = make()
    dense = rule.dense(n).numpy().astype(np.int64)
    e = tile_overview(rule, n, tiles).edges
    counts = np.add.reduceat(np.add.reduceat(dense, e[:-1], axis=0), e[:-1], axis=1)
    assert np.array_equal(tile_overview(rule, n, tiles).counts, counts)


def test_predicate_only_rule_uses_dense_path():
    base = M.sliding_window(5)
    rule = M.MaskRule("custom", (), base.mask_mod)  # no interval form
    assert np.array_equal(tile_overview(rule, 300, 16).counts, tile_overview(base, 300, 16).counts)
    with pytest.raises(ValueError, match="predicate"):
        tile_overview(rule, 131072)


N = 131072


def test_sliding_window_131072_analytic():
    w = 4096
    ov = tile_overview(M.sliding_window(w), N, 512)
    assert ov.tile_size == 256 and ov.counts.shape == (512, 512)
    assert ov.counts.sum() == w * (w + 1) // 2 + (N - w) * w
    # A tile row far from the start: the diagonal tile is a causal triangle of 256·257/2 pairs.
    assert ov.counts[100, 100] == 256 * 257 // 2
    assert ov.counts[100, 99] == 256 * 256  # fully inside the window
    assert ov.counts[100, 83] == 0  # 17 tiles (4352 tokens) back: beyond the window


def test_single_global_token_visible_at_131072():
    ov = tile_overview(M.local_global(256, [0]), N, 512)
    # Key 0 is seen by all 256 queries of every tile row: 256 of its column's pairs at least.
    assert (ov.counts[:, 0] >= 256).all()
    assert (ov.fractions[:, 0] > 0).all() and (ov.fractions[0, :] > 0).all()
    half = 128
    expected_total = sum(min(q + half, N - 1) - max(q - half, 0) + 1 for q in range(N)) + 2 * (N - 1) - (2 * half)
    assert ov.counts.sum() == expected_total


def test_stats_match_dense():
    n = 777
    rule = M.bigbird(10, [0, 3], 2, 0, 16, n)
    d = rule.dense(n).numpy()
    s = mask_stats(rule, n)
    assert s.allowed_pairs == d.sum()
    assert (s.min_keys, s.max_keys) == (d.sum(1).min(), d.sum(1).max())
    assert s.density_vs_full == d.sum() / n**2
    assert s.density_vs_causal == d.sum() / (n * (n + 1) / 2)
    blocks = np.add.reduceat(np.add.reduceat(d.astype(int), np.arange(0, n, 128), 0), np.arange(0, n, 128), 1)
    assert s.blocks_touched == (blocks > 0).sum() and s.blocks_total == 7 * 7
    assert s.useful_flops(64) == 4 * 64 * d.sum()


def test_row_counts_dilated_131072_analytic():
    counts = row_counts(M.dilated(512, 4), N)
    q = np.arange(N)
    assert np.array_equal(counts, np.minimum(q, 511) // 4 + 1)


def test_mask_csv_round_trips():
    m = M.sinks(2, 3).dense(9).numpy().astype(np.uint8)
    text = mask_csv(m).decode()
    back = np.array([[int(x) for x in line.split(",")] for line in text.strip().split("\n")])
    assert np.array_equal(back, m)


@pytest.mark.parametrize("make, n", [
    (lambda: M.sliding_window(64), 256), (lambda: M.sliding_window(64), 64), (lambda: M.causal(), 50),
    (lambda: M.full(), 50), (lambda: M.chunked(8), 40), (lambda: M.local_global(4, (0,), False), 30),
    (lambda: M.sinks(2, 5), 30), (lambda: M.dilated(3, 2), 30),
])
def test_first_cut_row_against_the_dense_mask(make, n):
    rule = make()
    allowed = rule.dense(n).numpy() & np.tri(n, dtype=bool)  # ANDed with causal, pair by pair
    short = [q for q in range(n) if allowed[q, : q + 1].sum() < q + 1]
    assert first_cut_row(rule, n) == (short[0] if short else None)
    if rule.name == "sliding_window":
        assert first_cut_row(rule, n) == (64 if n > 64 else None)


def test_blocks_counted_once_give_the_same_stats_and_sweep():
    """mask_stats and block_size_sweep given the blocks already counted (the Explorer's cached view)
    answer as when they count them, and refuse blocks of another rule, size or length."""
    from attn.render import block_kinds, block_size_sweep

    n, rule = 1000, M.strided(31)
    known = block_kinds(rule, n, 64)
    assert mask_stats(rule, n, 64, blocks=known) == mask_stats(rule, n, 64)
    sizes = (16, 64, 256)
    assert block_size_sweep(rule, n, sizes, known=known) == block_size_sweep(rule, n, sizes)
    for wrong in (block_kinds(M.strided(30), n, 64), block_kinds(rule, 999, 64), block_kinds(rule, n, 32)):
        with pytest.raises(ValueError, match="blocks given are"):
            mask_stats(rule, n, 64, blocks=wrong)
    with pytest.raises(ValueError, match="blocks given are"):
        block_size_sweep(rule, n, sizes, known=block_kinds(M.strided(30), n, 64))


@pytest.mark.parametrize("strip_cells", [1 << 20, 50, 1])
@pytest.mark.parametrize("make", RULES + [lambda n: M.MaskRule("custom", (), M.sliding_window(5).mask_mod)])
def test_blocks_touched_in_strips_equals_dense(make, strip_cells, monkeypatch):
    """Counted a strip of block rows at a time (down to one row a strip), the blocks touched are the dense
    mask's non-empty blocks, for every pattern and a predicate-only rule."""
    import attn.render as R

    monkeypatch.setattr(R, "_STRIP_CELLS", strip_cells)
    n, block = 1000, 64
    rule = make(n)
    d = rule.dense(n).numpy().astype(np.int64)
    starts = np.arange(0, n, block)
    dense_blocks = np.add.reduceat(np.add.reduceat(d, starts, axis=0), starts, axis=1)
    assert R.blocks_touched(rule, n, block) == (int((dense_blocks > 0).sum()), 16 * 16)


def test_blocks_touched_at_131072_without_the_whole_grid():
    """A causal window of 8 in blocks of 32 touches the diagonal block and, below the first row, the one
    left of it (queries 32r..32r+6 see keys of the block before): 2T - 1 of T² blocks, counted without
    holding the T × T grid (4,096² counts, 128 MiB in int64)."""
    import tracemalloc

    from attn.render import blocks_touched

    t = N // 32
    tracemalloc.start()
    try:
        assert blocks_touched(M.sliding_window(8), N, 32) == (2 * t - 1, t * t)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak
    s = mask_stats(M.sliding_window(8), N, block_size=32)
    assert (s.blocks_touched, s.blocks_total) == (2 * t - 1, t * t)


def test_grids_too_fine_to_count_are_refused_before_anything_is_allocated():
    """131,072² tiles would be 128 GiB of counts: refused in words, naming the coarsest size that fits."""
    from attn.limits import BLOCKS_TOUCHED_MAX, TILES_MAX
    from attn.render import block_kinds, blocks_touched

    rule = M.causal()
    with pytest.raises(ValueError, match=r"131,072 × 131,072 blocks; exact counts stop at 4,096 a side \(blocks of 32"):
        block_kinds(rule, N, 1)
    with pytest.raises(ValueError, match=r"65,536 × 65,536 tiles"):
        tile_overview(rule, N, tiles=100_000)
    with pytest.raises(ValueError, match=r"16,384 × 16,384 blocks; exact counts stop at 8,192 a side \(blocks of 16"):
        blocks_touched(rule, N, 8)
    # At the limits themselves they are counted (causal: the lower triangle of blocks).
    t = TILES_MAX
    assert tile_overview(rule, t, tile_size=1).counts.sum() == t * (t + 1) // 2
    assert blocks_touched(rule, N, N // BLOCKS_TOUCHED_MAX) == (BLOCKS_TOUCHED_MAX * (BLOCKS_TOUCHED_MAX + 1) // 2,
                                                                  BLOCKS_TOUCHED_MAX**2)
