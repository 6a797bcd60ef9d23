"""Model Attention: a real language model (SmolLM2-135M) reading a document under a mask."""

import gc
import time

import numpy as np
import streamlit as st

import ui
from attn import bench_model, masks, model, model_figures
from attn.jobs import Cancelled
from attn.presets import STACK_ALIASES, STACK_PRESETS, build_stack, rule_notes
from attn.render import dense_numpy, first_cut_row
from attn.state import parse_bounded_int, parse_choice
from attn.text import count, markdown_literal, shorten

LIM = model.limits()
DOCS = {d.name: d for d in model.sample_docs()}
DOC_CHOICES = [*DOCS, "paste"]
SOURCES = ["pattern", *STACK_PRESETS, "custom"]
SOURCE_TITLES = {"pattern": "One pattern in every layer", "custom": "Custom per-layer stack"} | {
    k: p.title for k, p in STACK_PRESETS.items()
}
SECTIONS = ["Attention maps", "Loss per token", "Window sweep", "Retrieval", "Influence vs reach", "Continuation",
            "Encoder (bidirectional)"]
SWEEP_WINDOWS = [8, 16, 32, 64, 128, 256, 512, 1024, model.FULL]
THUMB = 24  # pixels per side of each layer × head thumbnail
FAR_TOKENS = 64  # "far back" in the influence view

URL_KEYS = {
    "doc": parse_choice(DOC_CHOICES, "Document"),
    "tokens": lambda t: parse_bounded_int(t, "Tokens", 16, LIM.loss_tokens),
    "stack": parse_choice(SOURCES, "Mask source", STACK_ALIASES),
    "custom": lambda t: t[:400],
    "view": parse_choice(SECTIONS, "Section"),
    "layer": lambda t: parse_bounded_int(t, "Layer", 0, 29),
    "head": lambda t: parse_bounded_int(t, "Head", 0, 8),
    "target_tok": lambda t: parse_bounded_int(t, "Token", 1, LIM.loss_tokens - 1),
}


def target_for(key):
    """key = (source, pattern, params, custom, n) -> a MaskRule or LayerStack (decoder: ANDed with causal)."""
    source, pattern, params, custom, n = key
    if source == "pattern":
        return masks.build(pattern, n, **dict(params))
    spec = custom if source == "custom" else STACK_PRESETS[source].spec
    return build_stack(spec, 30, n, source)


def in_line(fn, *args, **kwargs):
    """Model work waits its turn in the process-wide line (one forward at a time on this server);
    leaving the line or running out of time reads as a ValueError, like any refused input."""
    try:
        return ui.in_line(fn, *args, what="the model", **kwargs)
    except Cancelled as e:
        raise ValueError(str(e)) from None


def failed(error: Exception):
    """A refused input or an abandoned request: say why, offer the way back into the line, stop.
    One container for both, so that the next run's place in line replaces them together.
    The hourglass is for a user who left the line; a refused input is an error."""
    left = ui.left_line()
    with st.container():
        ui.notice(error, "info" if left else "error", ":material/hourglass_top:" if left else ":material/warning:")
        ui.rejoin_button()
    st.stop()


@st.cache_resource(show_spinner="Loading SmolLM2-135M (first time: converting the GGUF file, about 30 s)…")
def loaded():
    info = model.model_info()
    # The model and the libraries live as long as the process: move them out of the cyclic GC's sight,
    # so a collection scans what requests create, not 450,000 long-lived objects (~0.55 s with the GIL held).
    gc.freeze()
    return info


@ui.cached()
def encoded(text, max_tokens):
    return model.encode(text, max_tokens)


@ui.cached("Running the model for all 30 layers…", queued=True)
def layer_maps(ids, key, layer):
    """One forward gives both: the chosen layer's maps (9, N, N) and every head's thumbnail (30, 9, s, s).
    (Keeping the weights of all 30 layers costs no more time than keeping one: measured 0.55 s vs 0.51 s
    at 256 tokens; a separate thumbnail forward would double the work of a first view.)"""
    maps = in_line(model.attention_maps, list(ids), target_for(key) if key else None)
    return maps.weights[layer], model.pool_maps(maps.weights, THUMB)


