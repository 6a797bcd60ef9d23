"""The same masked attention through four backends.

Shapes everywhere: q (B, H, N, d); k, v (B, H_kv, N, d) with H % H_kv == 0 (grouped-query
attention: query head h reads kv head h // (H / H_kv)); output (B, H, N, d).

- ``naive``: scores = q kᵀ/√d, masked_fill(-inf), softmax, @ v -- the textbook code,
  materialising B·H·N² scores.
- ``sdpa_mask``: ``scaled_dot_product_attention`` with a dense (N, N) boolean mask.
- ``sdpa_causal``: SDPA with ``is_causal=True``. It ignores the rule: it is the
  full-attention (causal) reference that a sparse mask is meant to beat.
- ``flex``: ``flex_attention`` compiled once with ``torch.compile``, with a ``BlockMask``
  built from the rule's ``mask_mod``; only 128 x 128 blocks holding an allowed pair run.

Rows with no allowed key (possible with e.g. ``not_mask(causal())``) have no defined
softmax; every backend returns zeros for them. That is what ``flex_attention`` does by
construction; the dense backends are fixed up explicitly, and only when such rows exist.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import masks
from .masks import MaskRule

BACKENDS = ("naive", "sdpa_mask", "sdpa_causal", "flex")
# Backends that hold a dense (N, N) boolean mask: N² bytes, 16 GiB at N = 131072.
DENSE_BACKENDS = ("naive", "sdpa_mask")

# Dense masks are built a slab of query rows at a time on the target device, so building holds
# the mask plus one slab's intermediates (a rule broadcasts (rows, 1) against (1, N) int64
# indices: about 10 bytes a pair), not 10 bytes for every one of the N² pairs. What stops a
# dense backend is then the memory it really needs (N² mask bytes, plus scores for naive),
# checked against the device, not a fixed N: on a 140 GiB GPU sdpa_mask can run at 128k.
DENSE_SLAB_PAIRS = 1 << 24
# Transient bytes per mask entry while a rule is evaluated densely (int64 differences
# plus bool results; measured 10.0·N² with torch's profiler for both builders on CPU).
MASK_BUILD_BYTES_PER_PAIR = 10

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# FlexAttention's block size: the unit of its sparsity (and of executed work). 128 is flex's default
# and what GPU kernels are tuned for. The CPU kernel has no tensor-core tile to fill, and a smaller
# block wastes less of a band: sliding window W = 256 at N = 2048, H = 8, d = 64, fp32 on this 2-core
# CPU ran in 17.9 ms with blocks of 64, 22.6 ms with 128 and 33.4 ms with 256 (same outputs).
FLEX_BLOCK = 128
FLEX_BLOCK_CPU = 64


def flex_block(device: torch.device | str) -> int:
    """The BlockMask block size flex uses on this device."""
    return FLEX_BLOCK_CPU if torch.device(device).type == "cpu" else FLEX_BLOCK

# Each (rule, N, dtype, shape) is its own compiled flex graph (dynamic=False keeps
# kernels specialised, as flex is normally run). Dynamo's default of 8 graphs per
# function would silently fall back to slow eager code in a sweep; allow more and,
# with fullgraph=True, get an error instead of a silent fallback when they run out
# (then all graphs are dropped and compiled afresh).
FLEX_RECOMPILE_LIMIT = 64

# Bounded caches for `attention()`: dense masks are N² bytes each (256 MiB at 16384).
_DENSE_CACHE = 4
_BLOCK_MASK_CACHE = 32


# ---------------------------------------------------------------- checks ---
def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose from: {', '.join(BACKENDS)}.")
    return backend


def check_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"Unknown dtype {name!r}; choose from: {', '.join(DTYPES)}.")
    return DTYPES[name]


def check_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"Unknown device {name!r}; use cpu or cuda.") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"Unsupported device {name!r}; use cpu or cuda.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested, but this machine has no CUDA device; use --device cpu.")
    return device


def check_heads(heads: int, kv_heads: int) -> None:
    if heads < 1 or kv_heads < 1:
        raise ValueError(f"Head counts must be at least 1, got {heads} query heads and {kv_heads} kv heads.")
    if heads % kv_heads:
        raise ValueError(f"The {heads} query heads must be a multiple of the {kv_heads} kv heads (grouped-query attention).")


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, int, int, int, int]:
    """(B, H, H_kv, N, d) of valid inputs; raises ValueError in plain words otherwise."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k and v must be 4-D tensors shaped (batch, heads, tokens, head dim).")
    b, h, n, d = q.shape
    if k.shape != v.shape or k.shape[0] != b or k.shape[2] != n or k.shape[3] != d:
        raise ValueError(f"k and v must be shaped (B, H_kv, N, d) = ({b}, H_kv, {n}, {d}); got {tuple(k.shape)} and {tuple(v.shape)}.")
    check_heads(h, k.shape[1])
    if not (q.dtype == k.dtype == v.dtype) or not (q.device == k.device == v.device):
        raise ValueError("q, k and v must share one dtype and one device.")
    return b, h, k.shape[1], n, d


