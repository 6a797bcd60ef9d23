"""What the browser tests share: Chromium's path and flags, a live server, and helpers that read a
Streamlit page the way a user sees it. The fixtures (chromium_path, browser, page) are in conftest.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from server import REPO, streamlit_server

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
    title: (typeof t === 'string' ? t : (t.text || '')).replace(/<br>/g, ' '),  // as read: ui.plot breaks long titles
  };
}
"""


# Each square matrix's blank band under its square (or under its colour bar), and the slack left of
# its y axis title (a square narrowed by its height is centred, so the slack grows), in px.
SQUARE_FIT_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap((g) => {
  const d = g.querySelector('.nsewdrag'), a = g.getBoundingClientRect();
  if (!d || a.width === 0) return [];
  const b = d.getBoundingClientRect(), bar = g.querySelector('.colorbar');
  if (Math.abs(b.width - b.height) > 2) return [];
  const lowest = Math.max(b.bottom, bar ? bar.getBoundingClientRect().bottom : 0);
  return [{top: Math.round(b.top), side: b.width / a.width, under: Math.round(a.bottom - lowest),
           left: Math.round(g.querySelector('.ytitle').getBoundingClientRect().left - a.left)}];
})"""


def live_server(log_name: str):
    """Yield the base URL of a live app on a free port, logging to test-artifacts/<log_name>;
    the server is always terminated afterwards. Each browser test module wraps this in its own
    module-scoped `server` fixture, so modules do not overwrite each other's logs."""
    try:
        with streamlit_server(ARTIFACTS / log_name, timeout=WAIT_S) as base:
            yield base
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)



# Whether the page's width probe (ui.page_width_probe) has nothing left to report: it is not on the page
# (a run that stopped early), or its script has run and either sent nothing or the page's last run was
# drawn with what it sent. Until then a rerun is on its way. Its script loads after its element.
WIDTH_SETTLED_JS = """() => !document.querySelector('.st-key-_page_width_probe')
  || (window.__maskLabWidthHeld !== undefined && (window.__maskLabWidthSent === undefined
      || window.__maskLabWidthHeld === window.__maskLabWidthSent))"""


def wait_idle(page) -> None:
    """Wait until Streamlit's 'Running…' indicator is gone, and the rerun the width probe asks for on
    opening a page (or on a resize) has come and gone too."""
    status = page.locator('[data-testid="stStatusWidget"]').first
    status.wait_for(state="hidden", timeout=WAIT_S * 1000)
    if not page.evaluate(WIDTH_SETTLED_JS):
        try:  # bounded: a run that stops early (st.stop) never mounts the probe to say it has the width
            page.wait_for_function(WIDTH_SETTLED_JS, timeout=20_000)
        except Exception:
            pass
        status.wait_for(state="hidden", timeout=WAIT_S * 1000)
        page.wait_for_timeout(1000)  # the rerun's figures (titles wrapped anew) are laid out a frame or two later


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


def wait_input(page, label: str, expected: str) -> None:
    """Wait until the input labelled `label` holds `expected`: under load the box is drawn before the
    rerun that corrects it, so one read can see the old value. A box that stays wrong still fails."""
    deadline = time.monotonic() + WAIT_S
    got = None
    while time.monotonic() < deadline:
        got = page.get_by_label(label, exact=True).input_value()
        if got == expected:
            return
        page.wait_for_timeout(250)
    pytest.fail(f"input {label!r} holds {got!r}, expected {expected!r}", pytrace=False)


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


def assert_no_dialog(page) -> None:
    dialogs = page.locator('[role="dialog"]')
    assert dialogs.count() == 0, f"unexpected dialog: {dialogs.all_inner_texts()}"


def assert_clean(page) -> None:
    assert_no_exception(page)
    assert_no_dialog(page)


def screenshot_tall(page, name: str, height: int = 2000) -> None:
    """Streamlit scrolls inside its main container, so full_page stops at the viewport: grow it first."""
    page.set_viewport_size({"width": 1400, "height": height})
    page.wait_for_timeout(500)  # let the charts lay out again
    screenshot(page, name)
