"""Exact views of a mask at any length, without ever building the N x N matrix.

The tile overview cuts the N x N mask into T x T tiles and counts, exactly, the
allowed pairs in each tile. For rules whose rows are unions of intervals the count
comes from the interval end points alone: the number of allowed keys of a row below
x is a piecewise-linear function of x, so summing it over a tile row at the tile
boundaries needs only a histogram of the end points (O(N·S + T²) work).
Rules known only as a predicate are evaluated densely in row chunks (exact, slower).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .limits import BLOCKS_TOUCHED_MAX, TILES_MAX
from .masks import DENSE_MAX_N, MaskRule, and_masks, causal, count_progression_below, disjoint_intervals

# Rows per chunk: bounds the working memory of the interval and progression paths.
_ROW_CHUNK = 16384
_PROG_CHUNK = 2048
# Largest N evaluated densely (in chunks) for rules without an interval form.
PREDICATE_MAX_N = DENSE_MAX_N


@dataclass(frozen=True)
class TileOverview:
    """counts: int64 (T, T), allowed (query, key) pairs per tile; edges: int64 (T+1,),
    the token boundaries of the tiles (the same for queries and keys)."""

    rule_label: str
    n: int
    tile_size: int
    edges: np.ndarray
    counts: np.ndarray

    @property
    def tiles(self) -> int:
        return len(self.edges) - 1

    @property
    def areas(self) -> np.ndarray:
        sizes = np.diff(self.edges)
        return sizes[:, None] * sizes[None, :]

    @property
    def fractions(self) -> np.ndarray:
        """float64 (T, T): fraction of allowed pairs per tile, in [0, 1]."""
        return self.counts / self.areas


def tile_edges(n: int, tiles: int, tile_size: int | None = None) -> tuple[int, np.ndarray]:
    """Tile size (ceil(n / tiles) unless given) and the boundaries; the last tile may be shorter."""
    if not isinstance(tiles, (int, np.integer)) or tiles < 1:
        raise ValueError(f"The number of tiles must be a positive whole number, got {tiles!r}.")
    size = tile_size or -(-n // min(tiles, n))
    edges = np.minimum(np.arange(0, n + size, size, dtype=np.int64), n)
    edges = np.unique(edges)
    return size, edges


def _check_grid(n: int, size: int, most: int, what: str) -> None:
    """Refuse, in words, a grid of more than `most` tiles a side (before anything T × T is allocated)."""
    t = -(-n // size)
    if t > most:
        raise ValueError(f"N = {n:,} in {what} of {size:,} token{'s' * (size != 1)} is {t:,} × {t:,} {what}; exact counts "
                         f"stop at {most:,} a side ({what} of {-(-n // most):,} tokens or more).")


def _chunks(n: int, size: int):
    for lo in range(0, n, size):
        yield np.arange(lo, min(lo + size, n), dtype=np.int64)


def _piecewise_linear_sums(row_of: np.ndarray, points: np.ndarray, edges: np.ndarray, rows: int) -> np.ndarray:
    """For each tile row r and boundary x_c: sum over points y of rows r of max(0, x_c - y).

    row_of, points: int64 (M,). Returns int64 (rows, C) with C = len(edges).
    """
    c_len = len(edges)
    first = np.searchsorted(edges, points, side="right")  # first boundary index with x_c > y
    keep = first < c_len
    flat = row_of[keep] * c_len + first[keep]
    count = np.bincount(flat, minlength=rows * c_len).reshape(rows, c_len).cumsum(axis=1)
    total = np.bincount(flat, weights=points[keep], minlength=rows * c_len).reshape(rows, c_len)
    # Sums of positions stay below 2**53 for N <= 131072, so float64 weights are exact.
    total = np.rint(total).astype(np.int64).cumsum(axis=1)
    return edges[None, :] * count - total


def tile_overview(rule: MaskRule, n: int, tiles: int = 512, tile_size: int | None = None) -> TileOverview:
    """Exact allowed-pair counts of `rule` on T x T tiles of the n x n mask
    (tiles of ceil(n / tiles) tokens, or of `tile_size` tokens when given)."""
    rule.check_length(n)
    size, edges = tile_edges(n, tiles, tile_size)
    _check_grid(n, size, TILES_MAX, "tiles")
    if not rule.has_intervals:
        return TileOverview(rule.label, n, size, edges, tiles_by_predicate(rule, n, edges))
    return TileOverview(rule.label, n, size, edges, _tile_row_counts(rule, n, edges, 0, len(edges) - 1))


def _tile_row_counts(rule: MaskRule, n: int, edges: np.ndarray, r_lo: int, r_hi: int) -> np.ndarray:
    """Allowed-pair counts of tile rows r_lo..r_hi-1 across all T tile columns: int64 (r_hi - r_lo, T).
    From the rule's key intervals (and strided key sets), never pair by pair."""
    t = len(edges) - 1
    # cumulative[r, c] = allowed pairs with query in tile row r_lo + r and key < edges[c].
    cumulative = np.zeros((r_hi - r_lo, t + 1), dtype=np.int64)
    chunk = _PROG_CHUNK if rule.has_progressions else _ROW_CHUNK
    edges32 = edges.astype(np.int32)
    for lo in range(int(edges[r_lo]), int(edges[r_hi]), chunk):
        q = np.arange(lo, min(lo + chunk, int(edges[r_hi])), dtype=np.int64)
        keys = rule.row_keys(q, n)
        tile_row = np.searchsorted(edges, q, side="right") - 1 - r_lo
        # Only the tile rows this chunk's queries fill: bins for all T rows made a 131,072-token mask in
        # blocks of 16 (8,192² blocks) take 26 s.
        first, rows = tile_row[0], tile_row[-1] - tile_row[0] + 1
        s, e = disjoint_intervals(keys.starts, keys.ends)
        nonempty = e > s
        row_of = np.broadcast_to(tile_row[:, None] - first, s.shape)[nonempty]
        part = cumulative[first:first + rows]
        part += _piecewise_linear_sums(row_of, s[nonempty], edges, rows)
        part -= _piecewise_linear_sums(row_of, e[nonempty], edges, rows)
        if keys.has_progressions:
            # The slowest step: (R, P, C) integer arithmetic. In int32 it moves half the memory; exact,
            # since every value is below 2 N <= 2**18 (MAX_N = 131,072); sums are taken in int64.
            start, stop, step = (a[:, :, None].astype(np.int32) for a in (keys.prog_start, keys.prog_stop, keys.prog_step))
            below = count_progression_below(start, stop, step, edges32[None, None, :]).sum(axis=1, dtype=np.int64)  # (R, C)
            _add_by_row(cumulative, below, tile_row)
    return np.diff(cumulative, axis=1)


