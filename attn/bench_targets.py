"""The kernel benchmark's targets, computed from recorded result files (assets/bench/kernels_*.json).

Each target is a ratio between two backends measured in the same run (same device, same
session), as the project measures speed: machines are noisy, ratios less so. The one
exception is flex sliding window against flex causal, which `make gpu-sweeps` records in two
files one after the other; both must come from the same device and torch.

A target reads "met", "missed", or "no data" with what is missing (e.g. no GPU run yet).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, replace

from .bench_figures import loglog_slope, n_tick, ok_rows

# The setups the targets are stated for.
CPU_SETUP = {"device": "cpu", "dtype": "float32", "batch": 1, "heads": 8, "head_dim": 64}
GPU_SETUP = {"device": "cuda", "dtype": "bfloat16", "batch": 1, "heads": 16, "head_dim": 128}
CPU_RULE = "sliding_window(window=256)"
GPU_WINDOW_RULE = "sliding_window(window=4096)"


@dataclass(frozen=True)
class Target:
    name: str  # what the issue asks, in words
    status: str  # "met", "missed", "no data", or "info" (reported, no threshold)
    measured: str  # the figure, e.g. "0.26×"
    detail: str  # where it comes from: sizes, times, device, date

    def as_dict(self) -> dict:
        return {"target": self.name, "status": self.status, "measured": self.measured, "detail": self.detail}


def _json_lists(folder: str, pattern: str):
    """(file name, list) for each JSON file under `folder` matching `pattern` that holds a list;
    unreadable or malformed files are skipped (a half-written results file must not stop the page)."""
    for path in sorted(glob.glob(os.path.join(folder, pattern))):
        try:
            with open(path) as f:
                rows = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(rows, list):
            yield os.path.basename(path), rows


def load_runs(folder: str) -> list[tuple[str, list[dict]]]:
    """(file name, rows) of every kernels_*.json under `folder` that holds bench rows."""
    return [(name, rows) for name, rows in _json_lists(folder, "kernels_*.json")
            if rows and all(isinstance(r, dict) and "backend" in r for r in rows)]


REGISTER_BLOCK_FILES = "flex_cpu_register_block*.json"  # written by python -m attn.bench_flex_cpu


def load_register_blocks(folder: str) -> list[dict]:
    """Rows of the CPU register-block experiment (attn/bench_flex_cpu.py) under `folder`, each with
    its file name under "file"."""
    return [r | {"file": name} for name, rows in _json_lists(folder, REGISTER_BLOCK_FILES)
            for r in rows if isinstance(r, dict) and {"rows", "ratio", "device_name"} <= r.keys()]


def _register_block_note(register_blocks, cpu: str) -> str:
    """Why a CPU missed, where the experiment ran on that CPU: the ratio with torch's register
    block and with the experiment's best one."""
    mine = [r for r in register_blocks if r["device_name"] == cpu]
    stock = [r for r in mine if r.get("stock")]
    other = [r for r in mine if not r.get("stock")]
    if not stock or not other:
        return ""
    best = min(other, key=lambda r: r["ratio"])
    return (f". torch's CPU flex kernel multiplies with a {stock[0]['register_block']} register block ({stock[0]['ratio']:.2f}× "
            f"in that experiment); recompiled with {best['register_block']}, the same blocks gave {best['ratio']:.2f}× "
            f"({best['file']}, {str(best.get('date', '?'))[:10]})")


def _matching(runs, setup: dict, rule: str) -> list[tuple[str, list[dict]]]:
    """Runs whose rows of `rule` have this setup, each keeping only those rows; the run with the
    most timed repeats first (a run made for the target's size rather than a quick sweep), then
    the newest."""
    out = []
    for name, rows in runs:
        mine = [r for r in rows if r.get("rule") == rule and all(r.get(k) == v for k, v in setup.items())]
        if mine:
            out.append((name, mine))

    def key(run):
        return max(r.get("repeats") or 0 for r in run[1]), max(str(r.get("date", "")) for r in run[1])

    return sorted(out, key=key, reverse=True)


def _row(rows, backend: str, n: int) -> dict | None:
    return next((r for r in rows if r.get("backend") == backend and r.get("n") == n), None)


def _origin(name: str, rows) -> str:
    r = rows[0]
    return f"{name}: {r.get('device_name', '?')}, {r.get('dtype', '?')}, {str(r.get('date', '?'))[:10]}"


def _why_not(row: dict | None, backend: str, n: int) -> str:
    if row is None:
        return f"{backend} was not run at N = {n:,}"
    return f"{backend} at N = {n:,}: {row.get('status')}" + (f" ({row['reason']})" if row.get("reason") else "")


def _time_ratio(name: str, runs_a, runs_b, a: str, b: str, n: int, limit: float, at_most: bool, what: str) -> Target:
    """time(a) / time(b) at N (at_most: ratio <= limit) or time(b) / time(a) >= limit."""
    if not runs_a or not runs_b:
        return Target(name, "no data", "", f"no recorded run with this setup ({what})")
    (file_a, rows_a), (file_b, rows_b) = runs_a[0], runs_b[0]
    ra, rb = _row(rows_a, a, n), _row(rows_b, b, n)
    for row, backend, file, rows in ((ra, a, file_a, rows_a), (rb, b, file_b, rows_b)):
        if row is None or row.get("status") != "ok" or not row.get("time_ms"):
            return Target(name, "no data", "", f"{_why_not(row, backend, n)} ({_origin(file, rows)})")
    ta, tb = ra["time_ms"], rb["time_ms"]
    value = ta / tb if at_most else tb / ta
    met = value <= limit if at_most else value >= limit
    origin = _origin(file_a, rows_a) + ("" if file_a == file_b else f"; {_origin(file_b, rows_b)}")
    return Target(name, "met" if met else "missed", f"{value:.2f}×",
                  f"{a} {ta:.3g} ms, {b} {tb:.3g} ms at N = {n:,} ({origin})")


