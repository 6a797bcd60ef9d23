"""Command line: `python -m attn mask ...` (stable flags; scripts and checks rely on them)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from . import limits, masks, rules
from .presets import PARAMS, PATTERN_INFO, STACK_PRESETS, default_params
from .render import BLOCK_KIND_NAMES, block_kinds, dense_numpy, mask_csv, mask_stats, tile_overview
from .state import parse_int_list

JSON_DENSE_MAX_N = limits.EXPORT_MAX_N


def _int_list(what):
    def parse(text):
        try:
            return parse_int_list(text, what)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _rule_param(text):
    try:
        return rules.parse_param(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_rule_args(
    p: argparse.ArgumentParser, required: bool = True, n_list: bool = False, n_required: bool = True
) -> None:
    # n_required=False: the command sets args.n itself (ppl: N is the document's token count).
    # A command takes a built-in pattern or a custom rule, never both (argparse exits 2 on both).
    which = p.add_mutually_exclusive_group(required=required)
    which.add_argument("--pattern", choices=masks.PATTERNS)
    which.add_argument("--rule", help='custom rule on q and k instead of --pattern, e.g. "q >= k and q - k < W"')
    p.add_argument("--param", dest="rule_params", action="append", type=_rule_param, metavar="NAME=INT",
                   help="a parameter of --rule, e.g. --param W=16 (repeatable)")  # fmt: skip
    if n_list:  # kept as text: the command parses the comma list and reports bad items itself
        p.add_argument("--n", required=True, help="sequence length, or a comma list of lengths for a sweep")
    else:
        p.add_argument("--n", type=int, required=n_required, help="sequence length")
    p.add_argument("--window", type=int)
    p.add_argument("--dilation", type=int)
    p.add_argument("--global", dest="global_tokens", type=_int_list("global token"), help="comma list of indices")
    p.add_argument("--random", dest="random_blocks", type=int, help="random key blocks per query block (BigBird)")
    p.add_argument("--seed", type=int)
    p.add_argument("--block", type=int, help="BigBird block size")
    p.add_argument("--stride", type=int)
    p.add_argument("--chunk", type=int)
    p.add_argument("--sinks", type=int)
    p.add_argument("--prefix", type=int)
    p.add_argument("--docs", dest="lengths", type=_int_list("document length"), help="comma list of lengths")
    p.add_argument("--causal", dest="causal", action="store_true", default=None, help="AND the pattern with causal")
    p.add_argument("--bidirectional", dest="causal", action="store_false", help="do not AND with causal")


def rule_from_args(args) -> masks.MaskRule:
    """Explicit flags win; the pattern's documented defaults fill the rest. --rule builds a custom rule."""
    if getattr(args, "rule", None) is not None:
        return _custom_rule_from_args(args)
    if getattr(args, "rule_params", None):
        raise ValueError("--param gives a value to a name in --rule; with --pattern use the pattern's own flags.")
    params = default_params(args.pattern, args.n)
    for name in PATTERN_INFO[args.pattern].params:
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    return masks.build(args.pattern, args.n, **params)


def _custom_rule_from_args(args) -> masks.MaskRule:
    flag = {"global_tokens": "--global", "random_blocks": "--random", "lengths": "--docs"}
    # "rule" and "rule_params" are the custom rule's own entries in PARAMS (the pages' widgets), not pattern flags.
    pattern_flags = [flag.get(name, "--" + name) for name in PARAMS
                     if name not in ("causal", "rule", "rule_params") and getattr(args, name, None) is not None]
    if pattern_flags:
        raise ValueError(
            f"Pattern flags ({', '.join(pattern_flags)}) go with --pattern; name the numbers of --rule "
            "and give them as --param NAME=INT, e.g. --rule \"q >= k and q - k < W\" --param W=16."
        )
    params: dict[str, int] = {}
    for name, value in args.rule_params or ():
        if name in params:
            raise ValueError(f"--param {name} is given twice.")
        params[name] = value
    return rules.custom_rule(args.rule, args.n, params, causal=bool(args.causal))


TEXT_MAX_COLUMNS = 128  # a terminal's width, one character a cell
BLOCK_CHARS = "·▒█"  # skipped, partial, full (as FlexAttention's BlockMask prints: light to dark)