# ----------------------------------------------------------------- masks ---
def available_bytes(device: torch.device | str) -> int:
    """Memory free for new tensors: free GPU memory (with what torch's allocator holds unused),
    or the CPU's MemAvailable (8 GiB if unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0] + cached)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def dense_slab_rows(n: int, slab_pairs: int = DENSE_SLAB_PAIRS) -> int:
    """Query rows evaluated together when a dense mask is built (at least one, at most n)."""
    return min(n, max(1, slab_pairs // n))


def dense_mask(rule: MaskRule, n: int, device: torch.device | str = "cpu", slab_pairs: int = DENSE_SLAB_PAIRS) -> torch.Tensor:
    """bool (n, n) on `device`: True where a query (row) may attend to a key (column).

    Evaluated on `device` in slabs of dense_slab_rows(n) query rows (the rule's mask_mod runs
    on that device's indices, as flex's BlockMask builder runs it). Raises ValueError when the
    N² bytes do not fit the device's free memory.
    """
    rule.check_length(n)
    device = torch.device(device)
    rows = dense_slab_rows(n, slab_pairs)
    need = n * n + MASK_BUILD_BYTES_PER_PAIR * rows * n
    free = available_bytes(device)
    if need > free:
        raise ValueError(
            f"The dense backends need an N×N mask: N = {n} needs {need / 2**30:.1f} GiB, and this {device.type} has "
            f"{free / 2**30:.1f} GiB free. Use the flex backend for longer sequences."
        )
    out = torch.empty((n, n), dtype=torch.bool, device=device)
    idx = torch.arange(n, device=device)
    for r0 in range(0, n, rows):
        out[r0:r0 + rows] = rule.allowed(idx[r0:r0 + rows, None], idx[None, :])  # (rows, n)
    return out


def build_block_mask(rule: MaskRule, n: int, device: torch.device | str = "cpu", block: int | None = None):
    """FlexAttention BlockMask of `rule` at length n, shared by all batches and heads (B = H = None),
    in blocks of `block` (default: flex_block(device)).

    On CUDA flex's own builder runs compiled, so it never holds the N² predicate values (16 GiB
    of bool at N = 131072). On a CPU, compiling it costs seconds of C++ builds per size and the
    uncompiled builder holds all N² values (10 bytes a pair), so rules with an exact interval
    form get their BlockMask from the exact tile counts instead (block_mask_from_tiles): the
    same blocks, in about a second at N = 131072."""
    from torch.nn.attention.flex_attention import create_block_mask

    rule.check_length(n)
    device = torch.device(device)
    block = block or flex_block(device)
    # A mask_mod may make a per-device table on its first call (document ids); make that call
    # eagerly, so that no trace (flex's, or the compiled builder's) has to record it.
    first = torch.zeros(1, dtype=torch.int64, device=device)
    rule.allowed(first, first)
    if device.type == "cpu" and rule.has_intervals:
        return block_mask_from_tiles(rule, n, block)
    return create_block_mask(rule.mask_mod, None, None, n, n, device=device, BLOCK_SIZE=block,
                             _compile=device.type == "cuda")


def block_mask_from_tiles(rule: MaskRule, n: int, block: int):
    """The BlockMask create_block_mask would build, from render.block_kinds (full / partial / skipped
    from the exact allowed-pair count of every block × block tile), without evaluating the N² pairs.
    The Mask Explorer's block view draws the same block_kinds."""
    from torch.nn.attention.flex_attention import BlockMask

    from .render import FULL, PARTIAL, block_kinds

    kinds = block_kinds(rule, n, block).kinds  # (T, T), T = ceil(n / block)
    full, partial = kinds == FULL, kinds == PARTIAL

    def kv_blocks(chosen: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        # Per query block: how many key blocks, and their indices first, ascending (B = H = 1).
        num = torch.from_numpy(chosen.sum(axis=1).astype(np.int32))[None, None]  # (1, 1, T)
        order = np.argsort(~chosen, axis=1, kind="stable").astype(np.int32)  # chosen columns first
        return num, torch.from_numpy(np.ascontiguousarray(order))[None, None]  # (1, 1, T, T)

    kv_num, kv_idx = kv_blocks(partial)
    full_num, full_idx = kv_blocks(full)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=rule.mask_mod,
                                    seq_lengths=(n, n))


