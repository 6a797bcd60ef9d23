"""End-to-end: Debian Chromium (via Playwright) drives a live `streamlit run app.py`.

Skipped when /usr/bin/chromium is missing, unless REQUIRE_BROWSER=1 (then it fails).
Screenshots go to test-artifacts/ (git-ignored), with the server log. The Chromium fixtures are in
conftest.py and the page helpers in web.py, shared by every test_browser_*.py.
"""

from __future__ import annotations

import re

import pytest

from web import (
    live_server,
    wait_idle,
    wait_figure,
    wait_metric,
    wait_url,
    type_number,
    choose_pattern,
    assert_no_exception,
    screenshot,
    SQUARE_FIT_JS,
)

pytestmark = pytest.mark.browser

# Independent reference: a causal sliding window of W keys lets query q see min(q + 1, W) keys.
SW_N, SW_W = 16, 4
SW_ALLOWED = sum(min(q + 1, SW_W) for q in range(SW_N))  # 58
BIG_N = 131072


@pytest.fixture(scope="module")
def server(chromium_path):
    yield from live_server("streamlit-server.log")


# ---------------------------------------------------------------- tests


def test_sliding_window_then_long_overview(server, page):
    page.goto(server + "/explorer")
    wait_figure(page, lambda i: i["rows"] > 0, "the default mask")
    # A fresh server's first visit must not raise Streamlit's "Page not found" dialog.
    assert page.get_by_text("Page not found").count() == 0

    # Pick the pattern from the selectbox: go away from the default and back, so the widget
    # is really exercised (the Window input disappears for plain causal, then comes back).
    choose_pattern(page, "Causal")
    page.get_by_label("Window W", exact=True).wait_for(state="detached")
    wait_idle(page)
    choose_pattern(page, "Sliding window (causal)")
    page.get_by_label("Window W", exact=True).wait_for(state="visible")
    wait_idle(page)

    type_number(page, "Window W", SW_W)
    wait_figure(page, lambda i: "window=4" in i["title"], "window=4 in the title")
    type_number(page, "Sequence length N", SW_N)
    info = wait_figure(page, lambda i: i["rows"] == SW_N and i["cols"] == SW_N, f"a {SW_N}x{SW_N} grid")

    assert info["type"] == "heatmap", info["type"]
    assert info["ones"] == SW_ALLOWED == 58, info
    assert info["nonzero"] == SW_ALLOWED, "grid z must be exactly 0/1"
    assert f"N = {SW_N}" in info["title"]
    wait_metric(page, "Allowed pairs", str(SW_ALLOWED))
    assert page.get_by_label("Window W", exact=True).input_value() == str(SW_W)
    assert page.get_by_label("Sequence length N", exact=True).input_value() == str(SW_N)
    # The URL follows the widgets, so the view can be shared (rewritten at the end of the run).
    wait_url(page, {"n": str(SW_N), "pattern": "sliding_window", "window": str(SW_W)})
    assert_no_exception(page)
    screenshot(page, "explorer_sw4_n16.png")

    type_number(page, "Sequence length N", BIG_N)
    info = wait_figure(page, lambda i: "131,072" in i["title"], "the N = 131,072 overview")
    assert info["type"] == "heatmap" and (info["rows"], info["cols"]) == (512, 512), info
    assert "cell = 256×256 tokens" in info["title"], info["title"]
    assert "window=4" in info["title"], info["title"]
    # Each 256-token tile on the diagonal holds the whole band; all other tiles are empty,
    # except the 6-pair corner the band spills into the tile just left of the diagonal.
    assert all(0 < v < 1 for v in info["col0"][:1]) and all(v == 0 for v in info["col0"][2:]), info["col0"][:4]
    assert 512 <= info["nonzero"] <= 2 * 512, info["nonzero"]
    wait_metric(page, "Allowed pairs", f"{sum(min(q + 1, SW_W) for q in range(BIG_N)):,}")
    assert_no_exception(page)
    screenshot(page, "explorer_n131072.png")


