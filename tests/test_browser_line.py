"""The line for the model, seen from several browsers at once: a waiting user sees their place, can leave,
a closed tab's request leaves the line by itself, and a closed tab's running sweep stops at its next step
(so nobody waits behind an abandoned job)."""

from __future__ import annotations

import pytest

from web import live_server, screenshot_tall

pytestmark = pytest.mark.browser
MODEL_WAIT_MS = 300_000
# A long job to hold the line: perplexity of 2,048 tokens under 11 masks (several seconds per forward on CPU).
LONG_JOB = "/model?doc=contract&tokens=2048&view=Window+sweep"


def maps_url(window: int) -> str:
    return f"/model?doc=story&tokens=64&pattern=sliding_window&window={window}&view=Attention+maps"


@pytest.fixture(scope="module")
def server(chromium_path):
    yield from live_server("streamlit-server-line.log")


def open_tab(browser, url):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = ctx.new_page()
    page.set_default_timeout(MODEL_WAIT_MS)
    page.goto(url)
    return ctx, page


def wait_place(page, place: int) -> None:
    page.get_by_text(f"you are number {place} in line").wait_for(timeout=MODEL_WAIT_MS)


def test_place_in_line_leave_and_abandon(server, browser):
    holder_ctx, holder = open_tab(browser, server + LONG_JOB)
    tabs = [holder_ctx]
    try:
        holder.get_by_role("button", name="Run the sweep").click()
        holder.get_by_text("Sliding window:").first.wait_for()  # the sweep's progress: it holds the line

        b_ctx, b = open_tab(browser, server + maps_url(7))
        tabs.append(b_ctx)
        wait_place(b, 1)
        c_ctx, c = open_tab(browser, server + maps_url(9))
        tabs.append(c_ctx)
        wait_place(c, 2)
        assert b.get_by_role("button", name="Leave the line").is_visible()

        b_ctx.close()  # B closes the tab: its request leaves the line, and C moves up
        tabs.remove(b_ctx)
        wait_place(c, 1)

        d_ctx, d = open_tab(browser, server + maps_url(11))
        tabs.append(d_ctx)
        wait_place(d, 2)
        screenshot_tall(c, "model-in-line.png", 1000)
        c.get_by_role("button", name="Leave the line").click()  # C leaves on purpose: D moves up
        c.get_by_text("You left the line").wait_for()
        wait_place(d, 1)
        assert c.get_by_role("button", name="Join the line again").is_visible()

        # The sweep's owner closes the tab: the sweep stops at its next step (its session is gone), the line
        # moves, and D gets its maps; C, having left, asked for nothing.
        holder_ctx.close()
        tabs.remove(holder_ctx)
        d.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=MODEL_WAIT_MS)
        assert c.locator(".js-plotly-plot").count() == 0
        assert d.locator('[data-testid="stException"]').count() == 0
    finally:
        for ctx in tabs:
            ctx.close()