def cpu_targets(runs, register_blocks=()) -> list[Target]:
    """One result per CPU that has a recorded run: the ratio depends on the processor. A missed
    one says what the register-block experiment measured on that CPU, where it ran."""
    sw = _matching(runs, CPU_SETUP, CPU_RULE)
    name = "CPU: flex ≤ 0.3× sdpa_mask's time (sliding window 256, N = 2048, H = 8, d = 64, fp32)"
    cpus = list(dict.fromkeys(run[1][0].get("device_name") for run in sw))
    if not cpus:
        return [_time_ratio(name, [], [], "flex", "sdpa_mask", 2048, 0.3, True, "CPU, sliding_window(256), fp32, H = 8, d = 64")]
    out = []
    for cpu in cpus:
        mine = [run for run in sw if run[1][0].get("device_name") == cpu]
        target = _time_ratio(f"{name}, on {cpu}", mine, mine, "flex", "sdpa_mask", 2048, 0.3, True, cpu)
        if target.status == "missed":
            target = replace(target, detail=target.detail + _register_block_note(register_blocks, cpu))
        out.append(target)
    return out


def gpu_targets(runs) -> list[Target]:
    what = "GPU, bf16, B = 1, H = 16, d = 128"
    sw = _matching(runs, GPU_SETUP, GPU_WINDOW_RULE)
    causal = _matching(runs, GPU_SETUP, "causal")
    if sw and causal:  # the causal run must be from the same device and torch as the window run
        ref = sw[0][1][0]
        causal = [run for run in causal
                  if run[1][0].get("device_name") == ref.get("device_name") and run[1][0].get("torch") == ref.get("torch")]
    out = [
        _time_ratio("GPU: flex sliding window (W = 4096) ≤ 20% of flex causal's time at N = 65,536",
                    sw, causal, "flex", "flex", 65536, 0.2, True, what + ", sliding window 4096 and causal"),
        _time_ratio("GPU: flex ≥ 3× faster than sdpa_mask at N = 16,384 (sliding window 4096)",
                    sw, sw, "flex", "sdpa_mask", 16384, 3.0, False, what + ", sliding window 4096"),
    ]
    name = "GPU: flex peak memory grows with log-log slope ≤ 1.1 (sliding window 4096)"
    if not sw:
        out.append(Target(name, "no data", "", f"no recorded run with this setup ({what}, sliding window 4096)"))
        out.append(Target("GPU: flex sliding window's useful TFLOP/s ≥ 60% of sdpa_causal's at N ≥ 16k",
                          "no data", "", f"no recorded run with this setup ({what}, sliding window 4096)"))
        return out
    file, rows = sw[0]
    flex = ok_rows(rows, "flex", "peak_bytes")
    slope = loglog_slope([r["n"] for r in flex], [r["peak_bytes"] for r in flex])
    if slope is None:
        out.append(Target(name, "no data", "", f"flex ran at fewer than two sizes ({_origin(file, rows)})"))
    else:
        span = f"N = {n_tick(flex[0]['n'])}…{n_tick(flex[-1]['n'])}"
        out.append(Target(name, "met" if slope <= 1.1 else "missed", f"{slope:.2f}", f"over {span} ({_origin(file, rows)})"))
    dense = ok_rows(rows, "sdpa_mask", "peak_bytes")
    if dense:
        d_slope = loglog_slope([r["n"] for r in dense], [r["peak_bytes"] for r in dense])
        last = dense[-1]["n"]
        after = next((r for r in sorted(rows, key=lambda r: r["n"]) if r["backend"] == "sdpa_mask" and r["n"] > last), None)
        stop = f"; at N = {after['n']:,}: {after['status']} ({after.get('reason') or ''})" if after else "; ran at every size"
        out.append(Target("GPU: sdpa_mask peak memory (for comparison: about 2, until it runs out)", "info",
                          f"{d_slope:.2f}" if d_slope is not None else "one size",
                          f"largest N that ran {last:,}{stop} ({_origin(file, rows)})"))
    out.append(_throughput_share(rows, file))
    return out


def _throughput_share(rows, file) -> Target:
    """min over N ≥ 16384 of useful TFLOP/s(flex) / useful TFLOP/s(sdpa_causal), same run."""
    name = "GPU: flex sliding window's useful TFLOP/s ≥ 60% of sdpa_causal's at N ≥ 16k"
    shares = []
    for n in sorted({r["n"] for r in rows if r["n"] >= 16384}):
        f, c = _row(rows, "flex", n), _row(rows, "sdpa_causal", n)
        if f and c and f.get("status") == c.get("status") == "ok" and f.get("useful_tflops_s") and c.get("useful_tflops_s"):
            shares.append((f["useful_tflops_s"] / c["useful_tflops_s"], n, f["useful_tflops_s"], c["useful_tflops_s"]))
    if not shares:
        return Target(name, "no data", "", f"flex and sdpa_causal did not both run at any N ≥ 16,384 ({_origin(file, rows)})")
    share, n, tf, tc = min(shares)
    sizes = ", ".join(n_tick(s[1]) for s in sorted(shares, key=lambda s: s[1]))
    return Target(name, "met" if share >= 0.6 else "missed", f"{share:.0%} (lowest)",
                  f"at N = {n:,}: flex {tf:.3g}, sdpa_causal {tc:.3g} useful TFLOP/s; checked at N = {sizes} "
                  f"({_origin(file, rows)})")


def all_targets(runs, register_blocks=()) -> list[Target]:
    return cpu_targets(runs, register_blocks) + gpu_targets(runs)