def test_shared_link_local_global_overview(server, page):
    # A link from the first version of the app, when the explorer was at "/": the home page forwards it.
    page.goto(server + f"/?n={BIG_N}&pattern=local_global&window=256&global_tokens=0&causal=0")
    info = wait_figure(page, lambda i: "131,072" in i["title"] and i["rows"] == 512, "the N = 131,072 overview")
    assert (info["rows"], info["cols"]) == (512, 512), info
    assert "256×256" in info["title"], info["title"]
    zero_rows = [r for r, v in enumerate(info["col0"]) if not v > 0]
    assert not zero_rows, f"global token 0 invisible in tile rows {zero_rows[:10]} (of {len(zero_rows)})"
    assert page.get_by_role("combobox", name="Pattern", exact=True).input_value() == "Local + global (Longformer)"
    # Independent count: band |q - k| <= 128, plus the full row and column of token 0.
    half = 256 // 2
    band = sum(min(q, half) + 1 + min(BIG_N - 1 - q, half) for q in range(BIG_N))
    row_and_col = 2 * (BIG_N - (half + 1))
    wait_metric(page, "Allowed pairs", f"{band + row_and_col:,}")
    assert_no_exception(page)
    screenshot(page, "explorer_local_global_n131072.png")


TRUNCATED_TEXT_JS = """() => Array.from(document.querySelectorAll(
    '[data-testid="stMetricValue"] *, [data-testid="stMetricLabel"] *, [data-testid="stWidgetLabel"] *'))
  .filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => e.innerText)"""


def test_a_1024_pixel_window_cuts_no_metric_or_the_presenter_toggle(server, page):
    # A third of the page for each metric: 533,063,678 used to end in "…", and "Presenter view" in "P…".
    page.set_viewport_size({"width": 1024, "height": 1200})
    page.goto(server + f"/explorer?n={BIG_N}&pattern=local_global&window=4096&global_tokens=0&causal=0")
    wait_metric(page, "Allowed pairs", "533,063,678")
    wait_idle(page)
    assert page.evaluate(TRUNCATED_TEXT_JS) == []
    assert_no_exception(page)


def test_lesson_buttons_keep_their_words_in_a_1024_pixel_window(server, page):
    # In columns of an eighth of the row, Back and Next read "← B…" and "Ne…" at 1,024 px.
    page.set_viewport_size({"width": 1024, "height": 1200})
    page.goto(server + "/lessons?lesson=cost-and-quality&step=2")
    page.get_by_role("button", name="Next →").wait_for(timeout=60_000)
    wait_idle(page)
    cut = page.evaluate("""() => Array.from(document.querySelectorAll('button p, button [data-testid="stMarkdownContainer"]'))
      .filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => e.innerText)""")
    assert cut == []
    for name in ("← Back", "Next →", "Handout (HTML)"):
        assert page.get_by_role("button", name=name).is_visible()
    assert_no_exception(page)


# Each Plotly title's horizontal overhang past the edge of its figure, in px (Plotly clips a title
# instead of wrapping it).
TITLE_OVERHANG_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap((g) => {
  const t = g.querySelector('.gtitle'), svg = g.querySelector('svg.main-svg');
  if (!t || !svg || svg.getBoundingClientRect().width === 0) return [];
  const a = svg.getBoundingClientRect(), b = t.getBoundingClientRect();
  const over = Math.max(a.left - b.left, b.right - a.right);
  return over > 1 ? [[t.textContent, Math.round(over)]] : [];
})"""


@pytest.mark.parametrize("path, figures", [("/", 2), ("/serving-cost", 4), ("/receptive-field", 2)])
def test_a_1024_pixel_window_clips_no_figure_title(server, page, path, figures):
    # Half-width columns with the sidebar open are about 260 px wide: "Sliding window W = 4: query q may
    # use key k" ran 91 px past its figure on Home, "VRAM vs context (batch 1): …" 51 px on Serving Cost.
    page.set_viewport_size({"width": 1024, "height": 1200})
    page.goto(server + path)
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .gtitle').length >= {figures}",
                           timeout=60_000)
    wait_idle(page)
    assert page.evaluate(TITLE_OVERHANG_JS) == []
    assert_no_exception(page)


# Each colour bar's tick labels as drawn: Plotly hides (display: none) a label that would run past its figure.
COLORBAR_LABELS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map((g) =>
  Array.from(g.querySelectorAll('.colorbar .cbaxis text')).map((t) =>
    [t.textContent, getComputedStyle(t).display !== 'none' && t.getBoundingClientRect().width > 0]))"""