# Counting blocks touched holds this many tile counts at a time (8 MiB of int64), whatever the grid.
_STRIP_CELLS = 1 << 20


def blocks_touched(rule: MaskRule, n: int, block: int) -> tuple[int, int]:
    """(blocks with at least one allowed pair, blocks in all) when the n x n mask is cut into block x block
    tiles, counted a strip of block rows at a time: at N = 131,072 in blocks of 16 the whole grid of
    8,192² counts would be 512 MiB."""
    rule.check_length(n)
    _, edges = tile_edges(n, 1, block)
    _check_grid(n, block, BLOCKS_TOUCHED_MAX, "blocks")
    t = len(edges) - 1
    if not rule.has_intervals:
        return int((tiles_by_predicate(rule, n, edges) > 0).sum()), t * t
    strip = max(1, _STRIP_CELLS // (t + 1))
    touched = sum(int((_tile_row_counts(rule, n, edges, r, min(r + strip, t)) > 0).sum()) for r in range(0, t, strip))
    return touched, t * t


# What a block-sparse kernel does with each block × block tile of a mask (FlexAttention's BlockMask).
SKIPPED, PARTIAL, FULL = 0, 1, 2
BLOCK_KIND_NAMES = ("skipped", "partial", "full")


@dataclass(frozen=True)
class BlockKinds:
    """A mask as a block-sparse kernel sees it. kinds: int8 (T, T), one of SKIPPED / PARTIAL / FULL per
    block (query block rows, key block columns); counts: int64 (T, T), the allowed pairs in each;
    edges: int64 (T + 1,), the token boundaries (the last block may be shorter)."""

    rule_label: str
    n: int
    block: int
    edges: np.ndarray
    counts: np.ndarray
    kinds: np.ndarray

    def total(self, kind: int) -> int:
        return int((self.kinds == kind).sum())

    @property
    def computed_pairs(self) -> int:
        """Pairs the kernel computes: the whole area of every full or partial block."""
        sizes = np.diff(self.edges)
        return int((sizes[:, None] * (self.kinds != SKIPPED) * sizes[None, :]).sum())


def block_kinds(rule: MaskRule, n: int, block: int) -> BlockKinds:
    """Each block × block tile of the mask as FlexAttention's create_block_mask classifies it: "full"
    when all block² pairs are allowed (the kernel computes it without calling mask_mod), "partial" when
    some are (computed, then masked pair by pair), "skipped" when none is. As in create_block_mask, a
    block clipped by the end of the sequence is never full: its missing pairs count as masked.
    Exact, from tile_overview's counts, without the N × N matrix."""
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"The block size must be a positive whole number of tokens, got {block!r}.")
    _check_grid(n, int(block), TILES_MAX, "blocks")
    ov = tile_overview(rule, n, tile_size=int(block))
    kinds = np.where(ov.counts == block * block, FULL, np.where(ov.counts > 0, PARTIAL, SKIPPED)).astype(np.int8)
    return BlockKinds(ov.rule_label, n, int(block), ov.edges, ov.counts, kinds)


