"""Attention Mask Lab: `streamlit run app.py`."""

import streamlit as st

st.set_page_config(page_title="Attention Mask Lab", page_icon="🎭", layout="wide")

pages = [
    st.Page("pages/mask_explorer.py", title="Mask Explorer", icon="🔍", url_path="explorer", default=True),
    st.Page("pages/receptive_field.py", title="Receptive Field", icon="🕸️", url_path="receptive-field"),
]
st.navigation(pages).run()