@ui.cached("Computing per-token loss…", queued=True)
def losses(ids, key):
    return np.array(in_line(model.token_losses, list(ids), target_for(key) if key else None))


@ui.cached(queued=True)
def sweep(ids, windows, sinks, _progress=None):
    return in_line(model.window_sweep, list(ids), windows, sinks, progress=_progress or (lambda *a: None))


@ui.cached(queued=True)
def retrieval(windows, distances, trials, _progress=None):
    return in_line(model.retrieval_grid, windows, distances, trials, progress=_progress or (lambda *a: None))


@ui.cached("Back-propagating the token's loss to every input…", queued=True)
def influence(ids, key, token):
    target = target_for(key) if key else None
    return in_line(model.influence, list(ids), target, token), model.receptive_field(target, len(ids), token)


@ui.cached("Generating…", queued=True)
def continuation(ids, key, new_tokens):
    return in_line(model.greedy_continuation, list(ids), target_for(key) if key else None, new_tokens)


@ui.cached("Running all-MiniLM-L6-v2…", queued=True)
def encoder(text, pattern, params):
    enc = model.encoder_encode(text)
    rule = masks.build(pattern, enc.n, **dict(params)) if pattern else None
    return in_line(model.encoder_attention, enc, rule), enc.notice


def progress_bar(label):
    bar = st.empty()  # drawn once the work starts: nothing while the request waits in line or after it left
    started = []

    def update(done, total, what):
        if done >= total:  # finished: the results below say the rest
            bar.empty()
            return
        if not started:  # a statement, not an expression: Streamlit's magic would print an expression's value
            started.append(time.perf_counter())
        left = ""
        if done:  # the steps so far, timed: a long sweep on a CPU says how long it has to go
            seconds = (time.perf_counter() - started[0]) / done * (total - done)
            left = f" · about {seconds:,.0f} s left" if seconds >= 1 else ""
        bar.progress(done / max(total, 1), text=f"{label}: {what} ({done}/{total}){left}")

    return update


st.title("Model Attention")
st.caption(
    "SmolLM2-135M-Instruct (30 layers, 9 query heads sharing 3 KV heads) reads a document under your mask, "
    "ANDed with causal. Every map, loss and answer below is the model's real output."
)
for notice in ui.load_url_state("model", n_min=16, extra=URL_KEYS):
    ui.notice(notice, "warning", ":material/link:")
info = loaded()

with st.sidebar:
    ui.set_default("doc", "contract")
    doc = st.selectbox("Document", DOC_CHOICES, key="doc",
                       format_func=lambda d: "Paste or upload your own…" if d == "paste" else DOCS[d].title)
    if doc == "paste":
        text = st.text_area(f"Your text (up to {LIM.doc_chars:,} characters)", key="_pasted", height=160)
        upload = st.file_uploader("…or a UTF-8 .txt file", type=["txt", "md", "py"])
        if upload is not None:
            try:
                text = model.decode_text(upload.getvalue())
            except ValueError as e:
                ui.notice(e)
                text = ""
    else:
        text = DOCS[doc].text
        st.caption(f"Long-range dependency: {DOCS[doc].dependency}")
    ui.set_default("tokens", 256)
    max_tokens = st.number_input("Tokens to read", 16, LIM.loss_tokens, step=64, key="tokens",
                                 help=f"the first tokens of the text; maps stop at {LIM.map_tokens}")
    ui.set_default("stack", "pattern")
    source = st.selectbox("Mask in each layer", SOURCES, key="stack", format_func=SOURCE_TITLES.get)

try:
    model.check_text(text)
    enc = encoded(text, int(max_tokens))
except ValueError as e:
    ui.notice(e, "info", ":material/edit:")
    st.stop()
