"""Home: what the app is, one live example, and a card for every page."""

import streamlit as st

import ui
from attn import figures, masks, reach
from attn.state import parse_bounded_int

N, TOKEN = 48, 47
W_MAX = 16  # the slider's end: a link may not ask for more than the slider can show
URL_KEYS = {
    "w": lambda t: parse_bounded_int(t, "Window", 1, W_MAX),
    "layers": lambda t: parse_bounded_int(t, "Layers", 1, 12),
}

# Links written for the first version of the app opened the explorer at "/": send them on.
if "pattern" in st.query_params:
    st.switch_page("app_pages/mask_explorer.py", query_params=st.query_params.to_dict())

st.title("Attention Mask Lab")
st.markdown(
    "Attention masks decide which earlier words each word in a transformer may look at; this lab "
    "shows any mask as a matrix, how far information travels through the layers, what it costs, "
    "and what it does to a real model. Everything you see is computed live from the same rule that "
    "the attention kernels run."
)
# Home's slider is "w", not the mask pages' "window": those pages share one window widget
# state, which Home's smaller slider (1–16) must not overwrite. A link with "window" gets a hint.
for notice in ui.load_url_keys("home", URL_KEYS, synonyms={"window": "w"}):
    ui.notice(notice, "warning", ":material/link:")
ui.set_default("w", 4)
ui.set_default("layers", 6)

with st.container(border=True):
    st.markdown("#### Try it: a sliding window, and what it lets the last token see")
    c = st.columns(2)
    w = c[0].slider("Window W (each token sees itself and the W − 1 tokens before it)", 1, W_MAX, key="w")
    layers = c[1].slider("Layers", 1, 12, key="layers")
    rule = masks.sliding_window(int(w))
    result = reach.reach_of_token(rule, N, TOKEN, int(layers))
    analytic = [reach.sliding_window_reach(TOKEN, layer, int(w)) for layer in range(1, int(layers) + 1)]
    left, right = st.columns(2)
    with left:
        ui.plot(figures.grid_figure(rule, N, title=f"Sliding window W = {w}: query q may use key k"),
                key="home_mask", filename=f"sliding_window_{w}")
    with right:
        ui.plot(figures.reach_growth_figure(result.counts, TOKEN, analytic, result.full_context_layer),
                key="home_reach", filename=f"reach_sliding_window_{w}")
    last, full = result.counts[-1], result.full_context_layer
    one = min(int(w), TOKEN + 1)
    if int(w) == 1:
        growth = "a window of 1 is the token alone, so layers add nothing"
    elif full is None:
        growth = f"each layer adds W − 1 = {int(w) - 1} more"
    else:
        growth = f"each layer adds up to W − 1 = {int(w) - 1} more, until layer {full} reaches the whole context"
    st.markdown(
        f"One layer lets token {TOKEN} use **{one}** token{'' if one == 1 else 's'}; after **{layers}** layer{'' if layers == 1 else 's'} it can draw "
        f"on **{last}** of its {TOKEN + 1} — {growth}. That is how Mistral 7B, "
        "with a 4,096-token window in 32 layers, reaches about 131,000 tokens."
    )

st.markdown("#### Where to go next")
cards = [p for p in ui.PAGES if p[3] is not None]
cols = st.columns(min(3, len(cards)))
for i, (path, title, icon, _, blurb) in enumerate(cards):
    with cols[i % len(cols)].container(border=True):
        st.page_link(path, label=f"**{title}**", icon=icon)
        st.caption(blurb)

ui.share_view(ui.write_url_keys({"w": w, "layers": layers}))
