"""End-to-end: Chromium picks a document and a window on the Model Attention page of a live app."""

from __future__ import annotations

import pytest

from web import (
    live_server,
    wait_idle,
    metric_value,
    wait_url,
    type_number,
    assert_clean,
    screenshot_tall,
    SQUARE_FIT_JS,
)

pytestmark = pytest.mark.browser
MODEL_WAIT_MS = 300_000  # first load on a fresh machine converts the GGUF file (~30 s, more on a busy CPU)

TITLES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .map((g) => (g._fullLayout && g._fullLayout.title && g._fullLayout.title.text) || '')"""


@pytest.fixture(scope="module")
def server(chromium_path):
    yield from live_server("streamlit-server-model.log")


def test_pick_document_and_window(server, page):
    page.goto(server + "/model?tokens=128")
    page.get_by_role("heading", name="Model Attention").wait_for(timeout=MODEL_WAIT_MS)
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)

    combo = page.get_by_role("combobox", name="Document", exact=True)
    combo.click()
    page.get_by_role("option").filter(has_text="meeting").first.click()
    wait_url(page, {"doc": "meeting"})
    wait_idle(page)
    type_number(page, "Window W", 16)
    # Wait for the last figure of the run (the head grid, under the new window) too: "Running…" shows
    # only after a moment, so an idle status alone can be read before the grid is drawn again.
    page.wait_for_function(
        f"""() => {{ const t = ({TITLES_JS})();
                     return t.some((s) => s.includes('sliding_window(window=16)') && !s.includes('All 30 layers'))
                       && t.some((s) => s.includes('All 30 layers') && s.includes('window=16')); }}""",
        timeout=MODEL_WAIT_MS,
    )
    wait_idle(page)
    titles = page.evaluate(TITLES_JS)
    assert any("Same head,<br>full causal attention" in t for t in titles), titles
    # Masked weights are exactly zero outside the window: check the large map's data in the browser.
    outside = page.evaluate(
        """() => { const g = document.querySelectorAll('.js-plotly-plot')[0];
                 const t = g._fullData[0]; const z = t.z; let bad = 0;
                 for (let r = 0; r < z.length; r++) for (let c = 0; c < z[r].length; c++)
                   if ((t.x[c] > t.y[r] || t.y[r] - t.x[c] >= 16) && z[r][c] !== 0) bad++;
                 return bad; }"""
    )
    assert outside == 0

    page.locator('[data-testid="stButtonGroup"]').get_by_text("Loss per token", exact=True).click()
    page.get_by_text("Perplexity under the mask").wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    masked, full = float(metric_value(page, "Perplexity under the mask")), float(metric_value(page, "Perplexity, full attention"))
    assert masked > 1 and full > 1, (masked, full)
    wait_url(page, {"doc": "meeting", "window": "16", "view": "Loss per token"})
    assert_clean(page)
    screenshot_tall(page, "model_loss_meeting_w16.png", 2000)


def test_attention_maps_are_level_squares_that_fill_a_narrow_column(server, page):
    # At 1,024 px the two maps were stretched to 640 px tall in 274-px columns, the masked one a line
    # lower (its title has three lines), with a colour bar taking a quarter of each column's width.
    page.set_viewport_size({"width": 1024, "height": 1200})
    page.goto(server + "/model?tokens=20")  # 20 tokens: every key and query labelled with its word
    page.locator(".st-key-fig_full .js-plotly-plot").wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    page.wait_for_timeout(500)  # the chart follows its box's size on the next frame
    fits = page.evaluate(SQUARE_FIT_JS)[:2]
    assert len(fits) == 2 and abs(fits[0]["top"] - fits[1]["top"]) <= 1, fits
    for fit in fits:
        assert fit["under"] <= 20 and fit["left"] <= 14 and fit["side"] >= 0.5, fit
    # The head grid's picture fills its width with no band under it (a fixed 348 px left 100 px blank),
    # and its KV-group labels are drawn beside it.
    grid = page.evaluate("""() => { const g = document.querySelector('.st-key-fig_grid .js-plotly-plot');
      const a = g.getBoundingClientRect(), b = g.querySelector('.nsewdrag').getBoundingClientRect();
      return {under: Math.round(a.bottom - b.bottom), x_domain: g._fullLayout.xaxis.domain,
              labels: Array.from(g.querySelectorAll('.annotation-text')).map((t) => t.textContent)}; }""")
    assert grid["under"] <= 20 and grid["x_domain"][0] <= 0.02 and grid["x_domain"][1] >= 0.98, grid
    assert grid["labels"] == ["KV head 0", "KV head 1", "KV head 2"], grid
    assert_clean(page)
