"""The app's entry point and home page through AppTest: navigation, live example, presenter view."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from attn.reach import sliding_window_reach

APP = Path(__file__).resolve().parent.parent / "app.py"


def open_app(**query):
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(query)
    return at.run()


def test_home_live_example_follows_the_sliders():
    at = open_app()
    assert not at.exception and not at.warning
    assert at.title[0].value == "Attention Mask Lab"
    assert [c.key for c in at.get("plotly_chart")] == ["home_mask", "home_reach"]
    text = " ".join(m.value for m in at.markdown)
    assert f"after **6** layers it can draw on **{sliding_window_reach(47, 6, 4)}**" in text
    at.slider(key="w").set_value(9).run()
    at.slider(key="layers").set_value(3).run()
    text = " ".join(m.value for m in at.markdown)
    assert f"after **3** layers it can draw on **{sliding_window_reach(47, 3, 9)}**" in text  # 25
    assert at.query_params["w"] == "9" and at.query_params["layers"] == "3"


def test_home_links_every_page():
    at = open_app()
    import ui

    links = [e.proto.page for e in at.get("page_link")]
    assert sorted(links) == sorted(p[3] for p in ui.PAGES if p[3])  # every page but home (cards in 3 columns)
    assert {"explorer", "receptive-field", "serving-cost"} <= set(links)


def test_presenter_view_and_figure_format_come_from_the_url():
    at = open_app(present="1", img_fmt="svg")
    assert not at.exception
    assert at.toggle(key="present").value is True
    assert at.radio(key="img_fmt").value == "svg"
    assert any("stMainBlockContainer" in h.proto.body for h in at.get("html"))  # the presenter's large type
    assert at.query_params["present"] == "1" and at.query_params["img_fmt"] == "svg"
    at = open_app(present="maybe", w="99")
    assert not at.exception
    assert at.toggle(key="present").value is False
    assert any("Ignored URL parameter w" in w.value for w in at.warning)


def test_live_example_sentence_stops_growing_at_the_whole_context():
    at = open_app(w="16", layers="12")
    text = " ".join(m.value for m in at.markdown)
    # 48 tokens, W = 16: reach 16, 31, 46, then 48 at layer 4 (the analytic min(q+1, l·15+1)).
    assert "can draw on **48** of its 48" in text and "until layer 4 reaches the whole context" in text, text


def test_live_example_sentence_for_a_window_of_one():
    at = open_app(w="1", layers="6")
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    # W = 1: each token sees only itself, at every depth (sliding_window_reach(47, 6, 1) == 1).
    assert f"use **1** token; after **6** layers it can draw on **{sliding_window_reach(47, 6, 1)}** of its 48" in text, text
    assert "layers add nothing" in text and "W − 1 = 0" not in text


def test_home_names_a_near_miss_key():
    at = open_app(W="9", Layers="3")
    assert not at.exception
    assert sorted(w.value for w in at.warning) == [
        "Unknown URL parameter 'Layers' was ignored; did you mean 'layers'?",
        "Unknown URL parameter 'W' was ignored; did you mean 'w'?",
    ]
    assert at.slider(key="w").value == 4 and at.slider(key="layers").value == 6


def test_home_points_the_mask_pages_window_key_to_w():
    # A link written for the mask pages (?window=…) opens Home with the default and names Home's key.
    at = open_app(window="9")
    assert not at.exception
    assert [w.value for w in at.warning] == ["Unknown URL parameter 'window' was ignored; did you mean 'w'?"]
    assert at.slider(key="w").value == 4