def block_mask_pairs(block_mask, n: int) -> int:
    """Query-key pairs a block-sparse kernel computes: the area of every non-empty block
    (partial and full), with blocks at the end of the sequence clipped to N."""
    dense = block_mask.to_dense()[0, 0].to("cpu", torch.int64)  # (Q blocks, KV blocks), 1 = computed
    qb, kb = block_mask.BLOCK_SIZE
    q_sizes = torch.clamp(n - torch.arange(dense.shape[0]) * qb, 0, qb)
    k_sizes = torch.clamp(n - torch.arange(dense.shape[1]) * kb, 0, kb)
    return int((q_sizes[:, None] * dense * k_sizes[None, :]).sum())


def _device_key(device) -> str:
    return str(torch.device(device))


# The rule's mask_mod is part of each key: rules compare equal without it, so two
# custom rules with one name must not share an entry.
@functools.lru_cache(maxsize=_DENSE_CACHE)
def _cached_dense(rule: MaskRule, mask_mod, n: int, device: str) -> torch.Tensor:
    return dense_mask(rule, n, device)


@functools.lru_cache(maxsize=_BLOCK_MASK_CACHE)
def _cached_block_mask(rule: MaskRule, mask_mod, n: int, device: str):
    return build_block_mask(rule, n, device)


def clear_caches() -> None:
    """Forget cached masks and compiled flex kernels (e.g. to measure build times afresh)."""
    _cached_dense.cache_clear()
    _cached_block_mask.cache_clear()
    _compiled_flex.cache_clear()
    _FLEX_STATE.clear()


# --------------------------------------------------------------- prepare ---
@dataclass(frozen=True, eq=False)
class Prepared:
    """What a backend needs besides q, k, v, built once per (rule, N, device).

    dense: bool (N, N) for naive and sdpa_mask; block_mask: BlockMask for flex.
    empty_rows: bool (N, 1) marking queries with no allowed key, or None when there are none.
    """

    backend: str
    rule: MaskRule
    n: int
    device: torch.device
    dense: torch.Tensor | None = None
    block_mask: object | None = None
    empty_rows: torch.Tensor | None = None

    @property
    def mask_bytes(self) -> int:
        """Bytes held by the prepared mask structure (dense bool matrix or BlockMask tensors)."""
        if self.dense is not None:
            return self.dense.numel() * self.dense.element_size()
        if self.block_mask is not None:
            tensors = [t for t in self.block_mask.as_tuple() if isinstance(t, torch.Tensor)]
            return sum(t.numel() * t.element_size() for t in tensors)
        return 0


def _empty_rows(dense: torch.Tensor) -> torch.Tensor | None:
    empty = ~dense.any(dim=-1, keepdim=True)  # (N, 1)
    return empty if bool(empty.any()) else None


def prepare(backend: str, rule: MaskRule, n: int, device="cpu", cached: bool = True) -> Prepared:
    """Build the mask structure `backend` uses; `cached=False` builds afresh (for timing)."""
    check_backend(backend)
    device = torch.device(device)
    rule.check_length(n)
    if backend in DENSE_BACKENDS:
        dense = _cached_dense(rule, rule.mask_mod, n, _device_key(device)) if cached else dense_mask(rule, n, device)
        return Prepared(backend, rule, n, device, dense=dense, empty_rows=_empty_rows(dense))
    if backend == "flex":
        bm = _cached_block_mask(rule, rule.mask_mod, n, _device_key(device)) if cached else build_block_mask(rule, n, device)
        return Prepared(backend, rule, n, device, block_mask=bm)
    return Prepared(backend, rule, n, device)


# -------------------------------------------------------------- backends ---
def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, H_kv, N, d) -> (B, H_kv·groups, N, d): kv head j serves query heads j·groups .. j·groups+groups-1."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def naive_attention(q, k, v, allowed: torch.Tensor, empty_rows: torch.Tensor | None = None) -> torch.Tensor:
    """Textbook masked attention. allowed: bool (N, N), broadcast over batch and heads."""
    groups = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, N, d)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, N, N)
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # a row of only -inf gives NaN here
    if empty_rows is not None:
        probs = probs.masked_fill(empty_rows, 0.0)
    return probs @ v  # (B, H, N, d)


def sdpa_mask_attention(q, k, v, allowed: torch.Tensor, empty_rows: torch.Tensor | None = None) -> torch.Tensor:
    # kv heads are repeated by hand: not every SDPA kernel takes enable_gqa, and one that
    # does not would silently fall back to the math kernel with B·H·N² scores.
    groups = q.shape[1] // k.shape[1]
    out = F.scaled_dot_product_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), attn_mask=allowed)
    # Kernels disagree on empty rows (CPU gives 0, some CUDA kernels NaN): make it 0.
    return out if empty_rows is None else out.masked_fill(empty_rows, 0.0)


