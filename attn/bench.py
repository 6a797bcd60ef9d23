"""Benchmark of the attention backends: time, memory and FLOPs per (backend, pattern, N).

Measured honestly:
- mask construction (dense bool matrix or BlockMask) and the first call (which compiles
  flex) are timed apart from the kernel;
- kernel time is the median of `repeats` calls after warm-up: CUDA events with a
  synchronize on GPU, time.perf_counter on CPU;
- peak memory of one call: max_memory_allocated after reset_peak_memory_stats on GPU;
  on CPU the running sum of the allocations torch's profiler records during the call;
- useful FLOPs count the pairs the mask allows (4·B·H·d per pair: q·k and p·v are d
  multiply-adds each); executed FLOPs count the pairs the backend really computes.

Before a size runs, its memory (and, on CPU, its time) is estimated; a size that would
not fit is skipped with the reason in the row instead of crashing the sweep.
"""

from __future__ import annotations

import csv
import datetime
import gc
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import kernels as K
from . import limits, masks
from .masks import MaskRule
from .presets import PATTERN_INFO, default_params, split_evenly
from .render import mask_stats

# Dense peak throughput in TFLOP/s by (GPU name fragment, dtype), without sparsity.
# H100 SXM: 989.4 TF bf16/fp16 tensor core, 66.9 TF fp32 (NVIDIA H100 datasheet,
#   https://www.nvidia.com/en-us/data-center/h100/ ; the "1,979" there is with 2:4 sparsity).
# H100 PCIe: 756 TF bf16, 51 TF fp32 (same datasheet). H100 NVL: 835 / 60 (same).
# H200 SXM: same compute as H100 SXM, 989 TF bf16, 67 TF fp32
#   (https://www.nvidia.com/en-us/data-center/h200/).
# A100: 312 TF bf16/fp16, 19.5 TF fp32 (NVIDIA A100 datasheet,
#   https://www.nvidia.com/en-us/data-center/a100/).
# Matched in order: the first fragment found in torch.cuda.get_device_name() wins.
GPU_PEAK_TFLOPS: tuple[tuple[str, dict[str, float], str], ...] = (
    ("H200", {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}, "NVIDIA H200 datasheet (SXM, dense)"),
    ("H100 PCIe", {"bfloat16": 756.0, "float16": 756.0, "float32": 51.2}, "NVIDIA H100 datasheet (PCIe, dense)"),
    ("H100 NVL", {"bfloat16": 835.0, "float16": 835.0, "float32": 60.0}, "NVIDIA H100 datasheet (NVL, dense)"),
    ("H100", {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}, "NVIDIA H100 datasheet (SXM, dense)"),
    ("A100", {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5}, "NVIDIA A100 datasheet (dense)"),
)

# Before anything has run on the CPU, a backend is assumed to reach this rate when
# predicting whether a size finishes within the time cap; later sizes use the measured rate.
# naive measured 6-12 GFLOP/s (executed) on the 2-core machines; the fused kernels 70-220
# (flex 70-100, sdpa_mask 125-205, sdpa_causal 110-225: AMD EPYC and Intel Xeon, fp32).
CPU_ASSUMED_FLOPS_S = 5e9
CPU_ASSUMED_FUSED_FLOPS_S = 3e10
# The same for a GPU given a time cap (`--time-cap-s`): well below what an H100 runs dense
# bf16 attention at (hundreds of TFLOP/s), so a first size is never skipped for time by mistake.
GPU_ASSUMED_FLOPS_S = 5e13
CPU_TIME_CAP_S = limits.BENCH_ROW_TIME_S  # per row, on CPU
CPU_MEMORY_FRACTION = 0.5  # of MemAvailable
GPU_MEMORY_FRACTION = 0.9  # of free device memory

_TILE_BUILD_BYTES_PER_BLOCK = 80

# Largest |backend - naive float32| accepted by --check. CUDA fp32 allows for TF32
# matmuls inside fused kernels; bf16/fp16 for their 8/11-bit mantissas.
CHECK_ATOL = {("cpu", "float32"): 1e-4, ("cuda", "float32"): 5e-3, "float16": 1e-2, "bfloat16": 5e-2}