@pytest.mark.parametrize("draw, labels, width", [("pairs", ["only B", "same", "only A"], 1400),
                                                 ("blocks", ["only B", "both / neither", "only A"], 1024)])
def test_presenter_view_difference_shows_every_colour_bar_label(server, page, width, draw, labels):
    # Presenter view's 20 px type at the bar's two ends: Plotly hid "only B" and "only A", leaving a bar
    # of three colours with one word. Each value now sits mid-swatch, its label under it.
    page.set_viewport_size({"width": width, "height": 1200})
    page.goto(server + f"/explorer?n=64&compare=1&b_pattern=bigbird&present=1&draw={draw}&kernel_block=16")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .colorbar .cbaxis text').length >= 3",
                           timeout=60_000)
    wait_idle(page)
    bars = [bar for bar in page.evaluate(COLORBAR_LABELS_JS) if [t for t, _ in bar] == labels]
    assert len(bars) == 1, page.evaluate(COLORBAR_LABELS_JS)
    assert all(shown for _, shown in bars[0]), bars[0]
    assert_no_exception(page)


def test_compare_squares_start_level_under_headings_that_wrap_differently(server, page):
    # At 1,024 px "A: Causal" is one line and "B: BigBird (window + global + random)" two or three:
    # with each heading above its own figure, B's square started a line or two lower than A's.
    page.set_viewport_size({"width": 1024, "height": 1200})
    page.goto(server + "/explorer?n=64&pattern=causal&compare=1&b_pattern=bigbird&b_window=8")
    wait_figure(page, lambda i: i["rows"] == 64, "mask B", key="fig_B")
    wait_idle(page)
    heads = page.locator('[data-testid="stHeading"]').filter(has_text=re.compile("^[AB]: "))
    lines = [round(h.bounding_box()["height"]) for h in heads.all()]
    assert len(lines) == 2 and lines[0] < lines[1], lines  # the case this test is about
    tops = page.evaluate("""() => ['A', 'B'].map((k) =>
      document.querySelector(`.st-key-fig_${k} .nsewdrag`).getBoundingClientRect().top)""")
    assert len(tops) == 2 and abs(tops[0] - tops[1]) <= 1, tops
    assert_no_exception(page)


@pytest.mark.parametrize("path, squares, side", [
    ("/", 1, 0.6),
    ("/lessons", 1, 0.65),
    ("/explorer?n=4096&pattern=sliding_window&window=256&compare=1&b_pattern=local_global", 3, 0.6),
    ("/explorer?n=64&pattern=causal&compare=1&b_pattern=bigbird&b_window=8&labels=1", 3, 0.5),
    ("/explorer?n=1000&window=200&draw=blocks&kernel_block=64&compare=1&b_pattern=causal", 3, 0.5),
])
def test_a_square_matrix_in_a_narrow_column_leaves_no_blank_band(server, page, path, squares, side):
    # With a fixed figure height, a square as wide as a 260-pixel column left 270-390 px blank under it;
    # a colour bar beside took a third of the width (a 4,096-token square was 88 px of 274).
    page.set_viewport_size({"width": 1024, "height": 1200})
    page.goto(server + path)
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .nsewdrag').length >= {squares}",
                           timeout=60_000)
    wait_idle(page)
    page.wait_for_timeout(500)  # the chart follows its box's size on the next frame
    fits = page.evaluate(SQUARE_FIT_JS)
    assert len(fits) == squares, fits
    for fit in fits:
        assert fit["under"] <= 20 and fit["left"] <= 14 and fit["side"] >= side, fit
    assert_no_exception(page)