n = enc.n
with st.sidebar:
    pattern, params, custom, error = None, (), "", None
    if source == "pattern":
        pattern = ui.pattern_select("", "Pattern", "sliding_window")
        ui.set_default("window", 64)
        raw = ui.param_widgets("", pattern, n)
        try:
            params = ui.hashable_params(ui.rule_params(pattern, raw))
        except ValueError as e:
            error = str(e)
    elif source == "custom":
        ui.set_default("custom", "sliding_window window=32 | sliding_window window=32 | causal")
        custom = st.text_input("Rules, cycled over the 30 layers", key="custom")
    else:
        st.caption(STACK_PRESETS[source].source)
key = (source, pattern, params, custom, n)
try:
    if error:
        raise ValueError(error)
    target = target_for(key)
except ValueError as e:
    ui.notice(e)
    st.stop()
label = model.target_label(target)
ids = tuple(enc.ids)
ui.set_default("view", SECTIONS[0])
view = st.session_state["view"] or SECTIONS[0]
if view != SECTIONS[-1]:  # the encoder view has its own model, tokenizer and pattern, stated there
    if enc.notice:
        st.caption(f":material/content_cut: {enc.notice}")
    st.markdown(f"**{count(n, 'token')}** under **{markdown_literal(label)}** · model on **{info.device}**")
    # A window as long as this text masks nothing: say so before the maps (one token has its own notice below).
    if isinstance(target, masks.MaskRule) and n >= 2:
        for note in rule_notes(target, n):
            st.info(note, icon=":material/info:")
view = st.segmented_control("Show", SECTIONS, key="view", label_visibility="collapsed") or SECTIONS[0]
if n < 2 and view != SECTIONS[-1]:
    # Every decoder view reads one token to predict the next; the encoder view counts its own tokens.
    st.info("This text is a single token: the decoder's views need at least 2 tokens (one to read, one to predict). "
            "Type a longer text, or pick the encoder view.", icon=":material/edit:")
    st.stop()

if view == "Attention maps":
    if n > LIM.map_tokens:
        st.info(f"Attention maps use the first {LIM.map_tokens} tokens (30 × 9 maps of N² weights).")
    map_ids = ids[: LIM.map_tokens]
    m = len(map_ids)
    c = st.columns(2)
    ui.set_default("layer", 0)
    ui.set_default("head", 0)
    layer = c[0].slider("Layer", 0, info.layers - 1, key="layer")
    head = c[1].slider("Query head", 0, info.heads - 1, key="head",
                       help="; ".join(f"KV head {j} serves query heads {', '.join(map(str, g))}"
                                      for j, g in enumerate(info.kv_groups)))
    rule_row = target.rule_for_layer(layer) if isinstance(target, masks.LayerStack) else target
    fits = rule_row.n in (None, m)
    allowed = dense_numpy(model.decoder_rule(rule_row), m).astype(bool) if fits else None
    # Start with the first rows the mask cuts into in view (a 64-token window changes nothing in rows 0..63).
    first_cut = (first_cut_row(rule_row, m) if fits else None) or 0
    lo, hi = st.slider("Token range shown in the large maps (words label the axes for 48 tokens or fewer)", 0, m,
                       (0, min(m, max(40, first_cut + 32))), key="_range")
    if hi - lo < 2:
        st.warning("Choose a range of at least 2 tokens.")
        st.stop()
    group = next(j for j, g in enumerate(info.kv_groups) if head in g)
    try:
        masked, thumbs = layer_maps(map_ids, key, layer)
        full, _ = layer_maps(map_ids, None, layer)
    except ValueError as e:
        failed(e)
    top = model_figures.shared_zmax(lo, hi, masked[head], full[head])  # one scale: shades compare across the two
    ui.plot_side_by_side(
        [model_figures.attention_map_figure(masked[head], enc.pieces, f"Layer {layer}, head {head} (KV head "
                                            f"{group}) under\n{shorten(label, 60)}", lo, hi, allowed, top),
         model_figures.attention_map_figure(full[head], enc.pieces, "Same head,\nfull causal attention", lo, hi, zmax=top)],
        ["fig_masked", "fig_full"], [f"attention_L{layer}_H{head}_masked", f"attention_L{layer}_H{head}_full"])
    if allowed is not None:
        outside = float(full[head][~allowed].sum() / full[head].sum())
        st.markdown(f"With full attention this head puts **{outside:.1%}** of its weight (over all {m:,} tokens of the "
                    "maps, not only the range shown) where the mask forbids it; "
                    "under the mask that weight goes to the allowed keys (rows still sum to 1).")
    st.subheader("Every layer and head at a glance")
    st.caption("Each thumbnail is one head's map, averaged into 24 × 24 blocks and scaled to its own maximum. "
               "Layers run across, heads down; rows are grouped by the KV head the query heads share "
               "(grouped-query attention).")
    ui.plot(model_figures.head_grid_figure(thumbs, info.kv_groups, f"All {thumbs.shape[0]} layers × {thumbs.shape[1]} heads: {shorten(label, 70)}"),
            key="fig_grid", filename="attention_all_heads", wide=True)