def sdpa_causal_attention(q, k, v) -> torch.Tensor:
    """Causal attention (k <= q) whatever the rule: the dense full-attention reference."""
    groups = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), is_causal=True)


# State of the compiled flex path: "fallback" holds why compiling failed, if it did.
_FLEX_STATE: dict[str, str] = {}


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    # Raised once for the process rather than patched around each call: a config
    # patch costs ~80 µs, more than a small flex kernel takes on a GPU.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, FLEX_RECOMPILE_LIMIT)
    return torch.compile(flex_attention, dynamic=False, fullgraph=True)


def flex_mode() -> str:
    """'compiled', or 'eager: <why compiling failed>' once the compiled path has failed."""
    return f"eager: {_FLEX_STATE['fallback']}" if "fallback" in _FLEX_STATE else "compiled"


def flex_attention_call(q, k, v, block_mask, compiled: bool = True) -> torch.Tensor:
    """flex_attention with `block_mask`; GQA through flex's own enable_gqa.

    Compiled unless `compiled=False` or compiling has failed before in this process
    (e.g. no C++ compiler for inductor on CPU); then the eager (unfused, dense) path
    runs and `flex_mode()` says why.
    """
    from torch._dynamo.exc import BackendCompilerFailed, FailOnRecompileLimitHit
    from torch._inductor.exc import CppCompileError, InvalidCxxCompiler
    from torch.nn.attention.flex_attention import flex_attention

    gqa = q.shape[1] != k.shape[1]
    if not compiled or "fallback" in _FLEX_STATE:
        return _eager_flex(flex_attention, q, k, v, block_mask, gqa)
    fn = _compiled_flex()
    try:
        return fn(q, k, v, block_mask=block_mask, enable_gqa=gqa)
    except FailOnRecompileLimitHit:
        # Too many distinct (rule, N, shape) graphs: drop them all and compile afresh.
        torch._dynamo.reset()
        return fn(q, k, v, block_mask=block_mask, enable_gqa=gqa)
    except (BackendCompilerFailed, InvalidCxxCompiler, CppCompileError) as e:
        # The toolchain failed (no C++ compiler for inductor on CPU, ...); other
        # errors, such as a mask_mod that cannot be traced, are the caller's to see.
        _FLEX_STATE["fallback"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        return _eager_flex(flex_attention, q, k, v, block_mask, gqa)


def _eager_flex(flex_attention, q, k, v, block_mask, gqa):
    import warnings

    with warnings.catch_warnings():
        # Eager flex warns that it is unfused; that is the point of calling it.
        warnings.filterwarnings("ignore", message=".*without torch.compile.*")
        return flex_attention(q, k, v, block_mask=block_mask, enable_gqa=gqa)


def run(prep: Prepared, q, k, v, compiled: bool = True) -> torch.Tensor:
    """Run a prepared backend on q (B, H, N, d), k, v (B, H_kv, N, d) -> (B, H, N, d)."""
    if q.shape[2] != prep.n:
        raise ValueError(f"The mask was prepared for N = {prep.n} tokens, but q has {q.shape[2]}.")
    if prep.backend == "naive":
        return naive_attention(q, k, v, prep.dense, prep.empty_rows)
    if prep.backend == "sdpa_mask":
        return sdpa_mask_attention(q, k, v, prep.dense, prep.empty_rows)
    if prep.backend == "sdpa_causal":
        return sdpa_causal_attention(q, k, v)
    return flex_attention_call(q, k, v, prep.block_mask, compiled)


def attention(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rule: MaskRule, compiled: bool = True) -> torch.Tensor:
    """Masked attention of q (B, H, N, d) over k, v (B, H_kv, N, d) through `backend`;
    returns (B, H, N, d). Masks are cached per (rule, N, device)."""
    check_backend(backend)
    b, h, _, n, _ = check_qkv(q, k, v)
    if backend == "naive":
        # The textbook code holds two (B, H, N, N) score tensors: say so rather than die allocating them.
        # Checked here, once per call from outside, not in run(), which the benchmark times (it has
        # its own estimate; reading free memory costs a driver call on a GPU).
        scores_bytes = 2 * b * h * n * n * q.element_size()
        free = available_bytes(q.device)
        if scores_bytes > free:
            raise ValueError(f"naive attention at N = {n} holds {scores_bytes / 2**30:.1f} GiB of scores, and this "
                             f"{q.device.type} has {free / 2**30:.1f} GiB free. Use sdpa_mask or flex.")
    return run(prepare(backend, rule, n, q.device), q, k, v, compiled)


def computed_rule(backend: str, rule: MaskRule) -> MaskRule:
    """The rule a backend actually computes: sdpa_causal always computes causal attention."""
    return masks.causal() if backend == "sdpa_causal" else rule
