"""Benchmark: real masked attention through four backends, timed and measured, on this server."""

import json
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import streamlit as st
import torch

import ui
from attn import bench, bench_figures as bf, bench_targets, figures, kernels, limits
from attn.jobs import Cancelled
from attn.state import encode_view, parse_bounded_int, parse_choice
from attn.text import count, markdown_literal

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "bench"
ON_GPU = torch.cuda.is_available()
# A 2-core CPU finishes every backend up to N = 4096 within about a minute; a GPU goes to 128k.
N_CHOICES = [n for n in (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
             if ON_GPU or n <= limits.BENCH_CPU_MAX_N]
DTYPES = ["bfloat16", "float16", "float32"] if ON_GPU else ["float32"]
# The table's columns: (heading with its unit, what the number is, display format). The downloads keep the row
# field names and full precision; "localized" groups thousands (276,824,064 bytes).
TABLE_COLUMNS = {
    "backend": ("backend", "naive: the textbook code · sdpa_mask: SDPA with a dense bool mask · sdpa_causal: SDPA "
                "is_causal, the causal reference (the whole past) · flex: FlexAttention with a BlockMask", None),
    "n": ("N", "sequence length", "localized"),
    "status": ("status", "ok, skipped (the memory estimate is over budget), oom or error; see reason", None),
    "time_ms": ("median (ms)", "median kernel time over the repeats, after warm-up", "%.3f"),
    "time_ms_min": ("min (ms)", "the fastest of the repeats", "%.3f"),
    "compile_ms": ("compile (ms)", "flex only: the first call's extra cost over a steady call; None for the dense "
                   "backends, which compile nothing", "%.1f"),
    "block_mask_ms": ("BlockMask (ms)", "flex only: building the BlockMask from the rule; None for the dense backends",
                      "%.3f"),
    "peak_bytes": ("peak (bytes)", "the prepared mask held plus the peak allocated during one call", "localized"),
    "useful_tflops_s": ("useful TFLOP/s", "4·B·H·d × allowed pairs ÷ median time", "%.4f"),
    "executed_tflops_s": ("executed TFLOP/s", "4·B·H·d × pairs the kernel computes ÷ median time (dense: all N², "
                          "is_causal: N(N+1)/2, flex: non-empty blocks × block area)", "%.4f"),
    "pct_of_peak": ("% of peak", "executed TFLOP/s as a share of the device's peak (the table in attn/bench.py)",
                    "%.1f"),
    "max_abs_err": ("max |err| vs naive", "largest absolute difference from the naive float32 output", "%.1e"),
    "reason": ("reason", "why a size was skipped or failed", None),
}
URL_KEYS = {
    "ns": lambda t: tuple(dict.fromkeys(parse_choice(N_CHOICES, "N")(x) for x in t.split(",") if x)),  # repeats once
    "heads": lambda t: parse_bounded_int(t, "Heads", 1, limits.BENCH_MAX_HEADS),
    "kvh": lambda t: parse_bounded_int(t, "KV heads", 1, limits.BENCH_MAX_HEADS),
    "hd": parse_choice((32, 64, 128), "Head dim"),
    "dtype": parse_choice(DTYPES, "Dtype"),
    "backends": lambda t: tuple(dict.fromkeys(parse_choice(kernels.BACKENDS, "Backend")(x) for x in t.split(",") if x)),
    "docs": lambda t: parse_bounded_int(t, "Documents per sequence", 1, limits.BENCH_MAX_DOCUMENTS),
}


def column(label: str, help: str, fmt: str | None):
    return st.column_config.NumberColumn(label, help=help, format=fmt) if fmt else st.column_config.Column(label, help=help)


def show_results(rows, where: str, key: str):
    label = bf.device_label(rows)
    left, right = st.columns(2)
    with left:
        ui.plot(bf.growth_figure(rows, "time_ms", f"Kernel time vs N<br><sup>{label}</sup>", "median time (ms)"),
                key=f"{key}_time", filename=f"bench_time_{key}")
        ui.plot(bf.throughput_figure(rows, f"Useful vs executed TFLOP/s<br><sup>{label}</sup>"), key=f"{key}_tflops",
                filename=f"bench_tflops_{key}")
    with right:
        ui.plot(bf.growth_figure(rows, "peak_bytes", f"Peak memory vs N<br><sup>{label}</sup>", "peak memory (MiB)",
                                 scale=1 / 2**20),
                key=f"{key}_mem", filename=f"bench_memory_{key}")
        st.markdown(f"**Largest N each backend ran** ({where})")
        # A static table: its "why" column is a sentence, which a data grid would cut off.
        st.table(pd.DataFrame([{k: "—" if v is None else f"{v:,}" if isinstance(v, int) else v for k, v in r.items()}
                               for r in bf.largest_n(rows)]).set_index("backend"))
        ns = sorted({r["n"] for r in rows})
        if ns:
            n = ns[-1]
            flex_vs = bf.ratio(rows, "flex", "sdpa_mask", n)
            if flex_vs is not None:
                st.markdown(f"At N = {n:,}, `flex` takes **{flex_vs:.2f}×** the time of `sdpa_mask` "
                            "(same mask, dense vs block-sparse).")
    table = pd.DataFrame(rows)
    cols = [c for c in TABLE_COLUMNS if c in table]
    st.dataframe(table[cols], hide_index=True, width="stretch",
                 column_config={c: column(*TABLE_COLUMNS[c]) for c in cols})
    d = st.columns(2)
    d[0].download_button("Rows as CSV", table.to_csv(index=False).encode(), f"bench_{key}.csv", "text/csv",
                         key=f"{key}_csv", on_click="ignore")
    d[1].download_button("Rows as JSON", json.dumps(rows, indent=1).encode(), f"bench_{key}.json", "application/json",
                         key=f"{key}_json", on_click="ignore")


st.title("Benchmark")
st.caption(
    "Four backends. Three run the same mask: the textbook code (`naive`), SDPA with a dense boolean mask "
    "(`sdpa_mask`) and FlexAttention with a BlockMask (`flex`, compiled once); the fourth, SDPA on the plain causal "
    "mask (`sdpa_causal`), is the reference: attention to the whole past. Median kernel time after warm-up; "
    "compile and mask-build times apart; "
    "peak memory measured; sizes that would not fit are skipped with the reason."
)
for notice in ui.load_url_state("bench", extra=URL_KEYS):
    ui.notice(notice, "warning", ":material/link:")
device = "cuda" if ON_GPU else "cpu"
runs = bench_targets.load_runs(str(ASSETS))
gpu_runs = [(name, rows) for name, rows in runs if rows[0].get("device") == "cuda"]
# The CPU's thread count is chosen per run (all cores when idle, one under load), so it is named on each
# row and figure, not here.
st.markdown(f"This server runs on **{bench.device_name(torch.device(device), threads=False)}**"
            + ("" if ON_GPU else " (no GPU here: sizes capped at N = 4,096; each run uses all cores when the server is "
                                  "idle, one thread when it is busy; "
                                  + ("recorded GPU runs are shown below)." if gpu_runs else
                                     "no GPU run has been recorded yet, see below).")))

with st.sidebar:
    pattern = ui.pattern_select("", "Pattern", "sliding_window")
    ui.set_default("window", 256)
    if pattern == "document":
        # One list of lengths adds up to one N only; a sweep packs near-equal documents at every N instead.
        ui.set_default("docs", 3)
        documents = st.number_input("Documents per sequence", 1, limits.BENCH_MAX_DOCUMENTS, key="docs",
                                    help="Packed documents of near-equal length at every N of the sweep "
                                         "(3 at N = 512: 171 + 171 + 170 tokens).")
        raw = {}
    else:
        raw = ui.param_widgets("", pattern, max(N_CHOICES))
    ui.set_default("ns", (512, 1024, 2048))
    ns = st.multiselect("Sequence lengths N", N_CHOICES, key="ns", format_func=lambda x: f"{x:,}")
    c = st.columns(2)
    ui.set_default("heads", 8)
    heads = c[0].number_input("Query heads", 1, 64, key="heads")
    ui.set_default("kvh", 8)
    kv_heads = c[1].number_input("KV heads", 1, 64, key="kvh", help="fewer than query heads: grouped-query attention")
    ui.set_default("hd", 64)
    head_dim = c[0].selectbox("Head dim", (32, 64, 128), key="hd")
    ui.set_default("dtype", DTYPES[0])
    dtype = c[1].selectbox("Dtype", DTYPES, key="dtype")
    ui.set_default("backends", kernels.BACKENDS)
    backends = st.multiselect("Backends", kernels.BACKENDS, key="backends")
    check = st.checkbox("Check every output against naive", value=True, key="_check")

try:
    packed = {"documents": int(documents)} if pattern == "document" else {}
    params = ui.hashable_params(ui.rule_params(pattern, raw) | packed)
    cfg = bench.BenchConfig(pattern=pattern, ns=tuple(sorted(ns)), backends=tuple(backends), params=params,
                            heads=int(heads), kv_heads=int(kv_heads), head_dim=int(head_dim), dtype=dtype,
                            device=device, repeats=5, check=check)
    bench.validate(cfg)
except ValueError as e:
    ui.notice(f"{e} Change it in the sidebar to run the benchmark; the recorded runs below do not depend on it.")
    cfg = None  # no live run; the recorded runs are still shown
else:
    st.markdown(f"**Your run:** {count(len(cfg.ns), 'size')} × {count(len(cfg.backends), 'backend')} on {device}, "
                f"{heads} heads ({kv_heads} KV), head dim {head_dim}, {dtype}.")
    # flex's work is its BlockMask's blocks: the Explorer draws them for this mask, at flex's block size here.
    block = kernels.flex_block(device)
    drawn = [x for x in cfg.ns if figures.block_view_problem(x, block) is None]
    if drawn:
        shown = {k: v for k, v in st.session_state.items() if not k.startswith("_")} | {"n": max(drawn)}
        if pattern == "document":  # the Explorer takes the lengths this sweep packs at that N
            shown["lengths"] = ",".join(map(str, bench.rule_for(pattern, max(drawn), dict(params)).param_dict["lengths"]))
        view = encode_view(shown)
        query = urlencode(view | {"draw": "blocks", "kernel_block": str(block)} | ui.global_url_params())
        st.markdown(f"[:material/open_in_new: The blocks `flex` computes for this mask at N = {max(drawn):,} "
                    f"({block} × {block} on {device}), in the Mask Explorer](explorer?{query})")


@st.fragment
def live_run():
    if st.button("Run the benchmark", type="primary"):
        ui.join_line()  # pressing Run joins the line again
        bar = st.progress(0.0, text="waiting for the line…")
        total = len(cfg.ns) * len(cfg.backends)
        rows = []

        def progress(row):
            rows.append(row)
            bar.progress(len(rows) / total, text=f"{row['backend']} at N = {row['n']:,}: {row['status']}")

        try:
            st.session_state["_bench_rows"] = ui.in_line(bench.run_bench, cfg, progress=progress,
                                                         what="the benchmark machine")
            st.session_state["_bench_cfg"] = cfg
        except Cancelled as e:
            ui.notice(e, "warning", ":material/hourglass_top:")
        except ValueError as e:  # a setting the run itself refused: said, not a traceback
            ui.notice(e)
        bar.empty()
    rows = st.session_state.get("_bench_rows")
    if rows:
        if st.session_state.get("_bench_cfg") != cfg:
            st.caption("These results are from your previous settings; press Run to measure the current ones.")
        show_results(rows, "this run", "live")


if cfg is not None:
    live_run()

st.subheader("Recorded runs")
if not runs:
    st.info("No recorded runs in assets/bench yet.")
if not gpu_runs:
    st.caption("No GPU results have been recorded yet: the GPU sweep (N = 1k…128k, bf16, H100/H200) runs with "
               "`make -k gpu-check` on a machine with a GPU and is committed under assets/bench/.")
st.markdown("**The benchmark's targets**, computed from these files (`python -m attn targets`); each compares "
            "backends measured in the same run.")
STATUS_MARK = {"met": ":green[**met**]", "missed": ":red[**missed**]", "no data": ":gray[**no data**]",
               "info": ":blue[**info**]"}
targets = bench_targets.all_targets(runs, bench_targets.load_register_blocks(str(ASSETS)))
st.markdown("\n".join(
    f"- {STATUS_MARK[t.status]} {markdown_literal(t.name)}" + (f": **{markdown_literal(t.measured)}**" if t.measured else "")
    + f"  \n  :gray[{markdown_literal(t.detail)}]" for t in targets))
for name, rows in runs:
    # The expander tracks whether it is open (on_change="rerun"), and a closed one builds nothing: drawing
    # every recorded run's three figures and tables made each change on this page take about 1.3 s.
    recorded = st.expander(f"{name}: {bf.device_label(rows)} — pattern {rows[0].get('rule', rows[0].get('pattern'))}",
                           expanded=rows[0].get("device") == "cuda" or len(runs) == 1, key=f"_rec_{name}",
                           on_change="rerun")
    if recorded.open:
        with recorded:
            show_results(rows, f"recorded, {name}", name.removesuffix(".json"))

state = {k: st.session_state[k] for k in st.session_state if not k.startswith("_")}
state["n"] = max(ns) if ns else 512
state["ns"] = ",".join(str(x) for x in sorted(ns))
state["backends"] = ",".join(backends)
if pattern == "document":
    state.pop("lengths", None)  # not read here: the number of documents is
ui.share_view(ui.write_url_state(state, extra_keys=["ns", "heads", "kvh", "hd", "dtype", "backends"]
                                 + (["docs"] if pattern == "document" else [])))
