"""Serving Cost: KV cache, weights and VRAM at long context for real models under each attention design."""

import pandas as pd
import streamlit as st

import ui
from attn import cost_figures, kv
from attn.presets import STACK_ALIASES
from attn.state import parse_bounded_float, parse_bounded_int, parse_choice

# Context choices: powers of two and the halfway points between them, 1k … 1M (a log scale).
CONTEXTS = sorted({1 << p for p in range(10, 21)} | {3 << p for p in range(9, 19)})
MODELS = [*kv.PRESETS, "custom"]
DESIGN_TITLES = {
    "own": "The model's own design",
    "full": "Full attention in every layer",
    "sliding": "Sliding window W in every layer",
    "hybrid": "Hybrid: window W, every k-th layer global",
    "sinks": "Attention sinks + window W",
    "chunked": "Chunked (chunks of C), every k-th layer global",
}


def tokens_text(t: int) -> str:
    """2k, 32k, 1M (= 1,048,576): context lengths as model cards write them."""
    if t >= 2**20 and t % 2**20 == 0:
        return f"{t // 2**20:,}M"
    return f"{t // 1024:,}k" if t % 1024 == 0 else f"{t / 1024:.1f}k"


URL_KEYS = {
    "model": parse_choice(MODELS, "Model", STACK_ALIASES),  # the Receptive Field page's older names
    "ctx": parse_choice(CONTEXTS, "Context"),
    "batch": lambda t: parse_bounded_int(t, "Batch", 1, kv.MAX_BATCH),
    "wdtype": parse_choice(kv.WEIGHT_DTYPES, "Weight dtype"),
    "kvdtype": parse_choice(kv.KV_DTYPES, "KV dtype"),
    "design": parse_choice(kv.DESIGN_KINDS, "Design"),
    "window": lambda t: parse_bounded_int(t, "Window", 1, kv.MAX_CONTEXT),
    "every": lambda t: parse_bounded_int(t, "Every k-th layer", 0, kv.MAX_LAYERS),
    "sinks": lambda t: parse_bounded_int(t, "Sink tokens", 0, kv.MAX_CONTEXT),
    "chunk": lambda t: parse_bounded_int(t, "Chunk", 1, kv.MAX_CONTEXT),
    "overhead": lambda t: parse_bounded_float(t, "Allowance", 0.0, 64.0),
    "c_layers": lambda t: parse_bounded_int(t, "Layers", 1, kv.MAX_LAYERS),
    "c_qh": lambda t: parse_bounded_int(t, "Query heads", 1, kv.MAX_HEADS),
    "c_kvh": lambda t: parse_bounded_int(t, "KV heads", 1, kv.MAX_HEADS),
    "c_hd": lambda t: parse_bounded_int(t, "Head dim", 1, kv.MAX_HEAD_DIM),
    "c_params": lambda t: parse_bounded_float(t, "Parameters (billions)", 0.001, 10000.0),
    "c_windows": lambda t: t[:4000],
}
DEFAULTS = dict(model="mistral-7b-v0.1", ctx=32768, batch=1, wdtype="bf16", kvdtype="bf16", design="own",
                window=4096, every=2, sinks=4, chunk=8192, overhead=1.0, c_layers=32, c_qh=32, c_kvh=8, c_hd=128,
                c_params=7.0, c_windows="full")

st.title("Serving Cost")
st.caption(
    "What an attention design costs to serve at long context, from each model's published dimensions: "
    "KV cache, weights and total GPU memory, and attention compute per generated token. "
    "Every number is arithmetic you can check (see *Assumptions*)."
)
for notice in ui.load_url_keys("cost", URL_KEYS):
    ui.notice(notice, "warning", ":material/link:")
for key, value in DEFAULTS.items():
    ui.set_default(key, value)

