"""Attention mask rules: named, parametrised predicates in the FlexAttention style.

A rule's ``mask_mod(b, h, q_idx, kv_idx)`` is written with tensor operators only,
so it broadcasts (dense evaluation), works under ``vmap`` and can be handed to
``torch.nn.attention.flex_attention.create_block_mask`` unchanged.

Most rules also know their allowed keys row by row as a union of intervals
(``row_keys``). That exact description is what lets the tile overview, the
statistics and the receptive field run at N = 131072 without an N x N array.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .limits import BIGBIRD_MAX_RANDOM_BLOCKS, DENSE_MAX_N, MAX_N, PARAM_MAX  # noqa: F401  (re-exported: masks.MAX_N is the app's widest sequence)

MaskMod = Callable[..., torch.Tensor]


# ---------------------------------------------------------------- row keys ---
@dataclass(frozen=True)
class RowKeys:
    """Allowed keys of a set of query rows, exactly.

    starts, ends: int64 (R, S) -- per row, S half-open key intervals [start, end),
        possibly empty (end <= start) and possibly overlapping each other.
    prog_start, prog_stop, prog_step: int64 (R, P) -- per row, P arithmetic
        progressions {start, start+step, ...} below stop. Producers guarantee that
        progressions overlap neither the intervals nor each other.
    """

    starts: np.ndarray
    ends: np.ndarray
    prog_start: np.ndarray | None = None
    prog_stop: np.ndarray | None = None
    prog_step: np.ndarray | None = None

    @property
    def has_progressions(self) -> bool:
        return self.prog_start is not None and self.prog_start.shape[1] > 0


def disjoint_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rewrite each row's intervals so that they are disjoint and cover the same union.

    Sort a row's intervals by start; each one then only contributes the part past
    the furthest end seen so far. Shapes stay (R, S); emptied intervals have end == start.
    """
    ends = np.maximum(ends, starts)
    order = np.argsort(starts, axis=1, kind="stable")
    s = np.take_along_axis(starts, order, axis=1)
    e = np.take_along_axis(ends, order, axis=1)
    reach = np.maximum.accumulate(e, axis=1)
    prev_reach = np.concatenate([np.full((s.shape[0], 1), np.iinfo(np.int64).min), reach[:, :-1]], axis=1)
    s = np.maximum(s, prev_reach)
    e = np.maximum(e, s)
    return s, e


def count_progression_below(start, stop, step, x):
    """Number of elements of {start, start+step, ... < stop} that are < x (broadcasting)."""
    upper = np.minimum(stop, x)
    return np.maximum(0, (upper - start + step - 1) // step)


# -------------------------------------------------------------------- rule ---
@dataclass(frozen=True)
class MaskRule:
    """A named attention-mask rule.

    name: pattern key ("sliding_window", ...); params: the parameters that define it.
    mask_mod(b, h, q_idx, kv_idx) -> bool tensor (True = query may attend to key).
    row_keys_fn(q: int64 (R,), n) -> RowKeys, or None when only the predicate is known.
    n: the only sequence length the rule is defined for (document lengths, BigBird's
       random draws), or None when it works at any length.
    causal: whether the rule never lets a query see a later key.
    """

    name: str
    params: tuple[tuple[str, object], ...]
    mask_mod: MaskMod = field(compare=False, repr=False)
    row_keys_fn: Callable[[np.ndarray, int], RowKeys] | None = field(default=None, compare=False, repr=False)
    n: int | None = None
    causal: bool = False
    has_progressions: bool = False  # rows hold strided key sets, not only intervals

    # -- description
    @property
    def param_dict(self) -> dict:
        return dict(self.params)

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params)
        return f"{self.name}({inner})"

    def check_length(self, n: int) -> None:
        check_n(n)
        if self.n is not None and n != self.n:
            raise ValueError(f"The rule {self.label} is defined for N = {self.n} tokens, not N = {n}.")

    # -- evaluation
    def allowed(self, q_idx, kv_idx, b=0, h=0) -> torch.Tensor:
        """Bool tensor: may query q_idx attend to key kv_idx? Broadcasts its arguments."""
        q = torch.as_tensor(q_idx, dtype=torch.int64)
        k = torch.as_tensor(kv_idx, dtype=torch.int64)
        out = self.mask_mod(torch.as_tensor(b), torch.as_tensor(h), q, k)
        return torch.broadcast_to(out, torch.broadcast_shapes(q.shape, k.shape))

    def dense(self, n: int) -> torch.Tensor:
        """The whole mask as a bool tensor (n, n); rows are queries, columns keys."""
        self.check_length(n)
        if n > DENSE_MAX_N:
            raise ValueError(
                f"A dense {n}×{n} mask would need {n * n / 2**30:.1f} GiB; dense masks stop at N = {DENSE_MAX_N}. "
                "Use the tile overview for longer sequences."
            )
        idx = torch.arange(n)
        return self.allowed(idx[:, None], idx[None, :])

    def row_keys(self, q: np.ndarray, n: int) -> RowKeys:
        if self.row_keys_fn is None:
            raise ValueError(f"The rule {self.label} has no exact interval form.")
        return self.row_keys_fn(np.asarray(q, dtype=np.int64), n)

    @property
    def has_intervals(self) -> bool:
        return self.row_keys_fn is not None



