"""Attention Mask Lab: `streamlit run app.py`."""

import streamlit as st

import ui
from attn import figures
from attn.state import decode_keys

# Page scripts live in app_pages/, not pages/: a pages/ folder next to the entry script turns on
# Streamlit's older automatic page discovery, which answers a direct link such as
# /receptive-field with a "Page not found" dialog before st.navigation takes over.

st.set_page_config(page_title="Attention Mask Lab", page_icon="🎭", layout="wide")
ui.begin_run()

if not st.session_state.get("_url_loaded_app"):
    values, notices = decode_keys(ui.url_query(), ui.APP_URL_KEYS)
    st.session_state["present"] = values.get("present") == "1"
    st.session_state["img_fmt"] = values.get("img_fmt", "png")
    st.session_state["_url_loaded_app"] = True
    for notice in notices:
        st.toast(notice, icon=":material/link:")

pages = [
    st.Page(path, title=title, icon=icon, default=url_path is None, **({"url_path": url_path} if url_path else {}))
    for path, title, icon, url_path, _ in ui.PAGES
]
nav = st.navigation(pages)

with st.sidebar:
    st.radio("Figure downloads (camera icon)", ui.IMAGE_FORMATS, horizontal=True, key="img_fmt",
             format_func=str.upper, help=f"Charts: {figures.SLIDE_PX[0]}×{figures.SLIDE_PX[1]} pixels, for slides. "
                  f"A mask matrix: at least {figures.SLIDE_PX[1]} pixels tall, laid out as on screen.")
top = st.columns([3, 1])  # "Presenter view" fits on two lines in a 1,024-pixel window
top[1].toggle("Presenter view", key="present", help="Large type, high-contrast colour-blind-safe figures, "
              "side controls folded away (the arrow at the top left opens them). Kept in the page's link.")
# Presenter view folds the side controls away rather than removing them: the arrow at the top left
# brings them back to change a setting in front of the room.
st.set_page_config(initial_sidebar_state="collapsed" if ui.presenter() else "auto")
st.html(ui.BASE_CSS)
if ui.presenter():
    st.html(ui.PRESENTER_CSS)
nav.run()
with st.sidebar:  # last: its report reruns the page once it has been drawn (ui.page_width_probe)
    ui.page_width_probe()