def check_atol(device_type: str, dtype: str) -> float:
    return CHECK_ATOL.get((device_type, dtype), CHECK_ATOL.get(dtype, 5e-2))


# One row per (N, backend); None where a field was not measured (skipped rows, or a
# field that does not apply). rule: the pattern's rule; computes: the rule the backend
# really computes (causal for sdpa_causal). status: ok | skipped | oom | error, with
# reason. time_ms / time_ms_min: median / minimum of `repeats` kernel calls after
# `warmup` calls; first_call_ms: the first call; compile_ms (flex): its extra cost over
# a steady call, plus the compiled CUDA BlockMask builder's first-build extra.
# dense_mask_ms / block_mask_ms: building the dense bool mask / the BlockMask.
# peak_bytes: mask_bytes (the prepared mask held) + peak allocated during one call,
# measured as peak_method says; estimate_bytes vs budget_bytes decided the skip.
# *_pairs: allowed (useful) and computed (executed) query-key pairs; *_flops = 4·B·H·d
# per pair; *_tflops_s per median time; pct_of_peak: executed rate / peak_tflops_s.
# max_abs_err vs naive float32 (check_against) when checked, within check_atol → check_ok.
ROW_FIELDS = (
    "backend", "pattern", "rule", "computes", "n", "batch", "heads", "kv_heads", "head_dim", "dtype",
    "device", "device_name", "torch", "date", "status", "reason",
    "time_ms", "time_ms_min", "repeats", "warmup", "first_call_ms", "compile_ms", "dense_mask_ms", "block_mask_ms",
    "peak_bytes", "mask_bytes", "peak_method", "estimate_bytes", "budget_bytes",
    "allowed_pairs", "executed_pairs", "flex_block", "useful_flops", "executed_flops",
    "useful_tflops_s", "executed_tflops_s", "peak_tflops_s", "peak_source", "pct_of_peak",
    "max_abs_err", "check_atol", "check_ok", "check_against", "note",
)  # fmt: skip


# --------------------------------------------------------------- devices ---
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device, threads: bool = True) -> str:
    """The GPU's name, or the CPU's model and (for a measured row) the torch threads it ran with."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if not threads:
        return f"cpu ({cpu_model()})"
    n = torch.get_num_threads()
    return f"cpu ({cpu_model()}, {n} thread{'' if n == 1 else 's'})"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_ghz() -> float | None:
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":", 1)[1]) for line in f if line.startswith("cpu MHz")]
        return max(mhz) / 1000 if mhz else None
    except (OSError, ValueError):
        return None


def cpu_peak_tflops(threads: int, ghz: float | None, flags: set[str]) -> tuple[float | None, str]:
    """fp32 peak = threads × GHz × FLOP/cycle, assuming two FMA pipes per core:
    AVX-512 2×16 lanes×2 = 64 FLOP/cycle, AVX2+FMA 2×8×2 = 32 (e.g. Zen 2-4, Skylake)."""
    if ghz is None:
        return None, "unknown CPU clock"
    if "avx512f" in flags:
        per_cycle, isa = 64, "AVX-512"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, isa = 32, "AVX2+FMA"
    else:
        per_cycle, isa = 8, "SSE"
    tflops = threads * ghz * 1e9 * per_cycle / 1e12
    return tflops, f"computed: {threads} threads × {ghz:.2f} GHz × {per_cycle} fp32 FLOP/cycle ({isa}, 2 FMA pipes)"


def peak_tflops(device: torch.device, dtype: str) -> tuple[float | None, str]:
    """(peak TFLOP/s, source) for the device and dtype, or (None, why) when unknown."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for fragment, peaks, source in GPU_PEAK_TFLOPS:
            if fragment in name:
                return peaks.get(dtype), source
        return None, f"no peak listed for {name}"
    flags = _cpu_flags()
    tflops, source = cpu_peak_tflops(torch.get_num_threads(), _cpu_ghz(), flags)
    if dtype != "float32" and not ({"amx_bf16", "avx512_bf16"} & flags):
        source += f"; {dtype} runs at most at the fp32 rate on this CPU (no AMX/AVX512-BF16)"
    elif dtype != "float32":
        return None, f"{dtype} peak of this CPU is not listed"
    return tflops, source