elif view == "Loss per token":
    try:
        lm, lf = losses(ids, key), losses(ids, None)
    except ValueError as e:
        failed(e)
    c = st.columns(3)
    c[0].metric("Perplexity under the mask", f"{np.exp(lm.mean()):.2f}", help=f"mean loss {lm.mean():.3f} nats")
    c[1].metric("Perplexity, full attention", f"{np.exp(lf.mean()):.2f}", help=f"mean loss {lf.mean():.3f} nats")
    c[2].metric("Tokens harder under the mask", f"{int((lm - lf > 0.1).sum()):,}", help="loss up by more than 0.1 nat")
    st.markdown("**Loss under the mask** (darker = harder to predict; hover a token for its value)")
    st.html(model_figures.colored_tokens_html(enc.pieces, lm, float(np.percentile(lm, 98))))
    diff = lm - lf
    st.markdown("**Change from full attention** (red: harder under the mask, blue: easier)")
    st.html(model_figures.colored_tokens_html(enc.pieces, diff, float(np.abs(diff).max()), signed=True))
    rule_one = target.rules[0] if isinstance(target, masks.LayerStack) else target
    rows = dense_numpy(model.decoder_rule(rule_one), n).astype(bool) if n <= 4096 and rule_one.n in (None, n) else None
    table = [{"token": h.token, "text": repr(enc.pieces[h.token]), "loss full": round(h.loss_full, 2),
              "loss masked": round(h.loss_masked, 2), "change": round(h.change, 2), "why it may be harder": h.why}
             for h in model.hardest_tokens(ids, lm, lf, rows)]
    st.markdown("**Tokens that got hardest, and whether an earlier copy was in view**")
    st.dataframe(table, hide_index=True, width="stretch")

elif view == "Window sweep":
    st.markdown("Perplexity of this text under sliding windows of each size, and optionally the same windows "
                "with 4 attention-sink tokens (the first tokens stay visible: nearly the same cost).")
    ui.set_default("_windows", [16, 32, 64, 128, 256, model.FULL])
    windows = st.multiselect("Windows", SWEEP_WINDOWS, key="_windows", format_func=str)
    with_sinks = st.checkbox("Also with 4 sink tokens", value=True, key="_with_sinks")
    forwards = len(windows) + (sum(w != model.FULL for w in windows) if with_sinks else 0)
    pace = f" {bench_model.recorded_pace()}" if info.device == "cpu" else ""  # the CPU file says nothing of a GPU
    st.caption(f"Runs {count(forwards, 'forward')} of the model over {count(n, 'token')} (one per mask; a mask "
               f"already run on this text is reused).{pace} Once it starts, the bar says how long is left.")
    if st.button("Run the sweep", type="primary", disabled=not windows):
        ui.join_line()  # pressing Run joins the line again
        st.session_state["_sweep_req"] = (ids, tuple(windows), with_sinks)
    if st.session_state.get("_sweep_req") == (ids, tuple(windows), with_sinks):
        try:
            series = {"sliding window": sweep(ids, tuple(windows), 0, progress_bar("Sliding window"))}
            if with_sinks:
                series["4 sinks + window"] = sweep(ids, tuple(w for w in windows if w != model.FULL), 4,
                                                   progress_bar("Sinks + window")) if any(w != model.FULL for w in windows) else ()
        except ValueError as e:
            failed(e)
        full_ppl = next((p.perplexity for p in series["sliding window"] if p.window is None), None)
        ui.plot(model_figures.sweep_figure({k: [(p.window, p.perplexity) for p in v] for k, v in series.items()},
                                           full_ppl, n), key="fig_sweep", filename="perplexity_vs_window", wide=True)
        # A number column stays numbers (it sorts); a reused row has no forward of its own to time.
        st.dataframe([{"mask": p.label, "perplexity": round(p.perplexity, 3), "mean loss": round(p.mean_loss, 4),
                       "forward (s)": None if p.reused else round(p.seconds, 2),
                       "losses": "reused from an earlier run" if p.reused else "computed now"}
                      for v in series.values() for p in v], hide_index=True)

