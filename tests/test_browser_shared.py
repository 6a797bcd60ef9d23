"""End-to-end: a shared link opens the Lessons and Benchmark pages exactly as it was shared."""

from __future__ import annotations

import time

import pytest

from web import WAIT_S, live_server, wait_idle, wait_url, assert_clean, screenshot_tall

pytestmark = pytest.mark.browser

FIGS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map((g) => ({
  title: (g._fullLayout && g._fullLayout.title && g._fullLayout.title.text) || '',
  names: (g._fullData || []).map((t) => t.name || '')}))"""


@pytest.fixture(scope="module")
def server(chromium_path):
    yield from live_server("streamlit-server-shared.log")


def test_lesson_link_opens_the_same_step_and_settings(server, page):
    page.goto(server + "/lessons?lesson=sliding-window&step=5&window=8&layers=3")
    page.get_by_role("heading", name="Information travels one window per layer").wait_for(timeout=WAIT_S * 1000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=WAIT_S * 1000)
    wait_idle(page)
    # The progress bar's words can come after its figures on a loaded machine (a fresh two-worker run
    # counted none at the first idle), so wait for them, then check there is exactly one.
    step = page.get_by_text("Step 5 of 6")
    step.first.wait_for(timeout=WAIT_S * 1000)
    assert step.count() == 1
    sliders = page.locator('[data-testid="stSlider"]')
    window = sliders.filter(has_text="Window W").get_by_role("slider")
    layers = sliders.filter(has_text="Layers L").get_by_role("slider")
    assert window.get_attribute("aria-valuetext") == "8" and layers.get_attribute("aria-valuetext") == "3"
    titles = [f["title"] for f in page.evaluate(FIGS_JS)]
    assert any("W = 8" in t for t in titles), titles
    # After 3 layers of an 8-token window the last of 48 tokens draws on min(48, 3·7 + 1) = 22 tokens.
    assert "draws on 22 tokens" in page.inner_text("body")
    wait_url(page, {"lesson": "sliding-window", "step": "5", "window": "8", "layers": "3"})
    # The link to the full page carries the step's settings in its address (copyable, opens in a new tab).
    href = page.locator("a", has_text="with these settings").first.get_attribute("href")
    assert href.startswith("receptive-field?") and "window=8" in href and "layers=3" in href, href
    assert_clean(page)


def test_a_guess_typed_without_enter_stays_in_its_box(server, page):
    # A student types a guess and clicks Reveal straight away: the box keeps the guess, and it is graded
    # against 131,072² = 17,179,869,184 pairs.
    page.goto(server + "/lessons?lesson=sliding-window&step=1")
    box = page.locator('[data-testid="stTextInput"] input').first
    box.wait_for(timeout=WAIT_S * 1000)
    wait_idle(page)
    box.click()
    box.press_sequentially("10000")
    page.get_by_role("button", name="Reveal the answer").first.click()
    page.get_by_text("Answer: 17,179,869,184", exact=False).wait_for(timeout=WAIT_S * 1000)
    wait_idle(page)
    assert box.is_disabled() and box.input_value() == "10000"
    assert_clean(page)


def test_benchmark_link_opens_the_same_run_settings(server, page):
    page.goto(server + "/benchmark?ns=256,512&heads=2&kvh=1&hd=32&backends=flex,sdpa_mask&pattern=sliding_window&window=64")
    page.get_by_role("heading", name="Benchmark").wait_for(timeout=WAIT_S * 1000)
    page.get_by_text("2 sizes × 2 backends").wait_for(timeout=WAIT_S * 1000)
    page.wait_for_function("() => { const e = document.querySelector(`input[aria-label='Window W']`); "
                           "return e && e.value === '64'; }", timeout=WAIT_S * 1000)
    wait_idle(page)
    assert page.get_by_label("Window W", exact=True).input_value() == "64"
    assert page.get_by_label("Query heads", exact=True).input_value() == "2"
    assert page.get_by_label("KV heads", exact=True).input_value() == "1"
    body = page.inner_text("body")
    assert "2 sizes × 2 backends" in body and "2 heads (1 KV), head dim 32" in body, body[:2000]
    page.get_by_role("button", name="Run the benchmark").click()
    # Recorded runs below carry the same heading; wait for the live run's own table.
    page.get_by_text("Largest N each backend ran (this run)").wait_for(timeout=300_000)
    wait_idle(page)
    # Plotly lays out a figure's title after Streamlit reports the rerun done, so poll for it.
    time_fig, figs, deadline = None, [], time.monotonic() + WAIT_S
    while time_fig is None and time.monotonic() < deadline:
        figs = page.evaluate(FIGS_JS)
        time_fig = next((f for f in figs if "Kernel time vs N" in f["title"]), None)  # the live run comes first
        if time_fig is None:
            page.wait_for_timeout(250)
    assert time_fig is not None, figs
    assert sorted(n.split(" ")[0] for n in time_fig["names"]) == ["flex", "sdpa_mask"], time_fig
    wait_url(page, {"ns": "256,512", "backends": "flex,sdpa_mask", "window": "64"})
    assert_clean(page)
    screenshot_tall(page, "benchmark_shared.png", 2200)


def test_a_recorded_run_draws_its_figures_once_opened(server, page):
    # Closed recorded runs build nothing (each change on the page took ~1.3 s when they did); a click
    # on one reruns the page and draws that run's three figures, labelled with its device.
    page.goto(server + "/benchmark")
    page.get_by_role("heading", name="Recorded runs").wait_for(timeout=WAIT_S * 1000)
    wait_idle(page)
    assert [f for f in page.evaluate(FIGS_JS) if "EPYC" in f["title"]] == []
    page.locator('[data-testid="stExpander"] summary', has_text="kernels_cpu.json:").click()
    page.get_by_text("Largest N each backend ran (recorded, kernels_cpu.json)").wait_for(timeout=WAIT_S * 1000)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:  # Plotly lays the titles out after the rerun's last element
        titles = [f["title"] for f in page.evaluate(FIGS_JS) if "EPYC" in f["title"]]
        if len(titles) == 3:
            break
        page.wait_for_timeout(250)
    assert [t.removeprefix("<b>").split(" ")[0] for t in titles] == ["Kernel", "Useful", "Peak"], titles
    wait_idle(page)
    assert_clean(page)
    screenshot_tall(page, "benchmark_recorded_open.png", 1800)