def memory_budget_bytes(device: torch.device) -> int:
    """Memory a size may use: a fraction of free GPU memory, or of the CPU's available RAM."""
    fraction = GPU_MEMORY_FRACTION if device.type == "cuda" else CPU_MEMORY_FRACTION
    return int(K.available_bytes(device) * fraction)


# -------------------------------------------------------------- estimates ---
@dataclass(frozen=True)
class Shape:
    batch: int
    heads: int
    kv_heads: int
    n: int
    head_dim: int
    dtype_bytes: int

    @property
    def q_bytes(self) -> int:
        return self.batch * self.heads * self.n * self.head_dim * self.dtype_bytes

    @property
    def kv_bytes(self) -> int:
        return self.batch * self.kv_heads * self.n * self.head_dim * self.dtype_bytes

    @property
    def scores_bytes(self) -> int:
        return self.batch * self.heads * self.n * self.n * self.dtype_bytes


def estimate_bytes(backend: str, s: Shape, device_type: str, block_mask_from_tiles: bool = False) -> int:
    """Memory a backend needs at this shape: inputs, output, mask and working buffers.

    Calibrated on CPU with torch's profiler (fp32, N = 1024..4096): naive holds two
    score copies (masked scores and probabilities); sdpa_mask converts the bool mask
    to a float mask (N²·dtype); flex keeps about three output-sized buffers. The
    predicate costs 10 bytes per pair while it is evaluated: dense masks evaluate one
    slab of rows at a time (kernels.dense_slab_rows). A CPU BlockMask from exact tile
    counts (`block_mask_from_tiles`, rules with an interval form) takes about 40 bytes
    per block at N = 131072 (80 counted here, as measured at 16384 with tracemalloc);
    from the predicate it evaluates all N² pairs at once.
    """
    n2 = s.n * s.n
    inputs = s.q_bytes + 2 * s.kv_bytes
    repeated_kv = 2 * s.q_bytes if s.heads != s.kv_heads else 0
    build = K.MASK_BUILD_BYTES_PER_PAIR * K.dense_slab_rows(s.n) * s.n
    if backend == "naive":
        work = n2 + max(build, n2 + 2 * s.scores_bytes) + repeated_kv + s.q_bytes
    elif backend == "sdpa_mask":
        work = n2 + max(build, n2 * s.dtype_bytes) + repeated_kv + s.q_bytes
    elif backend == "sdpa_causal":
        work = repeated_kv + s.q_bytes + s.batch * s.heads * s.n * 4
    else:  # flex: BlockMask and one output plus row statistics; CUDA builds it without N² memory
        per_side = -(-s.n // K.FLEX_BLOCK_CPU)  # blocks along each side
        build = _TILE_BUILD_BYTES_PER_BLOCK * per_side**2 if block_mask_from_tiles else K.MASK_BUILD_BYTES_PER_PAIR * n2
        work = 3 * s.q_bytes + (build if device_type == "cpu" else 0)
    return inputs + work


def executed_pairs(backend: str, n: int, allowed_pairs: int, flex_pairs: int | None) -> int:
    """Query-key pairs a backend computes: dense backends all N², is_causal N(N+1)/2,
    flex the area of its non-empty blocks (`flex_pairs`; 64 × 64 on a CPU, 128 × 128 on a GPU)."""
    if backend in K.DENSE_BACKENDS:
        return n * n
    if backend == "sdpa_causal":
        return n * (n + 1) // 2
    return flex_pairs if flex_pairs is not None else allowed_pairs


def pair_flops(pairs: int, batch: int, heads: int, head_dim: int) -> int:
    """q·k and p·v: d multiply-adds (2d FLOPs) each per pair and head."""
    return 4 * batch * heads * head_dim * pairs


def _gib(x: float) -> str:
    return f"{x / 2**30:.1f} GiB" if x >= 2**28 else f"{x / 2**20:.0f} MiB"


# ----------------------------------------------------------- measurement ---
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call, in ms, including the device's queue."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def kernel_times_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    """Per-call kernel times: CUDA events around each call on GPU, perf_counter on CPU."""
    if device.type != "cuda":
        return [timed_ms(fn, device) for _ in range(repeats)]
    out = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end))
    return out