BLOCK_SWEEP_MAX_BLOCKS = 1024  # blocks a side a block-size sweep counts (1M tiles; a strided rule at 128k: ~1 s)


def _known_blocks(known: BlockKinds | None, rule: MaskRule, n: int, block: int) -> BlockKinds | None:
    """`known` when it is this rule's blocks of this size at this N (counted already by the caller)."""
    if known is None:
        return None
    if (known.rule_label, known.n, known.block) != (rule.label, n, block):
        raise ValueError(f"The blocks given are {known.rule_label}'s at N = {known.n} in blocks of {known.block}, "
                         f"not {rule.label}'s at N = {n} in blocks of {block}.")
    return known


def block_size_sweep(rule: MaskRule, n: int, sizes, known: BlockKinds | None = None) -> list[tuple[int, int, int]]:
    """(block, pairs a block-sparse kernel computes, pairs allowed) for each block size in `sizes` that
    cuts N into at most BLOCK_SWEEP_MAX_BLOCKS blocks a side: smaller blocks skip more of a sparse mask
    but a GPU runs them less efficiently, the trade a kernel's block size makes. `known`: this rule's
    blocks at one of the sizes, already counted (the Explorer's view), used instead of counting again."""
    out = []
    for block in sizes:
        if -(-n // block) <= BLOCK_SWEEP_MAX_BLOCKS:
            if known is not None and known.block == block:
                bk = _known_blocks(known, rule, n, block)
            else:
                bk = block_kinds(rule, n, block)
            out.append((int(block), bk.computed_pairs, int(bk.counts.sum())))
    return out


def _add_by_row(out: np.ndarray, values: np.ndarray, tile_row: np.ndarray) -> None:
    """out[r] += the sum of values' rows whose tile row is r. values: (R, C); tile_row: (R,), nondecreasing
    (queries come in order), so each tile row is one run of rows, summed as a slice: about 8× faster
    than np.add.reduceat along axis 0 and 15× faster than np.add.at (a strided rule at N = 131,072 spent
    a second there)."""
    bounds = np.flatnonzero(np.r_[True, tile_row[1:] != tile_row[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        out[tile_row[lo]] += values[lo:hi].sum(axis=0)


def tiles_by_predicate(rule: MaskRule, n: int, edges: np.ndarray) -> np.ndarray:
    """Tile counts by evaluating the predicate pair by pair, one tile row at a time (exact, slow)."""
    if n > PREDICATE_MAX_N:
        raise ValueError(
            f"{rule.label} is known only as a predicate, so its overview is counted pair by pair; "
            f"that stops at N = {PREDICATE_MAX_N}."
        )
    t = len(edges) - 1
    counts = np.zeros((t, t), dtype=np.int64)
    keys = torch.arange(n)
    for r in range(t):
        q = torch.arange(int(edges[r]), int(edges[r + 1]))
        rows = rule.allowed(q[:, None], keys[None, :]).sum(dim=0).numpy()  # (n,) per key
        counts[r] = np.add.reduceat(rows, edges[:-1])
    return counts


def row_counts(rule: MaskRule, n: int) -> np.ndarray:
    """int64 (n,): number of keys each query may attend to."""
    rule.check_length(n)
    if not rule.has_intervals:
        if n > PREDICATE_MAX_N:
            raise ValueError(f"{rule.label} is known only as a predicate; counting stops at N = {PREDICATE_MAX_N}.")
        out = np.zeros(n, dtype=np.int64)
        keys = torch.arange(n)
        for q in _chunks(n, 1024):
            out[q] = rule.allowed(torch.from_numpy(q)[:, None], keys[None, :]).sum(dim=1).numpy()
        return out
    out = np.zeros(n, dtype=np.int64)
    for q in _chunks(n, _ROW_CHUNK):
        keys = rule.row_keys(q, n)
        s, e = disjoint_intervals(keys.starts, keys.ends)
        out[q] = (e - s).sum(axis=1)
        if keys.has_progressions:
            out[q] += count_progression_below(keys.prog_start, keys.prog_stop, keys.prog_step, n).sum(axis=1)
    return out


def first_cut_row(rule: MaskRule, n: int) -> int | None:
    """The first query that may not attend to all of its causal past (keys 0..q) under `rule`
    ANDed with causal, or None: where a decoder's mask first changes anything (row 64 for a
    64-token sliding window)."""
    short = np.flatnonzero(row_counts(and_masks(rule, causal()), n) < np.arange(1, n + 1))
    return int(short[0]) if len(short) else None


@dataclass(frozen=True)
class MaskStats:
    n: int
    allowed_pairs: int
    min_keys: int
    max_keys: int
    mean_keys: float
    density_vs_full: float  # allowed / n²
    density_vs_causal: float  # allowed / (n(n+1)/2): the share of causal attention's work
    blocks_touched: int  # 128 x 128 blocks with at least one allowed pair
    blocks_total: int
    block_size: int = 128

    def useful_flops(self, head_dim: int = 64) -> int:
        """Per head and sequence: q·k and p·v cost 2·d multiply-adds each per allowed pair."""
        return 4 * head_dim * self.allowed_pairs

    def executed_flops_blocks(self, head_dim: int = 64) -> int:
        """What a block-sparse kernel (FlexAttention, 128 x 128 blocks) computes: every touched block in full."""
        return 4 * head_dim * self.blocks_touched * self.block_size**2


def mask_stats(rule: MaskRule, n: int, block_size: int = 128, blocks: BlockKinds | None = None) -> MaskStats:
    """Pairs, keys per query and blocks touched. `blocks`: the rule's blocks of block_size at n, when the
    caller has counted them already (at N = 131,072 a strided rule's 1,024² blocks take about a second)."""
    counts = row_counts(rule, n)
    allowed = int(counts.sum())
    if blocks is not None:
        known = _known_blocks(blocks, rule, n, block_size)
        touched, total = int((known.counts > 0).sum()), known.counts.size
    else:
        touched, total = blocks_touched(rule, n, block_size)
    return MaskStats(
        n=n,
        allowed_pairs=allowed,
        min_keys=int(counts.min()),
        max_keys=int(counts.max()),
        mean_keys=float(counts.mean()),
        density_vs_full=allowed / n**2,
        density_vs_causal=allowed / (n * (n + 1) // 2),
        blocks_touched=touched,
        blocks_total=total,
        block_size=block_size,
    )


def dense_numpy(rule: MaskRule, n: int) -> np.ndarray:
    """uint8 (n, n) 0/1 matrix, for exports."""
    return rule.dense(n).numpy().astype(np.uint8)


def mask_csv(m: np.ndarray) -> bytes:
    """0/1 matrix as CSV bytes, built in one pass (np.savetxt is far slower at N = 4096)."""
    n_rows, n_cols = m.shape
    out = np.full((n_rows, 2 * n_cols), ord(","), dtype=np.uint8)
    out[:, 0::2] = m.astype(np.uint8) + ord("0")
    out[:, -1] = ord("\n")
    return out.tobytes()