elif view == "Retrieval":
    st.markdown("A made-up fact (“the code for the blue locker is 4817”) is followed by D tokens of filler text "
                "and a question. Does the model copy the right code under each window?")
    c = st.columns(3)
    r_windows = c[0].multiselect("Windows", [16, 32, 64, 128, 256, 512, model.FULL], default=[32, 128, model.FULL],
                                 key="_r_windows", format_func=str)
    dists = c[1].multiselect("Distances D (tokens)", [0, 16, 64, 128, 256, 512, 1024], default=[16, 128, 512],
                             key="_r_dists")
    trials = c[2].slider("Facts per cell", 1, model.MAX_PROBE_TRIALS, 4, key="_r_trials")
    req = (tuple(r_windows), tuple(sorted(dists)), trials)
    if st.button("Run the probe", type="primary", disabled=not (r_windows and dists)):
        ui.join_line()  # pressing Run joins the line again
        st.session_state["_probe_req"] = req
    if st.session_state.get("_probe_req") == req:
        try:
            results = retrieval(*req, progress_bar("Probing"))
        except ValueError as e:
            failed(e)
        ui.plot(model_figures.retrieval_figure(results), key="fig_probe", filename="retrieval", wide=True)
        st.dataframe([{"mask": r.label, "D": r.distance_tokens, "fact": t.key, "expected": t.expected,
                       "answer": t.answer, "correct": t.correct, "gap (tokens)": t.gap_tokens}
                      for r in results for t in r.trials], hide_index=True)

elif view == "Influence vs reach":
    inf_n = min(n, LIM.influence_tokens)
    inf_ids = ids[:inf_n]
    ui.set_default("target_tok", inf_n - 1)
    if st.session_state["target_tok"] > inf_n - 1:
        st.session_state["target_tok"] = inf_n - 1
    token = st.number_input("Token whose loss we trace", 1, inf_n - 1, key="target_tok")
    inf_key = key if inf_n == n else (source, pattern, params, custom, inf_n)
    try:
        grad, reach = influence(inf_ids, inf_key, int(token))
    except ValueError as e:
        failed(e)
    used = grad > 1e-3 * grad.max()
    c = st.columns(3)
    c[0].metric("Positions the mask allows", f"{int(reach.sum()):,} of {int(token):,}")
    c[1].metric("Positions with influence ≥ 0.1% of the peak", f"{int(used.sum()):,}")
    far = reach & (np.arange(inf_n) < token - FAR_TOKENS)
    if token > FAR_TOKENS:
        c[2].metric(f"Influence from > {FAR_TOKENS} tokens back", f"{grad[far].sum() / grad.sum():.1%}" if grad.sum() else "0%",
                    help="share of the summed gradient norm")
    else:  # no position lies that far back: a share would read 0% whatever the mask
        c[2].metric(f"Influence from > {FAR_TOKENS} tokens back", "—",
                    help=f"Token {int(token)} has no position more than {FAR_TOKENS} tokens back: trace a later token "
                         "(read more tokens) to see how much comes from far away.")
    ui.plot(model_figures.influence_figure(grad, reach, int(token), label), key="fig_influence", filename="influence", wide=True)
    st.caption("Reach is what the mask allows through 30 layers (exact, from attn.reach); influence is the gradient "
               "of this token's loss with respect to each input embedding — what the model actually uses. "
               "Outside the reach the gradient is exactly zero.")

