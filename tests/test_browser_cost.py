"""End-to-end: Chromium drives the Serving Cost page of a live app.

Expected numbers are computed by hand from the published configs (see tests/test_kv.py),
not read back from the app's own functions.
"""

from __future__ import annotations

import re
import time

import pytest

from web import (
    WAIT_S,
    live_server,
    wait_idle,
    metric_value,
    wait_url,
    assert_no_exception,
    assert_clean,
    screenshot_tall,
)

pytestmark = pytest.mark.browser

# Title and traces (name, first and last y) of every plotly figure on the page.
FIGURES_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).map((g) => ({
  title: (g._fullLayout && g._fullLayout.title && g._fullLayout.title.text) || '',
  traces: (g._fullData || []).map((t) => ({name: t.name || '', y: Array.from(t.y || [])})),
}))
"""


@pytest.fixture(scope="module")
def server(chromium_path):
    yield from live_server("streamlit-server-cost.log")


METRIC_JS = """(label) => {
  for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
    const l = m.querySelector('[data-testid="stMetricLabel"]');
    if (l && l.innerText.trim() === label) return m.querySelector('[data-testid="stMetricValue"]').innerText.trim();
  }
  return null;
}"""


def metric_exact(page, label: str):
    """The value of the metric labelled exactly `label` ("KV cache" is also a prefix of "KV cache per token")."""
    return page.evaluate(METRIC_JS, label)


def wait_kv(page, expected: str) -> None:
    try:
        page.wait_for_function(f"(want) => ({METRIC_JS})('KV cache') === want", arg=expected, timeout=WAIT_S * 1000)
    except Exception:
        pytest.fail(f"metric 'KV cache' shows {metric_exact(page, 'KV cache')!r}, expected {expected!r}", pytrace=False)


def figures(page):
    return page.evaluate(FIGURES_JS)


def titled_figures(page, want: set[str]) -> dict:
    """The page's figures by title (line breaks and bold undone, the "(…)" tail dropped), once every
    title in `want` is drawn: an idle page can still be laying out its charts on a busy machine."""
    deadline = time.monotonic() + WAIT_S
    while True:
        figs = {re.sub("</?b>", "", f["title"].replace("<br>", " ")).split(" (")[0]: f for f in figures(page)}
        if set(figs) >= want or time.monotonic() > deadline:
            return figs
        page.wait_for_timeout(250)


def test_change_preset_and_context(server, page):
    page.goto(server + "/serving-cost")
    wait_kv(page, "512 MiB")  # Mistral 7B v0.1: 32 layers × 4096 tokens × 4 KiB
    wait_idle(page)
    assert metric_value(page, "KV cache per token") == "16 KiB"

    combo = page.get_by_role("combobox", name="Model", exact=True)
    combo.click()
    page.get_by_role("option", name="Llama 3.1 8B (full attention)", exact=True).click()
    wait_kv(page, "4 GiB")  # 32 × 32768 × 4 KiB
    wait_idle(page)

    # The context slider's thumb, moved by keyboard: 32k -> 48k -> 64k.
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Context length").get_by_role("slider")
    thumb.focus()
    thumb.press("ArrowRight")
    thumb.press("ArrowRight")
    wait_kv(page, "8 GiB")
    wait_idle(page)
    wait_url(page, {"model": "llama-3.1-8b", "ctx": "65536"})
    assert metric_value(page, "VRAM total") == "24 GiB"  # 16.06e9 B weights (14.96 GiB) + 8 GiB + 1 GiB

    # Titles as read: ui.plot breaks a long one into lines.
    want = {"VRAM vs context", "KV cache vs context", "FLOPs per generated token"}
    figs = titled_figures(page, want)
    assert set(figs) >= want, list(figs)
    vram = {t["name"]: t["y"] for t in figs["VRAM vs context"]["traces"]}
    # Capacities as the driver reports them, in GiB: 81,559 MiB and 143,771 MiB.
    assert vram["H100 80 GB"] == pytest.approx([81_559 / 1024] * 2) and vram["H200 141 GB"] == pytest.approx([143_771 / 1024] * 2)
    # Full attention has no cap: its KV curve ends at 1M tokens × 128 KiB = 128 GiB.
    kv_traces = {t["name"]: t["y"] for t in figs["KV cache vs context"]["traces"]}
    # Llama 3.1 8B has full attention in every layer: the legend says the two curves are one.
    assert kv_traces["full attention (same curve, under the next)"][-1] == pytest.approx(128.0)
    assert kv_traces["the model's own design = full attention"] == kv_traces[
        "full attention (same curve, under the next)"]
    assert page.locator('[data-testid="stDataFrame"]').count() == 1  # the fit table
    assert_clean(page)
    screenshot_tall(page, "serving_cost_llama_64k.png", 2600)


def test_shared_link_and_bad_values(server, page):
    page.goto(server + "/serving-cost?model=gemma-2-9b&ctx=8192&batch=2&overhead=0&design=own&kvdtype=fp8&batch=oops")
    # batch=oops is the last value of the repeated key: refused with a notice, the default 1 is used.
    wait_kv(page, "1,008 MiB")  # 21 × 8192 × 12288 × ½ B / 2^20
    wait_idle(page)
    warnings = page.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()
    assert any("Ignored URL parameter batch" in w for w in warnings), warnings
    assert any("batch is given 2 times ('2', 'oops'); the last one is used" in w for w in warnings), warnings
    assert "never exceed 50%" in page.inner_text("body")
    assert page.get_by_label("Batch (concurrent sequences)", exact=True).input_value() == "1"
    assert_no_exception(page)
