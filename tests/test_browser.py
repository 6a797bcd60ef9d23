"""End-to-end: Debian Chromium (via Playwright) drives a live `streamlit run app.py`.

Skipped when /usr/bin/chromium is missing, unless REQUIRE_BROWSER=1 (then it fails).
Screenshots go to test-artifacts/ (git-ignored), with the server log.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server import REPO, streamlit_server  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"
WAIT_S = 60.0

# Independent reference: a causal sliding window of W keys lets query q see min(q + 1, W) keys.
SW_N, SW_W = 16, 4
SW_ALLOWED = sum(min(q + 1, SW_W) for q in range(SW_N))  # 58
BIG_N = 131072

# Summary of a Plotly figure: the one in the element container of Streamlit key `key` (the page
# draws the single-pattern mask with key="fig_a"), else the first figure on the page. z may arrive as nested arrays, as an array of
# typed rows (plotly's decoded _fullData), or as plotly's base64 spec {dtype, bdata, shape}.
FIGURE_JS = """
(key) => {
  const plots = document.querySelectorAll('.js-plotly-plot');
  const g = document.querySelector(`.st-key-${key} .js-plotly-plot`) || plots[0];
  if (!g) return null;
  const DT = {i1: Int8Array, u1: Uint8Array, i2: Int16Array, u2: Uint16Array,
              i4: Int32Array, u4: Uint32Array, f4: Float32Array, f8: Float64Array};
  const isArr = (a) => Array.isArray(a) || ArrayBuffer.isView(a);
  function rowsOf(z) {
    if (z == null) return null;
    let flat = null, shape = null;
    if (isArr(z)) {
      if (z.length === 0) return [];
      if (isArr(z[0])) return Array.from(z, (r) => Array.from(r));
      flat = z;
    } else if (typeof z === 'object' && typeof z.bdata === 'string' && DT[z.dtype]) {
      const bin = atob(z.bdata);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      flat = new DT[z.dtype](bytes.buffer);
      shape = String(z.shape || flat.length).split(',').map((s) => parseInt(s.trim(), 10));
    } else {
      return null;
    }
    if (!shape || shape.length < 2) return [Array.from(flat)];
    const [r, c] = shape, out = [];
    for (let i = 0; i < r; i++) out.push(Array.from(flat.subarray(i * c, (i + 1) * c)));
    return out;
  }
  const full = g._fullData && g._fullData[0];
  const type = (full && full.type) || (g.data && g.data[0] && g.data[0].type) || '';
  const data = g.data && g.data[0];
  let rows = full ? rowsOf(full.z) : null;
  if (!rows && data) rows = rowsOf(data.z);
  if (!rows) return null;
  let ones = 0, nonzero = 0, widths = new Set();
  const col0 = [];
  for (const r of rows) {
    widths.add(r.length);
    col0.push(r.length ? r[0] : null);
    for (const v of r) { if (v === 1) ones++; if (v !== 0) nonzero++; }
  }
  const t = (g.layout && g.layout.title) || (g._fullLayout && g._fullLayout.title) || '';
  return {
    count: plots.length,
    type: type,
    rows: rows.length,
    cols: widths.size === 1 ? [...widths][0] : -1,
    ones: ones,
    nonzero: nonzero,
    col0: col0,
    title: typeof t === 'string' ? t : (t.text || ''),
  };
}
"""


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        msg = f"Chromium not found at {CHROMIUM}; install Debian's 'chromium' package (make browser)."
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but " + msg, pytrace=False)
        pytest.skip(msg)
    return str(CHROMIUM)


def live_server(log_name: str):
    """Yield the base URL of a live app on a free port, logging to test-artifacts/<log_name>;
    the server is always terminated afterwards. Each browser test module wraps this in its own
    module-scoped `server` fixture, so modules do not overwrite each other's logs."""
    try:
        with streamlit_server(ARTIFACTS / log_name, timeout=WAIT_S) as base:
            yield base
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def server(chromium_path):
    yield from live_server("streamlit-server.log")


@pytest.fixture(scope="module")
def browser(chromium_path):
    if os.environ.get("REQUIRE_BROWSER") == "1":
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1500})
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT_S * 1000)
    pg.page_errors = []
    pg.on("pageerror", lambda e: pg.page_errors.append(str(e)))
    try:
        yield pg
    finally:
        ctx.close()


# ---------------------------------------------------------------- helpers


def wait_idle(page) -> None:
    """Wait until Streamlit's 'Running…' indicator is gone."""
    page.locator('[data-testid="stStatusWidget"]').first.wait_for(state="hidden", timeout=WAIT_S * 1000)


def wait_figure(page, check, what: str, key: str = "fig_a") -> dict:
    """Poll the mask figure's data until check(info) holds; returns the info."""
    deadline = time.monotonic() + WAIT_S
    info = None
    while time.monotonic() < deadline:
        info = page.evaluate(FIGURE_JS, key)
        if info is not None and check(info):
            wait_idle(page)
            # The run is over: read again so that what we assert on is the final figure.
            info = page.evaluate(FIGURE_JS, key)
            if info is not None and check(info):
                return info
        page.wait_for_timeout(250)
    summary = None if info is None else {k: v for k, v in info.items() if k != "col0"}
    pytest.fail(f"figure never showed {what} within {WAIT_S:.0f} s; last seen: {summary}", pytrace=False)


def metric_value(page, label: str) -> str:
    m = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return m.locator('[data-testid="stMetricValue"]').inner_text().strip()


def wait_metric(page, label: str, expected: str) -> None:
    deadline = time.monotonic() + WAIT_S
    got = None
    while time.monotonic() < deadline:
        try:
            got = metric_value(page, label)
        except Exception:  # not rendered yet
            got = None
        if got == expected:
            return
        page.wait_for_timeout(250)
    pytest.fail(f"metric {label!r} shows {got!r}, expected {expected!r}", pytrace=False)


def wait_url(page, params: dict[str, str]) -> None:
    """Wait until the page's query string holds these parameters."""
    js = "(want) => { const q = new URLSearchParams(location.search); return Object.entries(want).every(([k, v]) => q.get(k) === v); }"
    try:
        page.wait_for_function(js, arg=params)
    except Exception:
        pytest.fail(f"URL {page.url} never got {params}", pytrace=False)


def type_number(page, label: str, value: int) -> None:
    """Type into a sidebar number input the way a user does: select all, type, Enter."""
    box = page.get_by_label(label, exact=True)
    box.click()
    box.press("ControlOrMeta+a")
    box.press_sequentially(str(value))
    box.press("Enter")


def choose_pattern(page, title: str, label: str = "Pattern") -> None:
    combo = page.get_by_role("combobox", name=label, exact=True)
    combo.click()
    page.get_by_role("option", name=title, exact=True).click()
    page.wait_for_function(
        "([l, t]) => { const e = document.querySelector(`input[aria-label='${l}']`); return e && e.value === t; }",
        arg=[label, title],
    )


def assert_no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator('[data-testid="stException"]').first.inner_text()
    assert not page.page_errors, f"JavaScript errors on the page: {page.page_errors}"


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


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