def _fmt(v) -> str:
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)


def check_n(n) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise ValueError(f"The sequence length N must be a whole number, got {n!r}.")
    if not 1 <= n <= MAX_N:
        raise ValueError(f"The sequence length N must be between 1 and {MAX_N} tokens, got {n}.")


def _positive(name: str, value, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ValueError(f"The {name} must be a whole number, got {value!r}.")
    if value < minimum:
        raise ValueError(f"The {name} must be at least {minimum}, got {value}.")
    if value > PARAM_MAX:
        raise ValueError(f"The {name} must be at most {PARAM_MAX}, got {value}.")
    return int(value)


def _ints(name: str, values, minimum: int = 0) -> tuple[int, ...]:
    out = tuple(_positive(name, v, minimum) for v in values)
    return out


def _rule(name, params, mask_mod, row_keys_fn=None, n=None, causal=False, progressions=False) -> MaskRule:
    return MaskRule(name, tuple(params.items()), mask_mod, row_keys_fn, n, causal, progressions)


def _col(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, 1)


def _intervals(*pairs) -> RowKeys:
    """RowKeys from (start, end) column arrays, each (R,) or (R, k)."""
    starts = np.concatenate([np.asarray(s, dtype=np.int64).reshape(len(s), -1) for s, _ in pairs], axis=1)
    ends = np.concatenate([np.asarray(e, dtype=np.int64).reshape(len(e), -1) for _, e in pairs], axis=1)
    return RowKeys(starts, ends)


def _window_bounds(q: np.ndarray, n: int, window: int, causal: bool):
    """Key interval of a local window: causal = itself + window-1 before; else |q-k| <= window//2."""
    if causal:
        return np.maximum(q - window + 1, 0), q + 1
    half = window // 2
    return np.maximum(q - half, 0), np.minimum(q + half + 1, n)


def _in_window(q, k, window: int, causal: bool):
    if causal:
        return (k <= q) & (q - k < window)
    return (q - k).abs() <= window // 2


def _runs(indices: tuple[int, ...]) -> list[tuple[int, int]]:
    """Sorted, merged half-open runs [a, b) of a set of indices."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return [(a, b) for a, b in runs]


def _member(x, runs):
    """x in the union of runs, with tensor ops (a chain of range tests; runs are few)."""
    out = torch.zeros_like(x, dtype=torch.bool)
    for a, b in runs:
        out = out | ((x >= a) & (x < b))
    return out


# --------------------------------------------------------------- patterns ---
def full() -> MaskRule:
    """Every query sees every key (bidirectional, BERT)."""

    def mask_mod(b, h, q, k):
        return (q >= 0) | (k >= 0)

    def rows(q, n):
        return _intervals((np.zeros_like(q), np.full_like(q, n)))

    return _rule("full", {}, mask_mod, rows)


def causal() -> MaskRule:
    """A query sees itself and every earlier key (GPT)."""

    def mask_mod(b, h, q, k):
        return k <= q

    def rows(q, n):
        return _intervals((np.zeros_like(q), q + 1))

    return _rule("causal", {}, mask_mod, rows, causal=True)


def sliding_window(window: int) -> MaskRule:
    """Causal window: a query sees itself and the window-1 keys before it (Mistral)."""
    window = _positive("window", window)

    def mask_mod(b, h, q, k):
        return (k <= q) & (q - k < window)

    def rows(q, n):
        return _intervals(_window_bounds(q, n, window, True))

    return _rule("sliding_window", {"window": window}, mask_mod, rows, causal=True)


def band(window: int) -> MaskRule:
    """Bidirectional band: |q - k| <= window // 2 (Longformer's local attention)."""
    window = _positive("window", window)

    def mask_mod(b, h, q, k):
        return (q - k).abs() <= window // 2

    def rows(q, n):
        return _intervals(_window_bounds(q, n, window, False))

    return _rule("band", {"window": window}, mask_mod, rows)


def dilated(window: int, dilation: int, causal: bool = True) -> MaskRule:
    """Every dilation-th key inside the window: (q - k) % dilation == 0 (Longformer dilated heads)."""
    window = _positive("window", window)
    dilation = _positive("dilation", dilation)

    def mask_mod(b, h, q, k):
        return _in_window(q, k, window, causal) & ((q - k) % dilation == 0)

    def rows(q, n):
        lo, hi = _window_bounds(q, n, window, causal)
        # First key >= lo congruent to q modulo dilation.
        first = lo + (q - lo) % dilation
        empty = np.zeros((len(q), 0), dtype=np.int64)
        return RowKeys(empty, empty, _col(first), _col(hi), np.full((len(q), 1), dilation, dtype=np.int64))

    params = {"window": window, "dilation": dilation, "causal": causal}
    return _rule("dilated", params, mask_mod, rows, causal=causal, progressions=True)


def local_global(window: int, global_tokens, causal: bool = False) -> MaskRule:
    """Local window plus global tokens that see and are seen by everyone (Longformer, ETC)."""
    window = _positive("window", window)
    globals_ = tuple(sorted(set(_ints("global token index", global_tokens))))
    runs = _runs(globals_)

    def mask_mod(b, h, q, k):
        out = _in_window(q, k, window, causal) | _member(k, runs) | _member(q, runs)
        return out & (k <= q) if causal else out

    def rows(q, n):
        lo, hi = _window_bounds(q, n, window, causal)
        row_end = q + 1 if causal else np.full_like(q, n)
        is_global_q = np.zeros(len(q), dtype=bool)
        for a, b_ in runs:
            is_global_q |= (q >= a) & (q < b_)
        # A global query sees its whole row (up to itself when causal).
        lo = np.where(is_global_q, 0, lo)
        hi = np.where(is_global_q, row_end, hi)
        pairs = [(lo, hi)]
        for a, b_ in runs:
            pairs.append((np.full_like(q, a), np.minimum(b_, row_end)))
        return _intervals(*pairs)

    return _rule(
        "local_global",
        {"window": window, "global_tokens": globals_, "causal": causal},
        mask_mod,
        rows,
        causal=causal,
    )


_M31 = (1 << 31) - 1


def _mix(a, b, seed):
    """A small integer hash identical on numpy arrays and torch tensors (values < 2**31)."""
    x = (a * 40503 + b * 2654435 + seed * 97787 + 12345) % _M31
    x = (x ^ (x >> 13)) * 48271 % _M31
    x = (x ^ (x >> 11)) * 69621 % _M31
    return x ^ (x >> 15)


def _random_blocks(qb, j, seed, random_blocks, n_blocks):
    """Key block of random draw j for query block qb: one draw per stratum of the
    eligible blocks, so the r draws of a query block are distinct whenever r <= n_blocks."""
    lo = j * n_blocks // random_blocks
    hi = (j + 1) * n_blocks // random_blocks
    width = hi - lo
    pick = lo + _mix(qb, j, seed) % (width + (width == 0))
    return pick, width > 0


def bigbird(
    window: int,
    global_tokens=(0,),
    random_blocks: int = 2,
    seed: int = 0,
    block: int = 16,
    n: int | None = None,
    causal: bool = False,
) -> MaskRule:
    """BigBird: local window, global tokens, and r random key blocks per query block.

    Keys and queries are grouped in blocks of ``block`` tokens. Each query block draws
    ``random_blocks`` distinct key blocks with a seeded hash (one per stratum of the
    eligible blocks: all blocks, or the blocks up to its own when causal). Bidirectional
    draws depend on the number of blocks, so that rule is built for one length ``n``.
    """
    window = _positive("window", window)
    random_blocks = _positive("number of random blocks", random_blocks, 0)
    if random_blocks > BIGBIRD_MAX_RANDOM_BLOCKS:
        raise ValueError(f"The number of random blocks must be at most {BIGBIRD_MAX_RANDOM_BLOCKS}, got {random_blocks}.")
    seed = _positive("seed", seed, 0)
    block = _positive("block size", block)
    if not causal:
        if n is None:
            raise ValueError("Bidirectional BigBird draws its random blocks among all blocks, so it needs N.")
        check_n(n)
    base = local_global(window, global_tokens, causal)
    globals_ = base.param_dict["global_tokens"]
    if n is not None:
        bad = [g for g in globals_ if g >= n]
        if bad:
            raise ValueError(f"Global token {bad[0]} does not exist in a sequence of {n} tokens (indices 0..{n - 1}).")
    fixed_blocks = None if causal else -(-n // block)

    def eligible(qb):
        return qb + 1 if fixed_blocks is None else fixed_blocks

    def mask_mod(b, h, q, k):
        qb, kb = q // block, k // block
        out = base.mask_mod(b, h, q, k)
        for j in range(random_blocks):
            pick, ok = _random_blocks(qb, j, seed, random_blocks, eligible(qb))
            out = out | (ok & (kb == pick))
        return out & (k <= q) if causal else out

    def rows(q, n_):
        keys = base.row_keys(q, n_)
        qb = q // block
        row_end = q + 1 if causal else np.full_like(q, n_)
        pairs = [(keys.starts, keys.ends)]
        for j in range(random_blocks):
            pick, ok = _random_blocks(qb, j, seed, random_blocks, eligible(qb))
            start = pick * block
            end = np.where(ok, np.minimum((pick + 1) * block, row_end), start)
            pairs.append((start, end))
        return _intervals(*pairs)

    params = {
        "window": window,
        "global_tokens": globals_,
        "random_blocks": random_blocks,
        "seed": seed,
        "block": block,
        "causal": causal,
    }
    return _rule("bigbird", params, mask_mod, rows, n=None if causal else n, causal=causal)


def strided(stride: int) -> MaskRule:
    """Sparse Transformer strided pattern (Child et al. 2019), both heads combined:
    the previous `stride` keys, plus every key a multiple of `stride` back. Causal."""
    stride = _positive("stride", stride)

    def mask_mod(b, h, q, k):
        return (k <= q) & ((q - k < stride) | ((q - k) % stride == 0))

    def rows(q, n):
        lo, hi = _window_bounds(q, n, stride, True)
        # Progression q - j*stride below the window: from q % stride up to lo (exclusive).
        return RowKeys(
            _col(lo), _col(hi), _col(q % stride), _col(lo), np.full((len(q), 1), stride, dtype=np.int64)
        )

    return _rule("strided", {"stride": stride}, mask_mod, rows, causal=True, progressions=True)


def chunked(chunk: int, causal: bool = True) -> MaskRule:
    """Block-local attention: a query sees keys of its own chunk only (Llama 4 local layers)."""
    chunk = _positive("chunk size", chunk)

    def mask_mod(b, h, q, k):
        same = q // chunk == k // chunk
        return same & (k <= q) if causal else same

    def rows(q, n):
        lo = q // chunk * chunk
        hi = q + 1 if causal else np.minimum(lo + chunk, n)
        return _intervals((lo, hi))

    return _rule("chunked", {"chunk": chunk, "causal": causal}, mask_mod, rows, causal=causal)


def sinks(sinks: int, window: int) -> MaskRule:
    """Attention sinks + sliding window: the first `sinks` keys stay visible (StreamingLLM)."""
    sinks = _positive("number of sink tokens", sinks, 0)
    window = _positive("window", window)

    def mask_mod(b, h, q, k):
        return (k <= q) & ((k < sinks) | (q - k < window))

    def rows(q, n):
        return _intervals(_window_bounds(q, n, window, True), (np.zeros_like(q), np.minimum(sinks, q + 1)))

    return _rule("sinks", {"sinks": sinks, "window": window}, mask_mod, rows, causal=True)


def prefix_lm(prefix: int) -> MaskRule:
    """Prefix-LM: the first `prefix` tokens are seen by everyone, the rest is causal (T5, PaLM)."""
    prefix = _positive("prefix length", prefix, 0)

    def mask_mod(b, h, q, k):
        return (k < prefix) | (k <= q)

    def rows(q, n):
        return _intervals((np.zeros_like(q), np.maximum(q + 1, np.minimum(prefix, n))))

    return _rule("prefix_lm", {"prefix": prefix}, mask_mod, rows)


def document(lengths, causal: bool = True) -> MaskRule:
    """Packed documents: a query sees keys of its own document only (and earlier, when causal)."""
    lengths = _ints("document length", lengths, 1)
    if not lengths:
        raise ValueError("Document masking needs at least one document length.")
    n = sum(lengths)
    check_n(n)
    doc_start_np = np.repeat(np.cumsum((0,) + lengths[:-1]), lengths).astype(np.int64)
    doc_end_np = np.repeat(np.cumsum(lengths), lengths).astype(np.int64)
    doc_id_cpu = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    # device -> the table there: flex_attention on CUDA indexes it with CUDA tensors. The CPU entry
    # exists from the start: flex traces the mask_mod, and a first call inside that trace may not
    # add to the dict (a CPU BlockMask built from tiles never calls the mask_mod before flex does).
    doc_id_on = {torch.device("cpu"): doc_id_cpu}

    def mask_mod(b, h, q, k):
        doc_id = doc_id_on.get(q.device)
        if doc_id is None:
            doc_id = doc_id_on[q.device] = doc_id_cpu.to(q.device)
        same = doc_id[q] == doc_id[k]
        return same & (k <= q) if causal else same

    def rows(q, n_):
        lo = doc_start_np[q]
        hi = q + 1 if causal else doc_end_np[q]
        return _intervals((lo, hi))

    return _rule("document", {"lengths": lengths, "causal": causal}, mask_mod, rows, n=n, causal=causal)


# ------------------------------------------------------------ combinators ---
def and_masks(*rules: MaskRule) -> MaskRule:
    """Allowed where every rule allows."""
    return _combine("and", rules)


def or_masks(*rules: MaskRule) -> MaskRule:
    """Allowed where any rule allows."""
    return _combine("or", rules)


def not_mask(rule: MaskRule) -> MaskRule:
    """Allowed exactly where `rule` masks."""

    def mask_mod(b, h, q, k):
        return ~rule.mask_mod(b, h, q, k)

    rows = None
    if _interval_rows(rule):

        def rows(q, n):
            keys = _interval_only(rule, q, n)
            # Disjoint pieces come out sorted by start; the gaps between them are the complement.
            s, e = disjoint_intervals(keys.starts, keys.ends)
            gap_starts = np.concatenate([np.zeros((len(q), 1), np.int64), np.minimum(e, n)], axis=1)
            gap_ends = np.concatenate([np.minimum(s, n), np.full((len(q), 1), n, np.int64)], axis=1)
            return RowKeys(gap_starts, np.maximum(gap_ends, gap_starts))

    return MaskRule(f"not({rule.label})", (), mask_mod, rows, rule.n, False)


def _interval_rows(rule: MaskRule) -> bool:
    """Combinators stay exact and fast only over rules whose rows are plain intervals."""
    return rule.has_intervals and not rule.has_progressions


def _interval_only(rule: MaskRule, q, n) -> RowKeys:
    keys = rule.row_keys(q, n)
    if keys.has_progressions:
        raise ValueError(f"Combining {rule.label} exactly needs the dense mask (its rows are not intervals).")
    return keys


def _pair(keys: RowKeys):
    return keys.starts, keys.ends


def _combine(op: str, rules) -> MaskRule:
    if not rules:
        raise ValueError(f"{op}_masks needs at least one rule.")
    lengths = {r.n for r in rules if r.n is not None}
    if len(lengths) > 1:
        raise ValueError(f"Cannot combine rules defined for different lengths {sorted(lengths)}.")

    def mask_mod(b, h, q, k):
        out = rules[0].mask_mod(b, h, q, k)
        for r in rules[1:]:
            nxt = r.mask_mod(b, h, q, k)
            out = (out & nxt) if op == "and" else (out | nxt)
        return out

    rows = None
    if all(_interval_rows(r) for r in rules):

        def rows(q, n):
            if op == "or":
                parts = [_interval_only(r, q, n) for r in rules]
                return RowKeys(np.concatenate([p.starts for p in parts], 1), np.concatenate([p.ends for p in parts], 1))
            s, e = disjoint_intervals(*_pair(_interval_only(rules[0], q, n)))
            for r in rules[1:]:
                s2, e2 = disjoint_intervals(*_pair(_interval_only(r, q, n)))
                # Pairwise intersections of two disjoint families are disjoint: (R, S1*S2).
                s = np.maximum(s[:, :, None], s2[:, None, :]).reshape(len(q), -1)
                e = np.minimum(e[:, :, None], e2[:, None, :]).reshape(len(q), -1)
            return RowKeys(s, np.maximum(e, s))

    causal_ = all(r.causal for r in rules) if op == "or" else any(r.causal for r in rules)
    name = f"{op}(" + ", ".join(r.label for r in rules) + ")"
    return MaskRule(name, (), mask_mod, rows, lengths.pop() if lengths else None, causal_)


# ------------------------------------------------------------ layer stacks ---
@dataclass(frozen=True)
class LayerStack:
    """A rule per layer, as in hybrid models (Gemma 2 alternates local and global layers).

    rules: the cycle of rules; layer l uses rules[l % len(rules)]. layers: depth.
    """

    name: str
    rules: tuple[MaskRule, ...]
    layers: int

    def __post_init__(self):
        if not self.rules:
            raise ValueError("A layer stack needs at least one rule.")
        _positive("number of layers", self.layers)

    def rule_for_layer(self, layer: int) -> MaskRule:
        if not 0 <= layer < self.layers:
            raise ValueError(f"Layer {layer} does not exist in a stack of {self.layers} layers (0..{self.layers - 1}).")
        return self.rules[layer % len(self.rules)]

    def __iter__(self):
        return (self.rule_for_layer(i) for i in range(self.layers))


def uniform_stack(rule: MaskRule, layers: int) -> LayerStack:
    return LayerStack(rule.label, (rule,), layers)


def gemma2_stack(layers: int = 42, window: int = 4096) -> LayerStack:
    """Gemma 2: sliding-window (4096) layers alternating with global causal layers,
    starting with a local layer (Gemma 2 9B config: 42 layers, sliding_window 4096)."""
    return LayerStack("gemma2", (sliding_window(window), causal()), layers)


# ---------------------------------------------------------------- registry ---
PATTERNS = (
    "full",
    "causal",
    "sliding_window",
    "band",
    "dilated",
    "local_global",
    "bigbird",
    "strided",
    "chunked",
    "sinks",
    "prefix_lm",
    "document",
)


# A user-written rule (attn/rules.py). Not in PATTERNS: it has no fixed parameters, so
# pattern pickers, presets and defaults keyed by PATTERNS stay as they are.
CUSTOM = "custom"


def custom(expr: str, n: int | None = None, causal: bool = False, **params) -> MaskRule:
    """A custom rule such as custom("q >= k and q - k < W", W=16); see attn.rules.custom_rule."""
    from .rules import custom_rule  # late import: rules builds on this module

    return custom_rule(expr, n, params, causal)


def build(pattern: str, n: int | None = None, **params) -> MaskRule:
    """Build a rule by pattern name, as the CLI and the pages do; `n` checks that the
    parameters make sense for a sequence of n tokens. Raises ValueError in plain words.

    build("custom", n, rule="q >= k and q - k < W", W=16[, causal=True]) builds a custom
    rule, so build(r.name, n, **r.param_dict) rebuilds any rule r, custom ones included."""
    if pattern == CUSTOM:
        p = dict(params)
        expr = p.pop("rule", None)
        if expr is None:
            raise ValueError("A custom pattern needs its rule, e.g. rule='q >= k and q - k < 4'.")
        return custom(expr, n, p.pop("causal", False), **p)
    if pattern not in PATTERNS:
        raise ValueError(f"Unknown pattern {pattern!r}; choose one of: {', '.join(PATTERNS)}.")
    if n is not None:
        check_n(n)
    p = dict(params)

    def need(key, default=None):
        if key in p and p[key] is not None:
            return p[key]
        if default is not None:
            return default
        raise ValueError(f"The pattern {pattern} needs a {key.replace('_', ' ')}.")

    if pattern == "full":
        rule = full()
    elif pattern == "causal":
        rule = causal()
    elif pattern == "sliding_window":
        rule = sliding_window(need("window"))
    elif pattern == "band":
        rule = band(need("window"))
    elif pattern == "dilated":
        rule = dilated(need("window"), need("dilation"), p.get("causal", True))
    elif pattern == "local_global":
        rule = local_global(need("window"), need("global_tokens", ()), p.get("causal", False))
    elif pattern == "bigbird":
        rule = bigbird(
            need("window"),
            need("global_tokens", ()),
            need("random_blocks", 0),
            need("seed", 0),
            need("block", 16),
            n,
            p.get("causal", False),
        )
    elif pattern == "strided":
        rule = strided(need("stride"))
    elif pattern == "chunked":
        rule = chunked(need("chunk"), p.get("causal", True))
    elif pattern == "sinks":
        rule = sinks(need("sinks", 0), need("window"))
    elif pattern == "prefix_lm":
        rule = prefix_lm(need("prefix", 0))
    else:
        lengths = need("lengths")
        rule = document(lengths, p.get("causal", True))
        if n is not None and sum(rule.param_dict["lengths"]) != n:
            raise ValueError(
                f"The document lengths add up to {sum(rule.param_dict['lengths'])} tokens, but N is {n}; "
                "they must add up to N."
            )
    if n is not None:
        globals_ = rule.param_dict.get("global_tokens", ())
        bad = [g for g in globals_ if g >= n]
        if bad:
            raise ValueError(f"Global token {bad[0]} does not exist in a sequence of {n} tokens (indices 0..{n - 1}).")
    return rule
