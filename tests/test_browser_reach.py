"""End-to-end: Debian Chromium (via Playwright) drives the Receptive Field page of a live app.

Uses the Chromium fixtures of conftest.py and the helpers of web.py; only the server fixture
is our own, so that its log does not overwrite the explorer tests' log. Screenshots go to test-artifacts/.

Expected values come from the analytic reach of a causal sliding window, not from the app:
after l layers token q draws on min(q + 1, l·(W − 1) + 1) tokens.
"""

from __future__ import annotations

import time

import pytest

from web import (
    wait_input,
    WAIT_S,
    live_server,
    wait_idle,
    metric_value,
    wait_metric,
    wait_url,
    type_number,
    screenshot,
    assert_no_dialog,
    assert_clean,
    screenshot_tall,
)

pytestmark = pytest.mark.browser

SLIDER = "Show the reach after layer"
LAYERS_INPUT = "Number of layers L"

# y of trace 0 of the first line chart (the reach-vs-layer figure). y may arrive as a plain
# array, a typed array, or plotly's base64 spec {dtype, bdata}.
REACH_Y_JS = """
() => {
  const DT = {i1: Int8Array, u1: Uint8Array, i2: Int16Array, u2: Uint16Array,
              i4: Int32Array, u4: Uint32Array, f4: Float32Array, f8: Float64Array};
  function arr(y) {
    if (y == null) return null;
    if (Array.isArray(y) || ArrayBuffer.isView(y)) return Array.from(y);
    if (typeof y === 'object' && typeof y.bdata === 'string' && DT[y.dtype]) {
      const bin = atob(y.bdata);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return Array.from(new DT[y.dtype](bytes.buffer));
    }
    return null;
  }
  for (const g of document.querySelectorAll('.js-plotly-plot')) {
    const full = g._fullData && g._fullData[0];
    const data = g.data && g.data[0];
    const type = (full && full.type) || (data && data.type);
    if (type !== 'scatter') continue;
    return {name: (full && full.name) || (data && data.name) || '',
            y: (full && arr(full.y)) || (data && arr(data.y))};
  }
  return null;
}
"""


def sw_reach(q: int, layer: int, window: int) -> int:
    return min(q + 1, layer * (window - 1) + 1)


@pytest.fixture(scope="module")
def server(chromium_path):
    """Base URL of a fresh live app (own log file); the server is always terminated afterwards.

    No warm-up visit: the first test deep-links into /receptive-field on a server no session
    has touched yet, which is when a stray pages/ folder used to produce a "Page not found" dialog.
    """
    yield from live_server("streamlit-server-reach.log")


# ---------------------------------------------------------------- helpers


def wait_metric_label(page, prefix: str, expected_label: str) -> None:
    """Wait until the one metric whose label starts with `prefix` has exactly `expected_label`."""
    js = """([prefix, want]) => {
      const labels = Array.from(document.querySelectorAll('[data-testid="stMetricLabel"]'))
        .map((e) => e.innerText.trim()).filter((t) => t.startsWith(prefix));
      return labels.length === 1 && labels[0] === want;
    }"""
    try:
        page.wait_for_function(js, arg=[prefix, expected_label], timeout=WAIT_S * 1000)
    except Exception:
        labels = page.locator('[data-testid="stMetricLabel"]').all_inner_texts()
        pytest.fail(f"no single metric labelled {expected_label!r}; labels: {labels}", pytrace=False)


def wait_reach_y(page, expected: list[int]) -> dict:
    deadline = time.monotonic() + WAIT_S
    info = None
    while time.monotonic() < deadline:
        info = page.evaluate(REACH_Y_JS)
        if info is not None and info["y"] == expected:
            return info
        page.wait_for_timeout(250)
    pytest.fail(f"reach chart trace 0 never showed {expected}; last seen: {info}", pytrace=False)


def alert_texts(page, kind: str) -> list[str]:
    """Message texts of st.warning / st.error boxes (kind 'Warning' or 'Error'), icon excluded."""
    box = page.locator(f'[data-testid="stAlertContent{kind}"] [data-testid="stMarkdownContainer"]')
    return [t.strip() for t in box.all_inner_texts()]


# ---------------------------------------------------------------- tests

SW_N, SW_W, SW_L, SW_Q = 64, 4, 8, 63