with st.sidebar:
    model_key = st.selectbox("Model", MODELS, key="model",
                             format_func=lambda k: "Custom dimensions…" if k == "custom" else kv.PRESETS[k].title)
    error = None
    if model_key == "custom":
        c = st.columns(2)
        layers = c[0].number_input("Layers", 1, kv.MAX_LAYERS, step=1, key="c_layers")
        hd = c[1].number_input("Head dim", 1, kv.MAX_HEAD_DIM, step=1, key="c_hd")
        qh = c[0].number_input("Query heads", 1, kv.MAX_HEADS, step=1, key="c_qh")
        kvh = c[1].number_input("KV heads", 1, kv.MAX_HEADS, step=1, key="c_kvh")
        params_b = st.number_input("Parameters (billions)", 0.001, 10000.0, step=0.5, key="c_params")
        windows_text = st.text_input("Window per layer", key="c_windows",
                                     help="'full', one window for every layer (e.g. 4096), or one per layer: "
                                          "4096, full, 4096, full …")
        try:
            model = kv.custom_model(layers=int(layers), q_heads=int(qh), kv_heads=int(kvh), head_dim=int(hd),
                                    params=int(round(params_b * 1e9)), windows=kv.parse_windows(windows_text))
        except ValueError as e:
            error = str(e)
            ui.notice(error)
    else:
        model = kv.PRESETS[model_key]
        st.caption(f"{model.layers} layers · {model.q_heads} query heads · {model.kv_heads} KV heads · head dim "
                   f"{model.head_dim} · {model.params / 1e9:.2f}B parameters. [config.json]({model.source})")
    context = st.select_slider("Context length (tokens)", CONTEXTS, key="ctx", format_func=tokens_text)
    batch = st.number_input("Batch (concurrent sequences)", 1, kv.MAX_BATCH, step=1, key="batch")
    c = st.columns(2)
    wdtype = c[0].selectbox("Weights", kv.WEIGHT_DTYPES, key="wdtype")
    kvdtype = c[1].selectbox("KV cache", kv.KV_DTYPES, key="kvdtype")
    kind = st.selectbox("Attention design", kv.DESIGN_KINDS, key="design", format_func=DESIGN_TITLES.get)
    if kind in ("sliding", "hybrid", "sinks"):
        st.number_input("Window W (tokens)", 1, kv.MAX_CONTEXT, step=256, key="window")
    if kind == "sinks":
        st.number_input("Sink tokens", 0, kv.MAX_CONTEXT, step=1, key="sinks")
    if kind == "chunked":
        st.number_input("Chunk C (tokens)", 1, kv.MAX_CONTEXT, step=1024, key="chunk")
    if kind in ("hybrid", "chunked"):
        st.number_input("Every k-th layer global (0: none)", 0, kv.MAX_LAYERS, step=1, key="every")
    overhead_gib = st.number_input("Allowance for runtime and activations (GiB)", 0.0, 64.0, step=0.5, key="overhead",
                                   help="CUDA context, activations and fragmentation: a rough fixed amount added "
                                        "to weights + KV.")

ss = st.session_state
design = kv.Design(kind, window=int(ss["window"]), every=int(ss["every"]), sinks=int(ss["sinks"]),
                   chunk=int(ss["chunk"]))
overhead = int(overhead_gib * 2**30)
if error:
    # Repeated here: presenter view folds the sidebar away.
    ui.notice(f"Nothing to compute until the custom model is fixed: {error}", "info", ":material/info:")
    st.stop()
try:
    r = kv.report(model, context, batch, wdtype, kvdtype, design, overhead)
    verdict = kv.verdict(model, context, batch, wdtype, kvdtype, design, overhead)
except ValueError as e:
    ui.notice(e)
    st.stop()

st.subheader(f"{model.title} — {design.label}")
if r["beyond_trained_context"]:
    st.info(f"{context:,} tokens is beyond the {model.trained_context:,} tokens this model was trained for: the "
            "memory is what it would take, the quality is another matter.", icon=":material/info:")
m = st.columns(4)
size = kv.size_text
m[0].metric("KV cache per token", size(r["kv_bytes_per_token"]),
            delta=f"full: {size(r['kv_bytes_per_token_full'])}", delta_color="off", delta_arrow="off",
            help="average over the context: total KV ÷ (context × batch)")
m[1].metric("KV cache", size(r["kv_bytes"]), delta=f"-{kv.percent_text(r['kv_saving'])} vs full" if r["kv_saving"] else "same as full",
            delta_color="inverse" if r["kv_saving"] else "off", delta_arrow="auto" if r["kv_saving"] else "off", help=f"full attention: {size(r['kv_bytes_full'])}")
m[2].metric("Weights", size(r["weights_bytes"]), delta=f"{kv.params_text(model.params)} × {kv.DTYPE_BYTES[wdtype]:g} B",
            delta_color="off", delta_arrow="off")
m[3].metric("VRAM total", size(r["vram_bytes"]),
            delta=f"-{kv.percent_text(r['vram_saving'])} vs full" if r["vram_saving"] else "same as full",
            delta_color="inverse" if r["vram_saving"] else "off", delta_arrow="auto" if r["vram_saving"] else "off",
            help=f"weights + KV + {overhead_gib:g} GiB allowance; full attention: {size(r['vram_bytes_full'])}")

