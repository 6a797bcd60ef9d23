"""Receptive Field: how far information travels through L layers under a mask or a per-layer stack."""

import streamlit as st

import ui
from attn import figures, masks, reach
from attn.presets import STACK_ALIASES, STACK_PRESETS, build_stack, reach_explanations, rule_notes
from attn.state import parse_bounded_int, parse_choice
from attn.text import count, spans_text

SOURCES = ["pattern", *STACK_PRESETS, "custom"]
TITLES = {"pattern": "One pattern in every layer", "custom": "Custom stack (rules cycled over layers)"} | {
    k: p.title for k, p in STACK_PRESETS.items()
}


URL_KEYS = {
    "stack": parse_choice(SOURCES, "Stack", STACK_ALIASES),
    "custom": lambda t: t[:400],
    "layers": lambda t: parse_bounded_int(t, "Layers", 1, reach.MAX_LAYERS),
    "token": lambda t: parse_bounded_int(t, "Token", 0, masks.MAX_N - 1),
    "layer": lambda t: parse_bounded_int(t, "Layer", 1, reach.MAX_LAYERS),
    "src": lambda t: parse_bounded_int(t, "Source token", 0, masks.MAX_N - 1),
}


def target_for(source, pattern, params, custom, n, layers):
    if source == "pattern":
        return masks.build(pattern, n, **dict(params))
    spec = custom if source == "custom" else STACK_PRESETS[source].spec
    return build_stack(spec, layers, n, source)


@ui.cached("Tracing paths through the layers…")
def token_reach(source, pattern, params, custom, n, token, layers):
    return reach.reach_of_token(target_for(source, pattern, params, custom, n, layers), n, token, layers)


@ui.cached("Composing the layer masks…")
def matrix(source, pattern, params, custom, n, layers):
    return reach.reach_matrix(target_for(source, pattern, params, custom, n, layers), n, layers)


@ui.cached()
def until(source, pattern, params, custom, n, a, b):
    return reach.until(target_for(source, pattern, params, custom, n, reach.MAX_LAYERS), n, a, b)


# "Layers needed" when no depth is found: what it shows, and why (reach.Until.why).
NEVER = {
    "later": ("never", "token a comes after token b, and the mask is causal: it only carries information forward"),
    "closed": ("never", "the reach stops growing before it gets there: a boundary no layer crosses"),
    "deeper": (f"not within {reach.MAX_LAYERS}", f"the most layers traced is {reach.MAX_LAYERS}"),
}


def apply_preset(chosen, keep=()):
    """A model stack brings its depth and, where N is too short for its windows, its N; keys in
    `keep` (set by the link that opened the page) stay as they are."""
    if chosen not in STACK_PRESETS:
        return
    preset = STACK_PRESETS[chosen]
    if "layers" not in keep:
        st.session_state["layers"] = preset.layers
    if "n" not in keep and st.session_state.get("n", 256) < preset.n:  # at N = 256 a 4,096-token window is full attention
        st.session_state["_n_raised"] = f"N raised to {preset.n:,} so that this stack's windows show; change it in the sidebar."
        st.session_state["n"] = preset.n


def on_source_change():
    apply_preset(st.session_state["stack"])


st.title("Receptive Field")
st.caption(
    "After L layers, which earlier tokens can influence a token? Exact paths through the masks "
    "(residual connections included): what the mask allows, not what a model uses."
)
opened_from_link = not st.session_state.get("_url_loaded_reach")
for notice in ui.load_url_state("reach", extra=URL_KEYS):
    ui.notice(notice, "warning", ":material/link:")
if opened_from_link and st.session_state.get("stack") in STACK_PRESETS:
    # A link naming a model stack gets what picking it in the sidebar gives, except what the link sets.
    apply_preset(st.session_state["stack"], keep={k for k in ("n", "layers") if k in st.query_params})

with st.sidebar:
    ui.set_default("n", 256)
    n = st.number_input("Sequence length N", min_value=8, max_value=masks.MAX_N, step=1, key="n")
    ui.set_default("stack", "pattern")
    source = st.selectbox("Rule in each layer", SOURCES, key="stack", format_func=TITLES.get, on_change=on_source_change)
    pattern, params, custom, error = None, (), "", None
    if source == "pattern":
        pattern = ui.pattern_select("", "Pattern", "sliding_window")
        raw = ui.param_widgets("", pattern, n)
        try:
            params = ui.hashable_params(ui.rule_params(pattern, raw))
            for note in rule_notes(masks.build(pattern, n, **dict(params)), n):
                st.info(note, icon=":material/info:")
        except ValueError as e:
            error = str(e)
            ui.notice(error)
    elif source == "custom":
        ui.set_default("custom", "chunked chunk=32 | chunked chunk=32 | causal")
        custom = st.text_input("Rules, cycled over layers", key="custom", help="e.g. sliding_window window=64 | causal")
    else:
        st.caption(STACK_PRESETS[source].source)
        if st.session_state.get("_n_raised"):
            st.caption(st.session_state.pop("_n_raised"))
    ui.set_default("layers", 8 if source in ("pattern", "custom") else STACK_PRESETS[source].layers)
    layers = st.number_input("Number of layers L", step=1, key="layers", help=f"1 to {reach.MAX_LAYERS}")
    # The traced token is the last one, and follows N, until the user (or the link) picks one.
    ui.set_default("_token_follows_n", "token" not in st.session_state)
    past_end = None
    if st.session_state["_token_follows_n"]:
        st.session_state["token"] = n - 1
    elif isinstance(st.session_state["token"], int) and st.session_state["token"] > n - 1:
        past_end = f"Token {st.session_state['token']:,} is past the end of N = {n:,}; tracing the last token, {n - 1:,}."
        st.session_state["token"] = n - 1
    token = st.number_input("Token to trace", step=1, key="token", help="0 to N−1; the last one unless you pick one",
                            on_change=lambda: st.session_state.update(_token_follows_n=False))
    if past_end:
        ui.notice(past_end, "info", ":material/info:")

