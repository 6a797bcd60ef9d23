"""End-to-end: the home page, figure export at slide resolution, presenter view, page cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attn.figures import MASKED

from web import (
    ARTIFACTS,
    WAIT_S,
    live_server,
    wait_idle,
    wait_url,
    assert_no_exception,
    assert_clean,
    screenshot_tall,
)

pytestmark = pytest.mark.browser
MASKED_RGB = [int(MASKED[i:i + 2], 16) for i in (1, 3, 5)]  # the grid's masked cells


@pytest.fixture(scope="module")
def server(chromium_path):
    yield from live_server("streamlit-server-home.log")


def download_figure(page, ext: str, nth: int = 0) -> Path:
    plot = page.locator(".js-plotly-plot").nth(nth)
    plot.hover()
    with page.expect_download(timeout=WAIT_S * 1000) as d:
        plot.locator('.modebar-btn[data-title^="Download plot"]').click()
    target = ARTIFACTS / f"home_export_{nth}.{ext}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d.value.save_as(target)
    assert d.value.suggested_filename.endswith(f".{ext}"), d.value.suggested_filename
    return target


def test_home_example_export_and_cards(server, page):
    page.goto(server + "/")
    page.get_by_role("heading", name="Attention Mask Lab").wait_for(timeout=WAIT_S * 1000)
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=WAIT_S * 1000)
    wait_idle(page)
    body = page.inner_text("body")
    assert "after 6 layers it can draw on 19 of its 48" in body  # min(48, 6·3+1)

    # The window slider, by keyboard: 4 -> 6; reach after 6 layers becomes min(48, 6·5+1) = 31.
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Window W").get_by_role("slider")
    thumb.focus()
    thumb.press("ArrowRight")
    thumb.press("ArrowRight")
    page.get_by_text("after 6 layers it can draw on 31 of its 48", exact=False).wait_for(timeout=WAIT_S * 1000)
    wait_url(page, {"w": "6", "layers": "6"})
    wait_idle(page)

    # The reach chart (second figure): a 1920 × 1080 slide.
    png = download_figure(page, "png", nth=1)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (1920, 1080), (im.format, im.size)

    # The mask (first figure), as shown and scaled up: at least 1080 pixels tall, in a half-width column
    # (its box as tall as the width needs, 562 px here) and in a wide window (its full 658 px), with the
    # square as large as on screen. A fixed 960 × 540 layout started from the on-screen domain and shrank
    # the square (to 71% in the wide window); a scale to 1080 / 658 gave 922 pixels in the column.
    width_js = "() => document.querySelector('.js-plotly-plot')._fullLayout.width"
    shown_js = ("() => { const g = document.querySelector('.js-plotly-plot'); "
                "return [g._fullLayout.width, g._fullLayout.height, g._fullLayout.yaxis._length]; }")
    narrow_px = page.evaluate(width_js)
    for viewport in (1400, 3840):
        if viewport == 3840:
            page.set_viewport_size({"width": 3840, "height": 1500})
            page.wait_for_function(f"() => ({width_js})() > {narrow_px} * 1.5", timeout=WAIT_S * 1000)
            wait_idle(page)  # the resize's rerun (titles wrapped for the new width) redraws the figure
        width_px, height_px, side_px = shown = page.evaluate(shown_js)
        with Image.open(download_figure(page, "png")) as im:
            scale = im.size[1] / height_px
            # within one layout pixel: _fullLayout.width is rounded, and the scale is about 2-3
            assert im.size[1] >= 1080 and abs(im.size[0] - width_px * scale) <= scale, (viewport, im.size, shown)
            cells = np.all(np.abs(np.asarray(im.convert("RGB"), dtype=int) - MASKED_RGB) <= 2, axis=2)
        rows = np.flatnonzero(cells.any(axis=1))
        assert rows[-1] - rows[0] >= 0.95 * side_px * scale, (viewport, rows[0], rows[-1], shown)
    page.set_viewport_size({"width": 1400, "height": 1500})

    page.get_by_text("SVG", exact=True).click()
    wait_url(page, {"img_fmt": "svg"})
    wait_idle(page)
    svg = download_figure(page, "svg", nth=1).read_text()
    assert svg.lstrip().startswith("<svg") and 'width="1920"' in svg and 'height="1080"' in svg
    # Laid out at 960 × 540 and drawn at 2×: the text is twice as large on the slide as in a 1920-wide layout.
    assert 'viewBox="0 0 960 540"' in svg
    assert_clean(page)
    screenshot_tall(page, "home.png", 1500)

    # A card leads to its page.
    page.get_by_role("link", name="Serving Cost").last.click()
    page.get_by_role("heading", name="Serving Cost").wait_for(timeout=WAIT_S * 1000)
    assert page.url.split("?")[0].endswith("/serving-cost")
    assert_no_exception(page)


def test_presenter_view_hides_controls_and_is_kept_in_the_link(server, page):
    page.goto(server + "/receptive-field?n=64&pattern=sliding_window&window=4&layers=8")
    page.locator(".js-plotly-plot").first.wait_for(timeout=WAIT_S * 1000)
    wait_idle(page)
    sidebar = page.locator('section[data-testid="stSidebar"]')
    assert sidebar.is_visible()
    page.get_by_text("Presenter view", exact=True).click()
    sidebar.wait_for(state="hidden", timeout=WAIT_S * 1000)
    wait_url(page, {"present": "1", "window": "4"})
    wait_idle(page)
    # Figures switch to the high-contrast palette: the layer map's "reached" colour is black.
    scale = page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap((g) => (g._fullData || [])"
        ".filter((t) => t.type === 'heatmap').map((t) => t.colorscale[t.colorscale.length - 1][1]))"
    )
    assert scale and all(c in ("#000000", "rgb(0, 0, 0)") for c in scale), scale
    size = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('.stMainBlockContainer p')).fontSize)")
    assert size >= 22, size
    # Metric values are the largest text on the slide, larger than their labels and the body text.
    metric = page.evaluate(
        "() => Array.from(document.querySelectorAll('[data-testid=\"stMetric\"]')).map((m) => ["
        "parseFloat(getComputedStyle(m.querySelector('[data-testid=\"stMetricValue\"] p')).fontSize),"
        "parseFloat(getComputedStyle(m.querySelector('[data-testid=\"stMetricLabel\"] p')).fontSize)])"
    )
    assert metric and all(value >= 40 and value > label for value, label in metric), metric
    # The link reopens the presenter view.
    page.goto(page.url)
    page.locator(".js-plotly-plot").first.wait_for(timeout=WAIT_S * 1000)
    assert not sidebar.is_visible()
    # Folded away, not removed: the arrow at the top left brings the controls back to change a setting.
    page.locator('[data-testid="stExpandSidebarButton"]').click()
    sidebar.wait_for(state="visible", timeout=WAIT_S * 1000)
    assert sidebar.get_by_label("Window W", exact=True).is_visible()
    assert_clean(page)


def test_a_phone_opens_with_the_sidebar_folded(server, page):
    # Streamlit folds the sidebar on a narrow screen when the app leaves it to choose ("auto"); an app
    # that asks for "expanded" covers a phone's whole page with the controls.
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto(server + "/explorer")
    page.locator(".js-plotly-plot").first.wait_for(timeout=WAIT_S * 1000)
    wait_idle(page)
    assert not page.locator('section[data-testid="stSidebar"]').is_visible()
    page.locator('[data-testid="stExpandSidebarButton"]').click()
    page.locator('section[data-testid="stSidebar"]').get_by_label("Window W", exact=True).wait_for(timeout=WAIT_S * 1000)
    assert_no_exception(page)