def cpu_peak_bytes(fn: Callable[[], object]) -> int | None:
    """Peak of the running sum of allocations (minus frees) torch's profiler records
    during one call on CPU; None when the profiler's event tree is not available.
    Memory a kernel takes outside torch's allocator (e.g. on its stack) is not seen."""
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = fn()
            del out
        events = []
        stack = list(prof.profiler.kineto_results.experimental_event_tree())
        while stack:
            node = stack.pop()
            if node.tag == _EventType.Allocation:
                events.append((node.start_time_ns, node.extra_fields.alloc_size))
            stack.extend(node.children)
    except (ImportError, AttributeError, RuntimeError):
        return None
    running = peak = 0
    for _, size in sorted(events):
        running += size
        peak = max(peak, running)
    return peak


def gpu_peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak allocated during one call above what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    out = fn()
    torch.cuda.synchronize(device)
    del out
    return torch.cuda.max_memory_allocated(device) - base


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    # The CPU allocator raises a plain RuntimeError.
    return isinstance(e, RuntimeError) and "can't allocate memory" in str(e)


def _free(device: torch.device, collect: bool = False) -> None:
    """Return freed blocks to the device. `collect` also runs the garbage collector
    (slow with torch loaded: ~0.2 s), needed after a failure whose traceback holds tensors."""
    if collect:
        gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------ rules ---
def rule_for(pattern: str, n: int, params: dict | None = None) -> MaskRule:
    """The pattern's rule at length n: explicit params win over the documented defaults
    (document lengths default to three near-equal documents adding up to n).
    documents=D (document masking only): D near-equal documents at this n, since one list of lengths
    adds up to one N and a sweep has several.
    pattern "custom": params are a custom rule's (rule=text, its named numbers, causal)."""
    params = dict(params or {})
    if pattern == masks.CUSTOM:  # a user's rule has no documented defaults to merge
        return masks.build(pattern, n, **params)
    if pattern not in PATTERN_INFO:
        raise ValueError(f"Unknown pattern {pattern!r}; choose one of: {', '.join(masks.PATTERNS)}.")
    merged = default_params(pattern, n)
    documents = params.pop("documents", None)
    if documents is not None:
        if pattern != "document":
            raise ValueError(f"Only document masking takes a number of documents, not {pattern}.")
        if isinstance(documents, bool) or not isinstance(documents, int) or not 1 <= documents <= n:
            raise ValueError(f"N = {n:,} tokens can hold 1 to {n:,} documents, not {documents!r}.")
        merged["lengths"] = split_evenly(n, documents)
    merged.update({k: v for k, v in params.items() if v is not None})
    return masks.build(pattern, n, **merged)


# --------------------------------------------------------------- the run ---
@dataclass(frozen=True)
class BenchConfig:
    """One sweep. kv_heads None = heads (no GQA). memory_budget_bytes / time_cap_s None =
    the device's defaults (a fraction of free memory; 60 s per row on CPU, none on GPU)."""

    pattern: str
    ns: tuple[int, ...]
    backends: tuple[str, ...] = K.BACKENDS
    params: tuple[tuple[str, object], ...] = ()
    batch: int = 1
    heads: int = 8
    kv_heads: int | None = None
    head_dim: int = 64
    dtype: str = "float32"
    device: str = "cpu"
    repeats: int = 10
    warmup: int = 2
    check: bool = False
    memory_budget_bytes: int | None = None
    time_cap_s: float | None = None
    seed: int = 0