def test_sliding_window_reach_follows_the_slider(server, page):
    # First visit of a fresh server, straight to the page: must open it without a "Page not found" dialog.
    page.goto(
        server + f"/receptive-field?n={SW_N}&stack=pattern&pattern=sliding_window&window={SW_W}"
        f"&layers={SW_L}&token={SW_Q}&layer=2"
    )
    wait_metric(page, "Reach after layer 2", f"{sw_reach(SW_Q, 2, SW_W)} tokens")  # 7
    wait_idle(page)
    wait_metric_label(page, "Reach after layer", "Reach after layer 2")
    assert_no_dialog(page)  # a modal would also swallow the key presses below
    # The URL seeded the sidebar.
    assert page.get_by_label("Sequence length N", exact=True).input_value() == str(SW_N)
    assert page.get_by_label("Window W", exact=True).input_value() == str(SW_W)
    assert page.get_by_label(LAYERS_INPUT, exact=True).input_value() == str(SW_L)
    assert page.get_by_label("Token to trace", exact=True).input_value() == str(SW_Q)
    expected_y = [min(SW_N, sw_reach(SW_Q, l, SW_W)) for l in range(1, SW_L + 1)]  # 4, 7, ..., 25
    info = wait_reach_y(page, expected_y)
    assert "reach" in info["name"].lower(), info
    # 8·3+1 = 25 < 64: the whole past of token 63 is never reached within 8 layers.
    assert metric_value(page, "Whole context reached at") == "not within 8"

    # Move the slider as a user would: focus its thumb and press the arrow key three times.
    # (Streamlit 1.67's slider thumb is an <input type=range>: its slider role is implicit, so
    # a [role="slider"] attribute selector misses it, and its accessible name repeats the label.)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=SLIDER).get_by_role("slider")
    assert thumb.get_attribute("aria-valuetext") == "2"
    thumb.focus()
    for _ in range(3):
        thumb.press("ArrowRight")
    page.wait_for_function(
        "(name) => { const e = document.querySelector(`[data-testid='stSlider'] input[aria-label='${name}']`);"
        " return e && e.value === '5'; }",
        arg=SLIDER,
    )
    wait_metric(page, "Reach after layer 5", f"{sw_reach(SW_Q, 5, SW_W)} tokens")  # 16
    wait_idle(page)
    wait_metric_label(page, "Reach after layer", "Reach after layer 5")
    assert metric_value(page, "Reach after layer 5") == "16 tokens"
    # Positions 63 − 15 .. 63, one run; the share is 16 of the 64 tokens 0..63.
    summary = page.get_by_text("After layer 5", exact=True).locator("xpath=ancestor::p[1]")
    assert "can draw on positions 48–63 (1 interval)" in summary.inner_text(), summary.inner_text()
    assert metric_value(page, "Share of its context") == "25%"  # 16 of 64, three significant digits (ui.share)
    # The slider selects a view, not the stack: the growth curve is unchanged, and the URL follows.
    assert wait_reach_y(page, expected_y)["y"] == expected_y
    wait_url(page, {"layer": "5", "layers": str(SW_L), "token": str(SW_Q), "window": str(SW_W)})
    assert_clean(page)
    screenshot_tall(page, "reach_sw4.png")


def test_gemma2_stack_reaches_whole_context_at_layer_two(server, page):
    n, token = 131072, 131071
    page.goto(server + f"/receptive-field?n={n}&stack=gemma-2-9b&layers=42&token={token}&layer=1")
    # Layer 1 is a 4096-token sliding window; layer 2 is full causal attention.
    wait_metric(page, "Reach after layer 1", "4,096 tokens")
    wait_idle(page)
    wait_metric(page, "Whole context reached at", "layer 2")
    assert metric_value(page, "Reach after layer 1") == "4,096 tokens"
    assert metric_value(page, "Share of its context") == "3.12%"  # 4,096 of 131,072 = 3.125%, three significant digits
    assert page.get_by_role("combobox", name="Rule in each layer", exact=True).input_value().startswith("Gemma 2 9B")
    assert page.get_by_label(LAYERS_INPUT, exact=True).input_value() == "42"
    info = wait_reach_y(page, [4096] + [n] * 41)
    assert len(info["y"]) == 42
    assert_clean(page)
    screenshot_tall(page, "reach_gemma2.png")


def test_bidirectional_link_and_model_stack_link(server, page):
    # Full attention from token 10 of 64: all 64 positions at layer 1, 100% of an all-N context.
    page.goto(server + "/receptive-field?pattern=full&n=64&token=10&layer=1&layers=4")
    wait_metric(page, "Reach after layer 1", "64 tokens")
    wait_idle(page)
    assert metric_value(page, "Share of its context") == "100%"
    assert metric_value(page, "Whole context reached at") == "layer 1"
    assert wait_reach_y(page, [64] * 4)["y"] == [64] * 4
    assert_clean(page)
    # A link naming Mistral 7B opens at its 32 layers and an N its 4,096-token windows need.
    page.goto(server + "/receptive-field?stack=mistral-7b-v0.1")
    wait_metric(page, "Whole context reached at", "layer 9")  # 9·4095 + 1 >= 32,768 > 8·4095 + 1
    wait_idle(page)
    assert page.get_by_label("Sequence length N", exact=True).input_value() == "32768"
    assert page.get_by_label(LAYERS_INPUT, exact=True).input_value() == "32"
    assert metric_value(page, "Reach after layer 2") == f"{2 * 4095 + 1:,} tokens"
    assert_clean(page)