elif view == "Continuation":
    new_tokens = st.slider("New tokens", 4, LIM.new_tokens, 24, key="_new_tokens")
    prompt_ids = ids[: max(2, n - new_tokens)]
    st.caption(f"Prompt: the first {len(prompt_ids):,} tokens, ending “…{''.join(enc.pieces[max(0, len(prompt_ids) - 20):len(prompt_ids)]).replace(chr(10), ' ⏎ ')}”")
    req = (prompt_ids, key, int(new_tokens))
    if st.button("Generate both", type="primary"):
        ui.join_line()  # pressing Run joins the line again
        st.session_state["_gen_req"] = req
    if st.session_state.get("_gen_req") != req:
        st.stop()
    try:
        a = continuation(prompt_ids, key, int(new_tokens))
        b = continuation(prompt_ids, None, int(new_tokens))
    except ValueError as e:
        failed(e)
    left, right = st.columns(2)
    left.markdown(f"**Under {markdown_literal(shorten(label, 80))}**")
    left.code(a.text or "(nothing)", language=None, wrap_lines=True)
    right.markdown("**Full causal attention**")
    right.code(b.text or "(nothing)", language=None, wrap_lines=True)
    same = sum(1 for x, y in zip(a.new_ids, b.new_ids) if x == y)
    st.caption(f"The two agree on their first {next((i for i, (x, y) in enumerate(zip(a.new_ids, b.new_ids)) if x != y), min(len(a.new_ids), len(b.new_ids)))} tokens "
               f"({same} of {min(len(a.new_ids), len(b.new_ids))} positions equal).")

else:  # encoder
    st.markdown("all-MiniLM-L6-v2 (6 layers, 12 heads) reads the first 256 tokens in both directions. "
                "How close is its sentence embedding under a sparse bidirectional pattern to the full-attention one?")
    e_pattern = ui.pattern_select("enc_", "Bidirectional pattern", "local_global")
    e_raw = ui.param_widgets("enc_", e_pattern, 256)
    try:
        e_params = ui.hashable_params(ui.rule_params(e_pattern, e_raw))
        if dict(e_params).get("causal"):
            st.caption("This pattern is set to causal; untick “Causal” to read in both directions.")
        result, notice = encoder(text, e_pattern, e_params)
    except ValueError as e:
        failed(e)
    if notice:
        st.caption(f":material/content_cut: {notice} Counted by the encoder's own tokenizer; the sidebar's mask applies to the decoder only.")
    full_result, _ = encoder(text, None, ())
    st.metric("Cosine similarity to the full-attention embedding", f"{result.cosine:.4f}")
    c = st.columns(2)
    e_layer = c[0].slider("Layer", 0, 5, 5, key="_e_layer")
    e_head = c[1].slider("Head", 0, 11, 0, key="_e_head")
    m = len(result.pieces)
    hi = min(m, 64)
    e_rule = masks.build(e_pattern, m, **dict(e_params))
    top = model_figures.shared_zmax(0, hi, result.weights[e_layer, e_head], full_result.weights[e_layer, e_head])
    ui.plot_side_by_side(
        [model_figures.attention_map_figure(result.weights[e_layer, e_head], result.pieces,
                                            f"Encoder layer {e_layer}, head {e_head} under\n{shorten(e_rule.label, 60)}",
                                            0, hi, dense_numpy(e_rule, m).astype(bool), top),
         model_figures.attention_map_figure(full_result.weights[e_layer, e_head], full_result.pieces,
                                            "Same head,\nfull bidirectional attention", 0, hi, zmax=top)],
        ["fig_enc", "fig_enc_full"], ["encoder_masked", "encoder_full"])

state = {k: st.session_state[k] for k in st.session_state if not k.startswith("_")}
state["n"] = n
ui.share_view(ui.write_url_state(state, extra_keys=[k for k in URL_KEYS if k in state and (k != "custom" or source == "custom")]))
