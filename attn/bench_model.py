"""Timings and perplexities of the real model on this machine (CPU or GPU).

    python -m attn.bench_model --json assets/bench/model_cpu.json

Rows: model load (GGUF conversion into an empty cache, then from the cache, each in a fresh
process), forward times at N = 512 and 1024, attention maps at 512 under a window, a 7-window
perplexity sweep at 512, a repeated (cached) request, peak memory, and the perplexity of every
sample document (first 512 tokens) at windows 16, 64, 256 and full. Each row carries the
device, torch version, date and the machine's load average, since other work on a 2-core
machine changes CPU timings a lot.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import masks, model

FORWARD_ROW = "forward N={n}, full causal"  # the "what" of a full-causal forward's row
RECORDED = Path(__file__).resolve().parent.parent / "assets" / "bench" / "model_cpu.json"
LOAD_SNIPPET = "import json; from attn import model; m = model.load_model(); print(json.dumps([m.source, m.load_seconds]))"


def _context() -> dict:
    return {
        "device": model.device_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
    }


def _row(what: str, **values) -> dict:
    """One result, with the 1-minute load average when it was taken."""
    return {"what": what, **values, "load_average_1min": round(os.getloadavg()[0], 2)}


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_rows() -> list[dict]:
    """Load in fresh processes: into an empty cache (converts the GGUF), then from that cache."""
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, **{model.CACHE_ENV: cache})
        for _ in range(2):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], env=env, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - start
            source, seconds = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(_row(f"load ({source})", seconds=round(seconds, 3), process_seconds=round(wall, 3)))
    return rows


def timing_rows(repeats: int = 3) -> list[dict]:
    ids = model.encode(model.sample_doc("contract").text, 1024).ids  # 2,780 tokens
    model.logits(ids[:64])  # warm-up: the first forward of a process is slower
    rows = []
    for n in (512, 1024):
        sec = _median_seconds(lambda: model.logits(ids[:n]), repeats)
        rows.append(_row(FORWARD_ROW.format(n=n), seconds=round(sec, 3)))
        sec = _median_seconds(lambda: model.logits(ids[:n], masks.sliding_window(64)), repeats)
        rows.append(_row(f"forward N={n}, sliding_window(64) additive mask", seconds=round(sec, 3)))
    rule = masks.sliding_window(64)
    sec = _median_seconds(lambda: model.attention_maps(ids[:512], rule), repeats)
    rows.append(_row("attention maps N=512, 30 layers x 9 heads, sliding_window(64)", seconds=round(sec, 3)))
    model._token_losses_cached.cache_clear()
    start = time.perf_counter()
    model.window_sweep(ids[:512], (16, 32, 64, 128, 256, 512, model.FULL))
    rows.append(_row("window sweep N=512, 7 windows (16..512, full)", seconds=round(time.perf_counter() - start, 3)))
    sec = _median_seconds(lambda: model.perplexity(ids[:512], masks.sliding_window(64)), repeats)
    rows.append(_row("repeated perplexity request N=512 (cached)", seconds=round(sec, 4)))
    rows.append(_row("peak resident memory of this process", bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    return rows


@functools.lru_cache(maxsize=4)  # a page asks on every rerun; the file changes only with a new recording
def recorded_pace(path: Path = RECORDED) -> str:
    """One sentence on how long a forward took where the recorded file was made ("" without one),
    so a page can say what a long run will cost before it starts."""
    try:
        rows = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return ""
    forwards = [(n, r) for r in rows for n in (512, 1024, 2048, 4096) if r.get("what") == FORWARD_ROW.format(n=n)]
    if not forwards:
        return ""
    first = forwards[0][1]
    took = ", ".join(f"{r['seconds']:.1f} s at {n:,} tokens" for n, r in forwards)
    return f"Recorded on {first['device']} ({first['threads']} threads, {first['date']}): one forward took {took}."


def perplexity_rows(windows=(16, 64, 256, model.FULL), tokens: int = 512) -> list[dict]:
    rows = []
    for doc in model.sample_docs():
        enc = model.encode(doc.text, tokens)
        ppl = {f"window_{w}": round(model.perplexity(enc, model.sweep_rule(w)), 3) for w in windows}
        rows.append(_row(f"perplexity {doc.name}", tokens=enc.n, **ppl))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the rows to this file")
    p.add_argument("--no-load", action="store_true", help="skip the two fresh-process load timings")
    args = p.parse_args(argv)
    ctx = _context()
    rows = [] if args.no_load else load_rows()
    rows += timing_rows() + perplexity_rows()
    rows = [{**ctx, **r} for r in rows]
    for r in rows:
        print(json.dumps(r), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