def test_garbage_url_params_warn_and_still_draw(server, page):
    page.goto(server + "/explorer?n=abc&pattern=nope&window=-5")
    info = wait_figure(page, lambda i: i["rows"] > 0, "a mask despite bad parameters")
    # The message text, without the alert's icon.
    warnings = page.locator('[data-testid="stAlertContentWarning"] [data-testid="stMarkdownContainer"]')
    texts = [t.strip() for t in warnings.all_inner_texts()]
    ignored = [t for t in texts if t.startswith("Ignored URL parameter")]
    assert ignored, f"no 'Ignored URL parameter' warning; warnings: {texts}"
    for key in ("n", "pattern", "window"):
        assert any(t.startswith(f"Ignored URL parameter {key}:") for t in ignored), (key, ignored)
    # Refused values leave the defaults in place.
    assert info["rows"] == 64 and info["cols"] == 64, info
    assert page.get_by_label("Sequence length N", exact=True).input_value() == "64"
    assert page.get_by_label("Window W", exact=True).input_value() == "8"
    assert_no_exception(page)
    screenshot(page, "explorer_garbage_params.png")


def test_kernel_blocks_view_shows_flex_blocks(server, page):
    # Independent count: query q of a causal window of 200 sees keys max(0, q - 199)..q; a 64 × 64 block
    # is full when all its pairs are allowed (and not cut short by N = 1,000), skipped when none is.
    n, w, block = 1000, 200, 64
    t = -(-n // block)
    allowed = [[0] * t for _ in range(t)]
    for q in range(n):
        lo, hi = max(0, q - w + 1), q + 1
        for j in range(lo // block, (hi - 1) // block + 1):
            allowed[q // block][j] += min(hi, (j + 1) * block) - max(lo, j * block)
    full = sum(a == block * block for row in allowed for a in row)
    touched = sum(a > 0 for row in allowed for a in row)

    page.goto(server + f"/explorer?n={n}&window={w}")
    wait_figure(page, lambda i: "N = 1,000 · cell" in i["title"], "the pair view's overview")
    page.get_by_text("Kernel blocks", exact=True).click()
    wait_url(page, {"draw": "blocks"})
    wait_idle(page)
    page.get_by_role("combobox", name="Block size (tokens)", exact=True).click()
    page.get_by_role("option", name="64", exact=True).click()
    info = wait_figure(page, lambda i: i["rows"] == t and i["cols"] == t, f"{t} × {t} blocks")
    assert info["nonzero"] == touched and info["nonzero"] - info["ones"] == full, info  # z: 0 / 1 partial / 2 full
    assert f"{full:,} full, {touched - full:,} partial, {t * t - touched:,} skipped" in info["title"], info["title"]
    wait_metric(page, "64×64 blocks run", f"{touched / (t * t):.1%}")
    wait_url(page, {"draw": "blocks", "kernel_block": "64"})
    assert page.get_by_label("Token labels from a sample sentence").is_disabled()
    # Hovering block (15, 14), in the last row (40 tokens: queries 960..999), names its centre and its count.
    square = page.locator(".st-key-fig_a .nsewdrag").bounding_box()
    page.mouse.move(square["x"] + square["width"] * 928 / n, square["y"] + square["height"] * 980 / n)
    page.wait_for_function("() => (document.querySelector('.hoverlayer') || {}).textContent?.includes('pairs allowed')")
    hover = page.evaluate("() => document.querySelector('.hoverlayer').textContent")
    assert "query 980, key 928" in hover and f"{allowed[t - 1][t - 2]:,} pairs allowed in it" in hover, hover
    assert_no_exception(page)
    screenshot(page, "explorer_kernel_blocks.png")