def validate(cfg: BenchConfig) -> torch.device:
    """Raise ValueError with a plain sentence for any bad setting; return the device."""
    for b in cfg.backends:
        K.check_backend(b)
    if not cfg.backends:
        raise ValueError("Choose at least one backend.")
    if not cfg.ns:
        raise ValueError("Give at least one sequence length N.")
    if len(cfg.ns) > limits.BENCH_MAX_SIZES:
        raise ValueError(f"A sweep takes at most {limits.BENCH_MAX_SIZES} sequence lengths, got {len(cfg.ns)}.")
    for n in cfg.ns:
        masks.check_n(n)
    for name, value in (("batch size", cfg.batch), ("head dim", cfg.head_dim), ("number of repeats", cfg.repeats)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"The {name} must be a whole number of at least 1, got {value!r}.")
    if cfg.warmup < 1:
        raise ValueError(f"Warm-up needs at least 1 call (the first call compiles flex), got {cfg.warmup}.")
    K.check_heads(cfg.heads, cfg.kv_heads or cfg.heads)
    most = max(cfg.heads, cfg.kv_heads or 0)
    if most > limits.BENCH_MAX_HEADS:
        raise ValueError(f"At most {limits.BENCH_MAX_HEADS} heads, got {most}.")
    K.check_dtype(cfg.dtype)
    device = K.check_device(cfg.device)
    for n in cfg.ns:  # bad pattern parameters fail before anything runs
        rule_for(cfg.pattern, n, dict(cfg.params))
    return device


def reusable_rows(cfg: BenchConfig, rows: list[dict]) -> dict[tuple[int, str], dict]:
    """{(n, backend): row} of earlier rows this sweep can keep instead of measuring again
    (`bench --resume`): same setup (pattern and rule, batch, heads, kv heads, head dim, dtype,
    device name, torch version), a size and backend the sweep asks for,
    and a measured outcome (ok or out of memory; skipped and failed rows are tried again)."""
    device = validate(cfg)
    kv_heads = cfg.kv_heads or cfg.heads
    want = {"pattern": cfg.pattern, "batch": cfg.batch, "heads": cfg.heads, "kv_heads": kv_heads,
            "head_dim": cfg.head_dim, "dtype": cfg.dtype, "device_name": device_name(device), "torch": torch.__version__}
    keep = {}
    for r in rows:
        n, backend = r.get("n"), r.get("backend")
        if n not in cfg.ns or backend not in cfg.backends or r.get("status") not in ("ok", "oom"):
            continue
        if any(r.get(f) != v for f, v in want.items()) or r.get("rule") != rule_for(cfg.pattern, n, dict(cfg.params)).label:
            continue
        keep[(n, backend)] = r
    return keep