def test_bad_url_params_and_zero_layers(server, page):
    page.goto(server + "/receptive-field?layers=0&token=-3&stack=bogus")
    page.locator('[data-testid="stMetric"]').first.wait_for()
    wait_idle(page)
    warnings = alert_texts(page, "Warning")
    ignored = [t for t in warnings if t.startswith("Ignored URL parameter")]
    for key in ("layers", "token", "stack"):
        assert any(t.startswith(f"Ignored URL parameter {key}:") for t in ignored), (key, warnings)
    # Refused values leave the defaults in place and the page still computes.
    # Under load both boxes were read at 0 before the run that refuses the URL's values had redrawn them.
    wait_input(page, LAYERS_INPUT, "8")
    wait_input(page, "Token to trace", "255")  # the token follows N: the last of 256
    assert page.get_by_role("combobox", name="Rule in each layer", exact=True).input_value() == "One pattern in every layer"
    assert_clean(page)

    type_number(page, LAYERS_INPUT, 0)
    deadline = time.monotonic() + WAIT_S
    errors: list[str] = []
    while time.monotonic() < deadline:
        errors = alert_texts(page, "Error")
        if any("between 1 and 64" in t for t in errors):
            break
        page.wait_for_timeout(250)
    else:
        pytest.fail(f"no 'between 1 and 64' error after typing 0 layers; errors: {errors}", pytrace=False)
    wait_idle(page)
    assert page.get_by_label(LAYERS_INPUT, exact=True).input_value() == "0"
    # The page stops at the error: no stale reach numbers below it.
    assert page.locator('[data-testid="stMetric"]').count() == 0
    assert_clean(page)
    screenshot(page, "reach_bad_input.png")


# Each Plotly figure's title as drawn: its lines, and how far the widest runs past the figure's right edge (px).
TITLE_LINES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map((g) => {
  const t = g.querySelector('.gtitle'), box = g.getBoundingClientRect();
  if (!t) return null;
  const lines = Array.from(t.querySelectorAll('tspan.line'), (l) => l.textContent);
  return {lines: lines.length ? lines : [t.textContent], over: Math.round(t.getBoundingClientRect().right - box.right)};
})"""
REACH_TITLE = "Tokens that can influence token 255, after each layer"


def wait_reach_title(page, check, what: str) -> dict:
    """Poll the reach chart's title as drawn until check(its lines) holds."""
    deadline = time.monotonic() + WAIT_S
    seen = None
    while time.monotonic() < deadline:
        seen = next((t for t in page.evaluate(TITLE_LINES_JS) if t and " ".join(t["lines"]) == REACH_TITLE), None)
        if seen and check(seen["lines"]):
            return seen
        page.wait_for_timeout(250)
    pytest.fail(f"the reach chart's title never {what}; last seen: {seen}", pytrace=False)


def test_titles_wrap_at_the_measured_column_and_follow_a_resize(server, page):
    """The browser reports the page's width (ui.page_width_probe), so a half-column chart's title wraps
    where its column ends. At 1,400 px a half column is 462 px (445 once a container's padding is
    allowed for): at 0.45 em a character of 16.8-px type (7.6 px), "Tokens that can influence token
    255, after each layer" (54 characters) needs two lines, where wrapping for the narrowest column
    (260 px) gave three. A 660-px window leaves about 306 px, so the title is wrapped anew. Every line
    stays inside its figure, and the page settles: the probe reruns it once, not in a loop."""
    frames = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: frames.append(time.monotonic())))
    page.goto(f"{server}/receptive-field")
    wide = wait_reach_title(page, lambda lines: len(lines) == 2, "took two lines")
    assert wide["over"] <= 0, wide
    # The toolbar a pointer brings up sits right of the first line, not over it.
    chart = page.locator(".js-plotly-plot").first
    chart.hover()
    page.wait_for_timeout(300)
    clear = page.evaluate("""() => { const g = document.querySelector('.js-plotly-plot');
      const bar = g.querySelector('.modebar').getBoundingClientRect(), first = g.querySelector('.gtitle tspan.line');
      return [Math.round(first.getBoundingClientRect().right), Math.round(bar.left), bar.width]; }""")
    assert clear[2] > 0 and clear[0] < clear[1], f"first title line ends at {clear[0]} px, the toolbar starts at {clear[1]}"
    wait_idle(page)
    page.wait_for_timeout(1500)
    settled = len(frames)
    assert settled > 0, "no messages to the server were seen: the loop check below would see nothing"
    page.wait_for_timeout(4000)
    assert len(frames) == settled, f"the page kept sending to the server: {len(frames) - settled} messages in 4 s"
    page.set_viewport_size({"width": 660, "height": 1500})
    narrow = wait_reach_title(page, lambda lines: lines != wide["lines"], "was wrapped anew")
    assert narrow["over"] <= 0, narrow
    assert_clean(page)
    screenshot(page, "reach_title_660.png")