try:
    if error:
        raise ValueError(error)
    reach.check_layers(layers)
    reach.check_token(token, n)
    result = token_reach(source, pattern, params, custom, n, token, layers)
except ValueError as e:
    ui.notice(e)
    st.stop()

target = target_for(source, pattern, params, custom, n, layers)
rules = list(target.rules) if isinstance(target, masks.LayerStack) else [target]
counts = result.counts
# The slider's value is lost on runs that stop before drawing it (bad input); keep a copy.
ui.set_default("layer", st.session_state.get("_layer_keep", min(2, layers)))
if st.session_state["layer"] > layers:
    ui.notice(f"Layer {st.session_state['layer']} is past the {layers} layers of this stack; showing layer {layers}.",
              "info", ":material/info:")
    st.session_state["layer"] = layers
layer = st.slider("Show the reach after layer", 1, max(layers, 2), key="layer", disabled=layers == 1) if layers > 1 else 1

st.session_state["_layer_keep"] = layer
full, context = result.full_context_layer, result.context
# A causal stack's context is 0..token; a bidirectional one lets later tokens in too, so it is all N.
context_text = f"tokens 0..{context - 1:,}" if result.causal else f"all {n:,} tokens (the mask is bidirectional)"
c = st.columns(3)
c[0].metric(f"Reach after layer {layer}", f"{counts[layer - 1]:,} tokens", help="inputs token can draw on, itself included")
c[1].metric("Share of its context", ui.share(counts[layer - 1] / context), help=f"of its context: {context_text}")
# Closed: no rule of the stack grows the last reach set, so no depth reaches the whole context.
closed = full is None and reach.is_closed(target, result.sets[-1], n)
c[2].metric("Whole context reached at", f"layer {full}" if full else "never" if closed else f"not within {layers}",
            help=f"the first layer after which token {token:,} draws on {context_text}")
if full is None:
    st.caption(
        f"Within {layers} layers token {token:,} draws on {counts[-1]:,} of the {context:,} tokens of its context: "
        + ("the reach stops growing (a boundary no layer crosses)." if closed
           else "it still grows; add layers to see when it gets there.")
    )

analytic = None
if len(rules) == 1 and rules[0].name == "sliding_window":
    analytic = [reach.sliding_window_reach(token, l, rules[0].param_dict["window"]) for l in range(1, layers + 1)]
left, right = st.columns([3, 2])
with left:
    ui.plot(figures.reach_growth_figure(counts, token, analytic, full, context), key="fig_growth", filename="reach_growth")
with right:
    st.subheader("Why it matters")
    for line in reach_explanations(rules):
        st.markdown(f"- {line}")

labels = figures.token_labels(figures.SAMPLE_TEXT, n) if n <= 64 else None
ui.plot(figures.reach_map_figure(result.sets, token, labels), key="fig_map", filename="reach_map", wide=True)
spans = reach.intervals_of(result.sets[layer - 1])
st.markdown(f"**After layer {layer}** token {token:,} can draw on positions {spans_text(spans)} ({count(len(spans), 'interval')}).")

if n > 128:
    st.caption("The full reach matrix (every output × every input) is drawn for N ≤ 128; above, trace one token.")
else:
    ui.plot(
        figures.bool_matrix_figure(matrix(source, pattern, params, custom, n, layer), f"Reach matrix after layer {layer}: "
                                   "mask composed with itself, residual included", "path exists", "no path"),
        key="fig_matrix", filename=f"reach_matrix_layer{layer}", wide=True,
    )

st.subheader("How many layers until token a can influence token b?")
q = st.columns(3)
ui.set_default("src", 0)
a = q[0].number_input("token a", step=1, key="src",
                      help="the source; under a causal mask only earlier tokens can ever reach b")
b = q[1].number_input("token b", value=int(token), step=1, disabled=True, help="the traced token")
try:
    answer = until(source, pattern, params, custom, n, int(a), int(token))
    value, why = (f"{answer.layers}", None) if answer.layers else NEVER[answer.why]
    q[2].metric("Layers needed", value, help=why)
except ValueError as e:
    q[2].error(str(e))

state = {k: st.session_state[k] for k in st.session_state if not k.startswith("_")}
link = ui.write_url_state(state, extra_keys=[k for k in URL_KEYS if k in state and (k != "custom" or source == "custom")])
ui.share_view(link)