def run_bench(cfg: BenchConfig, progress: Callable[[dict], None] | None = None,
              reuse: dict[tuple[int, str], dict] | None = None) -> list[dict]:
    """Rows (dicts with ROW_FIELDS) for every (N, backend) of the sweep, N ascending.
    `progress(row)` is called after each row. `reuse` (from reusable_rows) holds rows measured
    before: they are returned in their place, and steer the sweep as if just measured."""
    reuse = reuse or {}
    device = validate(cfg)
    dtype = K.check_dtype(cfg.dtype)
    kv_heads = cfg.kv_heads or cfg.heads
    budget = cfg.memory_budget_bytes if cfg.memory_budget_bytes is not None else memory_budget_bytes(device)
    time_cap = cfg.time_cap_s if cfg.time_cap_s is not None else (CPU_TIME_CAP_S if device.type == "cpu" else None)
    peak, peak_source = peak_tflops(device, cfg.dtype)
    common = {
        "pattern": cfg.pattern, "batch": cfg.batch, "heads": cfg.heads, "kv_heads": kv_heads,
        "head_dim": cfg.head_dim, "dtype": cfg.dtype, "device": device.type, "device_name": device_name(device),
        "torch": torch.__version__, "warmup": cfg.warmup, "budget_bytes": budget,
        "peak_tflops_s": peak, "peak_source": peak_source,
    }  # fmt: skip
    rates: dict[str, float] = {}  # backend -> measured executed FLOP/s, for the CPU time cap
    stopped: dict[str, str] = {}  # backend -> why larger sizes are not tried (a real OOM)
    rows = []

    def emit(row: dict) -> None:
        rows.append(_complete(row))
        if progress:
            progress(rows[-1])

    for n in sorted(set(cfg.ns)):
        if all((n, b) in reuse for b in cfg.backends):  # nothing to measure: no inputs to build
            for backend in cfg.backends:
                _steer(reuse[(n, backend)], rates, stopped)
                emit(reuse[(n, backend)])
            continue
        rule = rule_for(cfg.pattern, n, dict(cfg.params))
        shape = Shape(cfg.batch, cfg.heads, kv_heads, n, cfg.head_dim, torch.empty((), dtype=dtype).element_size())
        stats, unusable = {}, ""
        try:
            stats["rule"] = mask_stats(rule, n)
        except ValueError as e:  # a custom rule too fragmented for its exact form at this N: its pairs cannot be counted
            unusable = str(e)
        if "sdpa_causal" in cfg.backends:
            stats["causal"] = mask_stats(masks.causal(), n)
        q = k = v = None
        refs = {}
        if stats:  # else no backend can run at this size: no inputs to build
            gen = torch.Generator(device="cpu").manual_seed(cfg.seed + n)
            q = torch.randn(cfg.batch, cfg.heads, n, cfg.head_dim, generator=gen).to(device, dtype)  # (B, H, N, d)
            k = torch.randn(cfg.batch, kv_heads, n, cfg.head_dim, generator=gen).to(device, dtype)  # (B, H_kv, N, d)
            v = torch.randn(cfg.batch, kv_heads, n, cfg.head_dim, generator=gen).to(device, dtype)
            if cfg.check:
                refs = _references(cfg, None if unusable else rule, n, shape, q, k, v, device, budget)
        for backend in cfg.backends:
            if (n, backend) in reuse:
                _steer(reuse[(n, backend)], rates, stopped)
                emit(reuse[(n, backend)])
                continue
            row = dict(common, backend=backend, rule=rule.label, n=n, date=_now())
            if unusable and backend != "sdpa_causal":  # sdpa_causal computes causal attention whatever the rule
                emit(dict(row, status="error", reason=unusable))
                continue
            row["note"] = _cpu_load_note() if device.type == "cpu" else ""
            computed = K.computed_rule(backend, rule)
            row["computes"] = computed.label
            st = stats["causal" if backend == "sdpa_causal" else "rule"]
            row["allowed_pairs"] = st.allowed_pairs
            row["useful_flops"] = pair_flops(st.allowed_pairs, cfg.batch, cfg.heads, cfg.head_dim)
            row["estimate_bytes"] = estimate_bytes(backend, shape, device.type, rule.has_intervals)
            # Until flex's BlockMask exists, its executed pairs come from the exact tile counts.
            row["flex_block"] = K.flex_block(device) if backend == "flex" else None
            flex_pairs = _tile_pairs(rule, n, row["flex_block"]) if backend == "flex" else None
            row["executed_pairs"] = executed_pairs(backend, n, st.allowed_pairs, flex_pairs)
            row["executed_flops"] = pair_flops(row["executed_pairs"], cfg.batch, cfg.heads, cfg.head_dim)
            repeats, skip = _plan(cfg, backend, n, row, budget, time_cap, rates, stopped)
            row["repeats"] = repeats
            if skip:
                row.update(status="skipped", reason=skip)
            else:
                _measure(row, cfg, backend, rule, n, q, k, v, device, repeats, refs)
                if row["status"] == "ok":
                    _rates_to_row(row, peak)
                _steer(row, rates, stopped)
            emit(row)
            _free(device, collect=row["status"] in ("oom", "error"))
        del q, k, v, refs
        _free(device)
    return rows


def _steer(row: dict, rates: dict, stopped: dict) -> None:
    """What a row tells the rest of the sweep: its backend's measured rate (for the time
    cap), or that it ran out of memory (larger sizes are not tried)."""
    if row["status"] == "ok":
        rates[row["backend"]] = row["executed_flops"] / (row["time_ms"] / 1e3)
    elif row["status"] == "oom":
        stopped[row["backend"]] = f"ran out of memory at N = {row['n']}"


