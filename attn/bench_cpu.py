"""CPU benchmarks of the exact long-sequence computations: tile overview and receptive field.

Reference in the same run: the same overview counted pair by pair (dense predicate
evaluation in row chunks) at a smaller N, scaled by the number of pairs, so the
result reads as a ratio that survives a noisy machine.
"""

from __future__ import annotations

import datetime
import platform
import statistics
import time
import tracemalloc

import numpy as np
import torch

from . import masks
from .render import tiles_by_predicate, tile_edges, tile_overview


def bench_rules(n: int) -> list[masks.MaskRule]:
    return [
        masks.sliding_window(4096),
        masks.local_global(512, [0, 1, 2, 3]),
        masks.bigbird(512, [0], 3, 0, 64, n),
        masks.strided(128),  # key sets with a stride (progressions): the slowest overview path
    ]


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def run_render_bench(n: int = 131072, tiles: int = 512, repeats: int = 5, ref_n: int = 4096) -> list[dict]:
    rows = []
    for rule in bench_rules(n):
        t = _median_time(lambda: tile_overview(rule, n, tiles), repeats)
        peak = _peak_bytes(lambda: tile_overview(rule, n, tiles))
        ref_rule = rule if rule.n is None else masks.bigbird(512, [0], 3, 0, 64, ref_n)
        _, ref_edges = tile_edges(ref_n, tiles)
        t_ref = _median_time(lambda: tiles_by_predicate(ref_rule, ref_n, ref_edges), 1)
        dense_estimate = t_ref * (n / ref_n) ** 2
        rows.append(
            {
                "rule": rule.label,
                "n": n,
                "tiles": tiles,
                "time_s_median": round(t, 4),
                "repeats": repeats,
                "peak_bytes": peak,
                "dense_reference_n": ref_n,
                "dense_reference_s": round(t_ref, 4),
                "dense_estimate_s": round(dense_estimate, 1),
                "speedup_vs_dense": round(dense_estimate / t, 1),
                "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
                "numpy": np.__version__,
                "torch": torch.__version__,
                "date": datetime.date.today().isoformat(),
            }
        )
    return rows


def run_reach_bench(n: int = 131072, repeats: int = 5) -> list[dict]:
    """Last-token reach per layer at long N, for the Mistral and Gemma 2 presets.

    Reference in the same run: one boolean composition step (N³ work) at N = 512,
    scaled to this N, i.e. what the matrix method would cost per layer.
    """
    from .presets import STACK_PRESETS, build_stack
    from .reach import reach_matrix, reach_of_token

    t_ref = _median_time(lambda: reach_matrix(masks.sliding_window(64), 512, 1), 3)
    rows = []
    for name in ("mistral-7b-v0.1", "gemma-2-9b"):
        preset = STACK_PRESETS[name]
        stack = build_stack(preset.spec, preset.layers, n, name)
        t = _median_time(lambda: reach_of_token(stack, n, n - 1, preset.layers), repeats)
        result = reach_of_token(stack, n, n - 1, preset.layers)
        rows.append(
            {
                "stack": name,
                "n": n,
                "layers": preset.layers,
                "time_s_median": round(t, 4),
                "repeats": repeats,
                "reach_last_layer": result.counts[-1],
                "full_context_layer": result.full_context_layer,
                "matrix_method_estimate_s_per_layer": round(t_ref * (n / 512) ** 3, 1),
                "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
                "torch": torch.__version__,
                "date": datetime.date.today().isoformat(),
            }
        )
    return rows
