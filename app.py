"""Attention Mask Lab: `streamlit run app.py`."""

import streamlit as st

# Page scripts live in app_pages/, not pages/: a pages/ folder next to the entry script turns on
# Streamlit's older automatic page discovery, which answers a direct link such as
# /receptive-field with a "Page not found" dialog before st.navigation takes over.

st.set_page_config(page_title="Attention Mask Lab", page_icon="🎭", layout="wide")

pages = [
    # The default page is served at "/" only; Streamlit answers its url_path with "Page not found".
    st.Page("app_pages/mask_explorer.py", title="Mask Explorer", icon="🔍", default=True),
    st.Page("app_pages/receptive_field.py", title="Receptive Field", icon="🕸️", url_path="receptive-field"),
    st.Page("app_pages/serving_cost.py", title="Serving Cost", icon="💾", url_path="serving-cost"),
]
st.navigation(pages).run()