def _cpu_load_note() -> str:
    """CPU timings depend on what else runs; the row says how busy the machine was."""
    try:
        return f"1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs before this row"
    except OSError:
        return ""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _tile_pairs(rule: MaskRule, n: int, block: int = K.FLEX_BLOCK) -> int:
    """Area of the non-empty block × block tiles (clipped at N), from the exact tile overview."""
    from .render import tile_overview

    ov = tile_overview(rule, n, tile_size=block)
    return int(ov.areas[ov.counts > 0].sum())


def _plan(cfg, backend, n, row, budget, time_cap, rates, stopped) -> tuple[int, str | None]:
    """(repeats to run, reason to skip or None)."""
    if backend in stopped:
        return cfg.repeats, stopped[backend]
    if row["estimate_bytes"] > budget:
        return cfg.repeats, f"needs {_gib(row['estimate_bytes'])}, budget {_gib(budget)}"
    if time_cap is None:
        return cfg.repeats, None
    on_gpu = row.get("device") == "cuda"
    assumed = GPU_ASSUMED_FLOPS_S if on_gpu else CPU_ASSUMED_FLOPS_S if backend == "naive" else CPU_ASSUMED_FUSED_FLOPS_S
    rate = rates.get(backend, assumed)
    per_call_s = row["executed_flops"] / rate
    extra_calls = cfg.warmup + 1 + (1 if cfg.check else 0)  # warm-up, memory call, check call
    repeats = cfg.repeats
    if per_call_s * (extra_calls + repeats) > time_cap:
        # Fewer repeats first (at least 3 for a median), then give up on the size.
        repeats = max(3, int(time_cap / per_call_s) - extra_calls)
        if per_call_s * (extra_calls + repeats) > time_cap:
            total = per_call_s * (extra_calls + repeats)
            return repeats, f"would take about {total:.0f} s on this {'GPU' if on_gpu else 'CPU'}, time cap {time_cap:.0f} s"
    return repeats, None


def _references(cfg, rule, n, shape, q, k, v, device, budget) -> dict:
    """Naive attention in float32 on the same inputs: of the rule ("rule"), and of causal
    ("causal") for sdpa_causal. When it cannot run, "why" says so and the rows are unchecked."""
    ref_shape = Shape(shape.batch, shape.heads, shape.kv_heads, n, shape.head_dim, 4)
    need = estimate_bytes("naive", ref_shape, device.type) + 3 * shape.q_bytes
    if need > budget:
        return {"why": f"not checked: the naive reference needs {_gib(need)}, budget {_gib(budget)}"}
    q32, k32, v32 = q.float(), k.float(), v.float()
    out = {}
    try:
        if rule is not None:  # None: the rule cannot be built at this N (only sdpa_causal runs)
            out["rule"] = K.run(K.prepare("naive", rule, n, device, cached=False), q32, k32, v32)
        if "sdpa_causal" in cfg.backends:
            out["causal"] = K.run(K.prepare("naive", masks.causal(), n, device, cached=False), q32, k32, v32)
    except Exception as e:  # noqa: BLE001 -- a reference that cannot run only disables the check
        first = (str(e).splitlines() or [""])[0][:200]
        return {"why": f"not checked: the naive reference failed ({type(e).__name__}: {first})"}
    return out