def mask_text(rule, n: int, kernel_block: int | None) -> str:
    """The mask in a terminal: one character a pair (█ allowed, · masked), or with kernel_block one a
    block (█ full, ▒ partial, · skipped), query 0 at the top."""
    t = -(-n // (kernel_block or 1))  # checked before anything N × N is built
    if t > TEXT_MAX_COLUMNS:
        smallest = -(-n // TEXT_MAX_COLUMNS)
        raise ValueError(f"--format text draws at most {TEXT_MAX_COLUMNS} columns; N = {n:,} gives {t:,}: "
                         f"add --kernel-blocks {1 << max(0, (smallest - 1).bit_length())} or more, or --format png.")
    if kernel_block:
        bk = block_kinds(rule, n, kernel_block)
        cells, chars = bk.kinds, BLOCK_CHARS
        head = (f"{rule.label}, N = {n:,}, {kernel_block}×{kernel_block} blocks: "
                + ", ".join(f"{bk.total(k):,} {name} ({BLOCK_CHARS[k]})" for k, name in reversed(list(enumerate(BLOCK_KIND_NAMES)))))
    else:
        cells, chars = dense_numpy(rule, n), "·█"
        head = f"{rule.label}, N = {n:,}: {int(cells.sum()):,} pairs allowed (█), rows = queries, columns = keys"
    return "\n".join([head] + ["".join(chars[v] for v in row) for row in cells.tolist()])


def cmd_mask(args) -> int:
    rule = rule_from_args(args)
    n = args.n
    if args.kernel_blocks is not None and args.kernel_blocks < 1:
        raise ValueError(f"--kernel-blocks must be a positive block size in tokens, got {args.kernel_blocks}.")
    if args.tiles is not None and args.tiles < 1:
        raise ValueError(f"--tiles must be a positive number of tiles a side, got {args.tiles}.")
    if args.format == "text":
        _write_text(mask_text(rule, n, args.kernel_blocks), args.out)
    elif args.format == "json":
        out = {"pattern": rule.name, "params": _jsonable(rule.param_dict), "label": rule.label, "n": n}
        stats = mask_stats(rule, n)
        out["allowed_pairs"] = stats.allowed_pairs
        out["min_keys"], out["max_keys"] = stats.min_keys, stats.max_keys
        if args.tiles:
            ov = tile_overview(rule, n, args.tiles)
            out["tile_size"] = ov.tile_size
            out["tiles"] = np.round(ov.fractions, 9).tolist()
            out["tile_counts"] = ov.counts.tolist()
        else:
            if n > JSON_DENSE_MAX_N:
                raise ValueError(f"A full JSON mask stops at N = {JSON_DENSE_MAX_N}; add --tiles 512 for an exact overview.")
            out["mask"] = dense_numpy(rule, n).tolist()
        if args.kernel_blocks:
            bk = block_kinds(rule, n, args.kernel_blocks)
            out["kernel_blocks"] = {"block": bk.block, "kinds": list(BLOCK_KIND_NAMES),
                                    "blocks": bk.kinds.tolist(),
                                    **{name: bk.total(k) for k, name in enumerate(BLOCK_KIND_NAMES)},
                                    "computed_pairs": bk.computed_pairs}
        _write_text(json.dumps(out, separators=(",", ":")), args.out)
    elif args.format in ("csv", "npy"):
        if n > JSON_DENSE_MAX_N:
            raise ValueError(f"CSV and NPY exports stop at N = {JSON_DENSE_MAX_N} (a {n}×{n} matrix is too large).")
        m = dense_numpy(rule, n)
        if args.format == "csv":
            _write_text(mask_csv(m).decode().rstrip("\n"), args.out)
        else:
            if not args.out:
                raise ValueError("--format npy needs --out FILE.")
            np.save(args.out, m)
    else:  # png
        if not args.out:
            raise ValueError("--format png needs --out FILE.")
        from .pictures import mask_png

        with open(args.out, "wb") as f:
            f.write(mask_png(rule, n, args.tiles or 512))
    return 0


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _write_text(text: str, path: str | None) -> None:
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")


def cmd_bench_render(args) -> int:
    from .bench_cpu import run_render_bench

    rows = run_render_bench(n=args.n, tiles=args.tiles, repeats=args.repeats)
    text = json.dumps(rows, indent=1)
    if args.json:
        _write_text(text, args.json)
    for r in rows:
        print(
            f"{r['rule']:<70} {r['time_s_median']:.3f} s  peak +{r['peak_bytes'] / 2**20:.0f} MiB  "
            f"({r['speedup_vs_dense']:.0f}x faster than dense evaluation)",
            file=sys.stderr,
        )
    return 0


def cmd_reach(args) -> int:
    from .presets import build_stack, stack_preset
    from .reach import layers_until, reach_of_token

    chosen = [x for x in (args.pattern, args.rule, args.stack, args.preset) if x is not None]
    if len(chosen) != 1:
        raise ValueError("Give exactly one of --pattern, --rule, --stack or --preset.")
    if args.preset:
        preset = stack_preset(args.preset)
        target = build_stack(preset.spec, args.layers, args.n, preset.name)
    elif args.stack is not None:
        target = build_stack(args.stack, args.layers, args.n)
    else:
        target = rule_from_args(args)
    token = args.n - 1 if args.token is None else args.token
    result = reach_of_token(target, args.n, token, args.layers)
    out = {
        "n": args.n,
        "layers": args.layers,
        "token": token,
        "rules": [r.label for r in (target.rules if hasattr(target, "rules") else (target,))],
        "reach": result.counts,
        "context": result.context,  # token + 1 under a causal mask, n under a bidirectional one
        "full_context_layer": result.full_context_layer,
    }
    if args.source is not None:
        out["source"] = args.source
        out["layers_until_source"] = layers_until(target, args.n, args.source, token)
    _write_text(json.dumps(out), None)
    return 0


def cmd_bench_reach(args) -> int:
    from .bench_cpu import run_reach_bench

    rows = run_reach_bench(n=args.n, repeats=args.repeats)
    if args.json:
        _write_text(json.dumps(rows, indent=1), args.json)
    for r in rows:
        print(f"{r['stack']:<18} L={r['layers']:<3} {r['time_s_median']:.3f} s  reach {r['reach_last_layer']:,}", file=sys.stderr)
    return 0


def cmd_kv(args) -> int:
    from . import kv

    if args.list:
        for key, m in kv.PRESETS.items():
            print(f"{key:<22} {m.title}  ({m.params / 1e9:.2f}B parameters, "
                  f"{kv.kv_bytes_per_token_layer(m) * m.layers / 1024:.0f} KiB KV per token in bf16)")
        return 0
    if not args.model:
        raise ValueError("Give --model (see --list) or --list.")
    model = kv.get_model(args.model)
    design = kv.Design(args.design, window=args.window, every=args.every, sinks=args.sinks, chunk=args.chunk)
    out = kv.report(model, args.context, args.batch, args.weight_dtype, args.kv_dtype, design,
                    int(args.overhead_gib * 2**30))
    if args.json:
        _write_text(json.dumps(out), None)
    else:
        gib = 2**30
        print(f"{model.title}, {design.label}, context {args.context:,}, batch {args.batch}")
        print(f"  KV cache  {out['kv_bytes'] / gib:10.3f} GiB   (full attention: {out['kv_bytes_full'] / gib:.3f} GiB,"
              f" saving {out['kv_saving']:.1%})")
        print(f"  weights   {out['weights_bytes'] / gib:10.3f} GiB   ({args.weight_dtype})")
        print(f"  VRAM      {out['vram_bytes'] / gib:10.3f} GiB   (full attention: {out['vram_bytes_full'] / gib:.3f} GiB)")
    return 0


def cmd_bench(args) -> int:
    """Masked attention kernels: one row per (N, backend); exit 1 if a row errs or fails --check."""
    from . import bench

    ns = parse_int_list(args.n, "sequence length N", minimum=1)
    if not ns:
        raise ValueError("Give at least one sequence length with --n, e.g. --n 1024,2048.")
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if args.rule is not None:  # checked here once; bench rebuilds it per N from its params
        custom = _custom_rule_from_args(argparse.Namespace(**{**vars(args), "n": None}))
        pattern, params = custom.name, custom.params
    else:
        pattern = args.pattern
        params = tuple(
            (name, getattr(args, name)) for name in PATTERN_INFO[pattern].params if getattr(args, name, None) is not None
        )
    budget = None if args.memory_budget_gib is None else int(args.memory_budget_gib * 2**30)
    cfg = bench.BenchConfig(
        pattern=pattern, ns=ns, backends=backends, params=params, batch=args.batch, heads=args.heads,
        kv_heads=args.kv_heads, head_dim=args.head_dim, dtype=args.dtype, device=args.device, repeats=args.repeats,
        warmup=args.warmup, check=args.check, memory_budget_bytes=budget, time_cap_s=args.time_cap_s,
    )  # fmt: skip
    reuse = {}
    if args.resume:
        if not args.json:
            raise ValueError("--resume keeps the rows of the --json file: give --json FILE too.")
        try:
            earlier = bench.read_json(args.json) if os.path.exists(args.json) else []
        except ValueError as e:
            raise ValueError(f"--resume: {args.json} is not a JSON file of bench rows ({e}).") from None
        if not isinstance(earlier, list) or not all(isinstance(r, dict) for r in earlier):
            raise ValueError(f"--resume: {args.json} is not a JSON list of bench rows.")
        reuse = bench.reusable_rows(cfg, earlier)
        print(f"--resume: keeping {len(reuse)} of {len(earlier)} rows of {args.json} "
              "(same setup, measured ok or out of memory)", file=sys.stderr)
    done: list[dict] = []

    def report(row: dict) -> None:
        print(bench.summary_line(row), file=sys.stderr, flush=True)
        done.append(row)
        if args.json:  # after every row: a sweep cut short (a lent GPU's time limit) keeps the rows it finished
            bench.write_json(done, args.json)

    rows = bench.run_bench(cfg, progress=report, reuse=reuse)
    if args.json and not rows:  # every row is already written by report()
        bench.write_json(rows, args.json)
    if args.csv:
        bench.write_csv(rows, args.csv)
    if not args.json and not args.csv:
        _write_text(json.dumps(rows, indent=1), None)
    return 1 if any(r["status"] == "error" or r["check_ok"] is False for r in rows) else 0


def _read_doc(doc: str) -> tuple[str, str]:
    """(name, text) of --doc: a UTF-8 text file, or the name of a sample document."""
    import os

    from . import model

    if os.path.isfile(doc):
        with open(doc, "rb") as f:
            return doc, model.decode_text(f.read())
    names = [d.name for d in model.sample_docs()]
    if doc in names:
        return doc, model.sample_doc(doc).text
    raise ValueError(f"No such document {doc!r}: give a text file or a sample name ({', '.join(names)}).")


def cmd_ppl(args) -> int:
    """Perplexity of SmolLM2-135M on a document under a mask (N = the document's token count)."""
    import math
    import time

    from . import model
    from .presets import build_stack

    if args.n is not None:
        raise ValueError("ppl takes N from the document; cut it with --max-tokens instead of --n.")
    if args.stack is not None and (args.pattern or args.rule):
        raise ValueError("Give --pattern/--rule or --stack, not both.")
    limit = model.limits().loss_tokens
    if not 2 <= args.max_tokens <= limit:
        raise ValueError(f"--max-tokens must be between 2 and {limit}, got {args.max_tokens}.")
    name, text = _read_doc(args.doc)
    # No character limit here (a script may read a long file); --max-tokens bounds the work.
    enc = model.encode(text, args.max_tokens, max_chars=len(text) + 1)
    args.n = enc.n  # the rule is built for the tokens actually read
    if args.stack is not None:
        target = build_stack(args.stack, model.model_info().layers, enc.n)
    elif args.pattern or args.rule:
        target = rule_from_args(args)
    else:
        target = None  # the model's own causal attention
    start = time.perf_counter()
    losses = model.token_losses(enc, target)
    mean = float(losses.mean())
    out = {
        "doc": name,
        "rule": model.target_label(target),
        "tokens": enc.n,
        "total_tokens": enc.total_tokens,
        "truncated": enc.truncated,
        "mean_loss": mean,
        "perplexity": math.exp(mean),
        "device": model.device_name(),
        "seconds": round(time.perf_counter() - start, 3),
    }
    if args.json:
        _write_text(json.dumps(out), None)
    else:
        cut = f" (first {enc.n} of {enc.total_tokens})" if enc.truncated else ""
        print(f"{name}: {enc.n} tokens{cut}, {out['rule']}: perplexity {out['perplexity']:.2f}, mean loss {mean:.4f} nats")
    return 0


def _s(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds:.1f} s"


def cmd_loadtest(args) -> int:
    from .loadtest import LoadConfig, run_loadtest

    if args.rule is not None:
        params = (("rule", args.rule), ("rule_params", ", ".join(f"{k}={v}" for k, v in args.rule_params or ())),
                  ("causal", True))
        pattern, vary = masks.CUSTOM, False
    else:
        pattern, vary = args.pattern or "sliding_window", not args.same
        params = (("window", args.window),) if args.window is not None else ()
    mode = args.mode or ("warm" if vary else "cold")  # the same maps for all: nothing to ask once open
    cfg = LoadConfig(sessions=args.sessions, tokens=args.tokens, doc=args.doc, pattern=pattern, params=params,
                     vary_window=vary, url=args.url, mode=mode, timeout_s=args.timeout_s, chromium=args.chromium,
                     arrive_over_s=args.arrive_over_s, ask_over_s=args.ask_over_s, browser_nice=args.browser_nice)
    report = run_loadtest(cfg).as_dict()
    rss = report["server_peak_rss_bytes"]
    what = "asking for maps (page open)" if mode == "warm" else "from opening the page"
    print(f"{report['completed']} of {report['sessions']} sessions completed, {len(report['errors'])} errors; "
          f"latency {what}: p50 {_s(report['p50_s'])}, p95 {_s(report['p95_s'])}, max {_s(report['max_s'])}; "
          + (f"opening p95 {_s(report['open_p95_s'])}; " if mode == "warm" else "")
          + (f"server peak RSS {rss / 2**30:.2f} GiB" if rss else "server peak RSS unknown (external server)")
          + f"; CPU: server {report['server_cpu_s']} s, whole machine {report['machine_cpu_s']} s"
          + f" ({report['cpu_count']} × {report['cpu_model']})")
    for err in report["errors"][:10]:
        print("  error:", err)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if not report["errors"] else 1


def cmd_targets(args) -> int:
    """The benchmark's targets from the recorded result files: met, missed or no data."""
    from . import bench_targets

    if not os.path.isdir(args.dir):
        raise ValueError(f"No such folder {args.dir!r}: give the folder of kernels_*.json files with --dir.")
    targets = bench_targets.all_targets(bench_targets.load_runs(args.dir), bench_targets.load_register_blocks(args.dir))
    if args.json:
        print(json.dumps([t.as_dict() for t in targets], indent=1))
    else:
        for t in targets:
            print(f"[{t.status}] {t.name}" + (f": {t.measured}" if t.measured else ""))
            print(f"    {t.detail}")
    return 0


def cmd_limits(args) -> int:
    rows = limits.table()
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            print(f"{row['name']:<28} {row['value']:>14,}" if isinstance(row["value"], int) else
                  f"{row['name']:<28} {row['value']:>14}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attn", description="Attention Mask Lab command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("mask", help="print or save a mask")
    _add_rule_args(p)
    p.add_argument("--format", choices=("json", "csv", "npy", "png", "text"), default="json")
    p.add_argument("--tiles", type=int, help="exact T×T tile overview instead of the full matrix")
    p.add_argument("--kernel-blocks", type=int, metavar="B",
                   help="also the B×B blocks a block-sparse kernel (FlexAttention) runs: 0 skipped, 1 partial, 2 full "
                        "(json; text draws them)")
    p.add_argument("--out", help="output file (required for png and npy)")
    p.set_defaults(func=cmd_mask)
    p = sub.add_parser("reach", help="receptive field of a token after 1..L layers")
    _add_rule_args(p, required=False)
    p.add_argument("--stack", help="per-layer rules cycled over layers, e.g. 'sliding_window window=128 | causal'")
    p.add_argument("--preset", help=f"a model's layer stack: {', '.join(STACK_PRESETS)}")
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--token", type=int, help="the token whose reach is traced (default: the last)")
    p.add_argument("--source", type=int, help="also report the first layer at which this token can influence --token")
    p.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    p.set_defaults(func=cmd_reach)
    p = sub.add_parser("bench-render", help="time the exact tile overview at long N (results as JSON)")
    p.add_argument("--n", type=int, default=131072)
    p.add_argument("--tiles", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", help="write the rows to this file")
    p.set_defaults(func=cmd_bench_render)
    p = sub.add_parser("bench-reach", help="time last-token reach per layer at long N (results as JSON)")
    p.add_argument("--n", type=int, default=131072)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", help="write the rows to this file")
    p.set_defaults(func=cmd_bench_reach)
    p = sub.add_parser("kv", help="KV cache, weights and VRAM of a model at a context length")
    p.add_argument("--list", action="store_true", help="list the model presets")
    p.add_argument("--model", help="a preset key (see --list)")
    p.add_argument("--context", type=int, default=32768, help="tokens per sequence")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--weight-dtype", default="bf16", choices=("bf16", "fp8", "int4"))
    p.add_argument("--kv-dtype", default="bf16", choices=("bf16", "fp8"))
    p.add_argument("--design", default="own", choices=("own", "full", "sliding", "hybrid", "sinks", "chunked"),
                   help="attention design applied to the model (default: its own)")
    p.add_argument("--window", type=int, default=4096)
    p.add_argument("--every", type=int, default=0, help="every k-th layer global (hybrid, chunked)")
    p.add_argument("--sinks", type=int, default=4)
    p.add_argument("--chunk", type=int, default=8192)
    p.add_argument("--overhead-gib", type=float, default=0.0, help="fixed allowance added to VRAM")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_kv)
    p = sub.add_parser("bench", help="time masked attention kernels (naive, sdpa_mask, sdpa_causal, flex) over N")
    _add_rule_args(p, n_list=True)
    p.add_argument("--backends", default=",".join(("naive", "sdpa_mask", "sdpa_causal", "flex")), help="comma list")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=8, help="query heads")
    p.add_argument("--kv-heads", type=int, help="key/value heads (grouped-query attention); default: --heads")
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    p.add_argument("--repeats", type=int, default=10, help="timed calls after warm-up (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (the first one compiles flex)")
    p.add_argument("--check", action="store_true", help="compare every backend with naive attention in float32")
    p.add_argument("--memory-budget-gib", type=float, help="skip sizes estimated above this (default: share of free memory)")
    p.add_argument("--time-cap-s", type=float, help="skip sizes predicted to take longer per row (default: 60 s on CPU)")
    p.add_argument("--json", help="write the rows to this JSON file")
    p.add_argument("--csv", help="write the rows to this CSV file")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows already in --json FILE from the same setup; measure only the rest")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("targets", help="the kernel benchmark's targets, computed from recorded kernels_*.json files")
    p.add_argument("--dir", default="assets/bench", help="folder of kernels_*.json files (default: assets/bench)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_targets)
    p = sub.add_parser("ppl", help="perplexity of SmolLM2-135M on a document under a mask (loads the model)")
    p.add_argument("--doc", required=True, help="a UTF-8 text file, or a sample name: contract, stockroom, story, meeting")
    _add_rule_args(p, required=False, n_required=False)  # no pattern: full causal; N = tokens read
    p.add_argument("--stack", help="per-layer rules cycled over the 30 layers, e.g. 'sliding_window window=64 | causal'")
    p.add_argument("--max-tokens", type=int, default=512, help="read the first T tokens (default 512)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_ppl)
    p = sub.add_parser("loadtest", help="K browser sessions open the model page and ask for maps against a local server")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pattern", choices=masks.PATTERNS, help="default sliding_window")
    which.add_argument("--rule", help="a custom rule for every session (then all sessions ask for the same maps)")
    p.add_argument("--param", dest="rule_params", action="append", type=_rule_param, metavar="NAME=INT")
    p.add_argument("--sessions", type=int, default=30)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--doc", default="contract", help="a sample document: contract, story, meeting, stockroom")
    p.add_argument("--window", type=int, help="window of session 0; session i uses window + i")
    p.add_argument("--same", action="store_true", help="every session asks for the same maps (the cache's case)")
    p.add_argument("--url", help="a running server on this machine instead of starting one")
    p.add_argument("--timeout-s", type=float, default=300.0, help="per session")
    p.add_argument("--mode", choices=("warm", "cold"),
                   help="warm: open the page, then each session sets its own window (latency from Enter to the maps); "
                        "cold: each session opens its own maps' URL (latency from opening). Default warm; cold with "
                        "--same or --rule")
    p.add_argument("--arrive-over-s", type=float, default=60.0,
                   help="open the sessions evenly over this many seconds (a class arriving within a minute); 0 = at once")
    p.add_argument("--ask-over-s", type=float, default=60.0,
                   help="warm mode: once all are open, they ask evenly over this many seconds; 0 = at once")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--browser-nice", type=int, default=10,
                   help="run the browsers at this lower CPU priority (in a class they run on other machines); 0 = equal")
    p.add_argument("--json", help="write the report to this file")
    p.set_defaults(func=cmd_loadtest)
    p = sub.add_parser("limits", help="every limit the app enforces (attn/limits.py)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_limits)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an output or input path that cannot be opened: say which, no traceback
        print(f"error: {e.strerror or e}: {e.filename}" if e.filename else f"error: {e}", file=sys.stderr)
        return 2