if kind == "own" and all(c is None for c in model.windows):
    st.caption("This model attends to the whole context in every layer. Pick an *attention design* in the sidebar "
               "(a sliding window, a hybrid, sinks, chunks) to see what it would save on this model.")
with st.container(border=True):
    st.markdown("#### Do the claims hold?")
    st.caption("Two claims often made for windowed attention: it cuts serving cost by 60–80%, and its benefits "
               "diminish below 2,048 tokens. Checked here for this model and design, from the arithmetic below.")
    for line in verdict:
        st.markdown(f"- {line}")

contexts = cost_figures.context_grid(extra=[context, 2048, *cost_figures.bend_points(model, design)])
left, right = st.columns(2)
with left:
    ui.plot(cost_figures.vram_figure(model, design, context, batch, wdtype, kvdtype, overhead, contexts), key="fig_vram", filename="vram")
    ui.plot(cost_figures.saving_figure(model, design, context, batch, wdtype, kvdtype, overhead, contexts), key="fig_saving", filename="saving")
with right:
    ui.plot(cost_figures.kv_figure(model, design, context, batch, kvdtype, contexts), key="fig_kv", filename="kv")
    ui.plot(cost_figures.flops_figure(model, design, context, contexts), key="fig_flops", filename="flops")


def context_text(fit: kv.Fit) -> str:
    if fit.max_context is None:
        return "does not fit"
    return "any length" if fit.unbounded else f"{fit.max_context:,}"


st.subheader(f"What fits on each GPU (batch {batch}, {tokens_text(context)} tokens)")
rows = []
for gpu in kv.GPUS:
    f = kv.fit_on(gpu, model, context, batch, wdtype, kvdtype, design, overhead)
    g = kv.fit_on(gpu, model, context, batch, wdtype, kvdtype, kv.Design("full"), overhead)
    rows.append({
        "GPU": gpu.name,
        "memory (driver)": kv.size_text(gpu.memory_bytes),
        "fits now": "yes" if f.fits else "no",
        "largest context": context_text(f),
        "largest context, full attention": context_text(g),
        f"largest batch at {tokens_text(context)}": f.max_batch,
        "largest batch, full attention": g.max_batch,
    })
table = pd.DataFrame(rows)
st.dataframe(table, hide_index=True, width="stretch")
st.download_button("Download this table (CSV)", table.to_csv(index=False).encode(), "serving_cost_fit.csv",
                   "text/csv", on_click="ignore")

with st.expander("Assumptions and formulas"):
    per_layer = kv.kv_bytes_per_token_layer(model, kvdtype)
    st.markdown(f"""
- **KV cache** = batch × Σ over layers of (tokens the layer keeps) × 2 (K and V) × KV heads × head dim × bytes.
  Here 2 × {model.kv_heads} × {model.head_dim} × {kv.DTYPE_BYTES[kvdtype]:g} B = {per_layer:,.0f} B per token per layer.
  A capped layer keeps min(context, cap) tokens (a rolling buffer); a global layer keeps them all.
  Sinks + window keep S + W tokens; a chunked layer keeps at most one chunk (the worst case, at a chunk's end).
- **Weights** = parameters × bytes per weight ({', '.join(f'{d}: {kv.DTYPE_BYTES[d]:g} B' for d in kv.WEIGHT_DTYPES)}).
  int4 counts the 4 bits only; group scales add a few percent. Preset parameter counts are computed from the
  published dimensions and match the published totals exactly.
- **VRAM** = weights + KV + the allowance you set ({overhead_gib:g} GiB). Activations of a long prefill and the
  framework's own buffers vary by engine. A GPU's capacity is what its driver reports, not the size as
  sold: {', '.join(f'{g.name} {kv.size_text(g.memory_bytes)}' for g in kv.GPUS)}.
- **Attention FLOPs per generated token** = 4 × query heads × head dim × Σ tokens attended per layer
  (q·K and the weighted sum of V, 2 FLOPs per multiply-add); softmax left out. Weights: 2 × parameters.
- **Linear attention state** (Katharopoulos et al., 2020): per layer and KV head a d×d matrix plus a d-vector,
  {model.layers} × {model.kv_heads} × ({model.head_dim}² + {model.head_dim}) values — constant in context.
- **Mamba state** (Gu & Dao, 2023; d_state 16, expand 2, conv 4): per layer 2·D × (16 + 3) values with
  D = {model.model_dim:,} — constant in context.
""")

link = ui.write_url_keys({k: ss[k] for k in URL_KEYS if not k.startswith("c_") or model_key == "custom"})
ui.share_view(link)