def _measure(row, cfg, backend, rule, n, q, k, v, device, repeats, refs) -> None:
    """Fill the timing, memory and check fields of `row`; status ok, oom or error."""
    try:
        t0 = time.perf_counter()
        prep = K.prepare(backend, rule, n, device, cached=False)
        _sync(device)
        build_ms = (time.perf_counter() - t0) * 1e3
        build_extra_ms = 0.0
        if backend == "flex" and device.type == "cuda":
            # The CUDA builder is compiled: the first build includes its compilation.
            t0 = time.perf_counter()
            prep = K.prepare(backend, rule, n, device, cached=False)
            _sync(device)
            steady = (time.perf_counter() - t0) * 1e3
            build_extra_ms, build_ms = build_ms - steady, steady
        if backend == "flex":
            row["block_mask_ms"] = build_ms
            row["executed_pairs"] = K.block_mask_pairs(prep.block_mask, n)
            row["executed_flops"] = pair_flops(row["executed_pairs"], cfg.batch, cfg.heads, cfg.head_dim)
        elif backend in K.DENSE_BACKENDS:
            row["dense_mask_ms"] = build_ms
        row["mask_bytes"] = prep.mask_bytes

        def call():
            return K.run(prep, q, k, v)

        row["first_call_ms"] = timed_ms(call, device)
        for _ in range(cfg.warmup - 1):
            timed_ms(call, device)
        times = kernel_times_ms(call, device, repeats)
        # The median is the figure; the minimum shows what the kernel does undisturbed
        # when the machine is shared (the row's note gives the load).
        row["time_ms"], row["time_ms_min"] = statistics.median(times), min(times)
        if backend == "flex":
            row["compile_ms"] = max(0.0, row["first_call_ms"] - row["time_ms"]) + build_extra_ms
            row["note"] = "; ".join(x for x in (f"flex {K.flex_mode()}", row.get("note")) if x)
        if device.type == "cuda":
            call_peak, row["peak_method"] = gpu_peak_bytes(call, device), "cuda max_memory_allocated during one call + mask"
        else:
            call_peak = cpu_peak_bytes(call)
            row["peak_method"] = "torch profiler CPU allocations during one call + mask"
            if call_peak is None:
                call_peak, row["peak_method"] = row["estimate_bytes"], "estimate (profiler unavailable)"
        # What the backend needs beyond its inputs: the mask it holds plus the call's own peak.
        row["peak_bytes"] = call_peak + prep.mask_bytes
        key = "causal" if backend == "sdpa_causal" else "rule"
        if cfg.check:
            if key in refs:
                out = call().float()
                row["max_abs_err"] = float((out - refs[key]).abs().max()) if out.numel() else 0.0
                row["check_atol"] = check_atol(device.type, cfg.dtype)
                row["check_ok"] = row["max_abs_err"] <= row["check_atol"]
                row["check_against"] = f"naive float32 ({K.computed_rule(backend, rule).label})"
            else:
                row["check_against"] = refs.get("why", "not checked")
        row.update(status="ok", reason="")
    except Exception as e:  # noqa: BLE001 -- a failing size is recorded, the sweep goes on
        if _is_oom(e):
            row.update(status="oom", reason=f"out of memory: {str(e).splitlines()[0][:200]}")
        else:
            row.update(status="error", reason=f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}")


def _rates_to_row(row: dict, peak: float | None) -> None:
    seconds = row["time_ms"] / 1e3
    row["useful_tflops_s"] = row["useful_flops"] / seconds / 1e12
    row["executed_tflops_s"] = row["executed_flops"] / seconds / 1e12
    row["pct_of_peak"] = 100 * row["executed_tflops_s"] / peak if peak else None


def _complete(row: dict) -> dict:
    """Every field present (None when not measured), rounded for reading."""
    out = {f: row.get(f) for f in ROW_FIELDS}
    for f in ("time_ms", "time_ms_min", "first_call_ms", "compile_ms", "dense_mask_ms", "block_mask_ms"):
        if out[f] is not None:
            out[f] = round(out[f], 4)
    for f in ("useful_tflops_s", "executed_tflops_s", "pct_of_peak"):
        if out[f] is not None:
            out[f] = float(f"{out[f]:.5g}")
    return out


# ---------------------------------------------------------------- output ---
def write_json(rows: list[dict], path: str) -> None:
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
        f.write("\n")


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in ROW_FIELDS})


def read_json(path: str) -> list[dict]:
    with open(path) as f:
        return json.load(f)


def summary_line(row: dict) -> str:
    """One line per row for the terminal."""
    head = f"{row['backend']:<12} N={row['n']:<7}"
    if row["status"] != "ok":
        return f"{head} {row['status']}: {row['reason']}"
    err = f"  max err {row['max_abs_err']:.2e}" if row.get("max_abs_err") is not None else ""
    return (
        f"{head} {row['time_ms']:10.3f} ms  peak {_gib(row['peak_bytes']):>9}  "
        f"useful {row['useful_tflops_s'] * 1e3:8.2f} GFLOP/s  executed {row['executed_tflops_s'] * 1e3:8.2f} GFLOP/s{err}"
    )

