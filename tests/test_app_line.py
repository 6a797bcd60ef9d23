"""The line (ui.in_line) inside a real script run, through AppTest.

A page may wait in line more than once in one run (the window sweep without and then with sinks,
the masked and then the full maps). Each wait draws its own "Leave the line" button; two buttons
with one key in one run made Streamlit raise StreamlitDuplicateElementKey for a user who had to
wait twice (found in a browser: two tabs running sweeps at once).
"""

import re

from streamlit.testing.v1 import AppTest


def script_that_waits_twice():
    import threading
    import time

    import streamlit as st

    import ui

    queue = ui.job_queue()
    waits = []

    def hold(seconds, started):
        with queue.slot():
            started.set()
            time.sleep(seconds)

    def someone_else_holds(seconds):
        """Another user's job: holds the slot (or waits for it, FIFO) from another thread."""
        started = threading.Event()
        threading.Thread(target=hold, args=(seconds, started), daemon=True).start()
        return started

    someone_else_holds(1.0).wait(5)  # the first request has to wait

    def first_job():
        # While this job runs, another user joins the line: the second request waits behind them.
        joined = queue.waiting
        someone_else_holds(1.0)
        deadline = time.monotonic() + 5
        while queue.waiting == joined and time.monotonic() < deadline:
            time.sleep(0.01)
        return "first"

    original = queue.slot

    def slot(on_wait=None, **kwargs):  # count the waits the script's own requests saw
        def both(position):
            waits.append(position)
            if on_wait:
                on_wait(position)

        return original(on_wait=both, **kwargs)

    queue.slot = slot
    try:
        a = ui.in_line(first_job)
        after_first = len(waits)
        b = ui.in_line(lambda: "second")
    finally:
        del queue.slot
    st.write(f"{a} {b}: waited {after_first} then {len(waits) - after_first} times")


def test_two_waits_in_one_run_each_offer_leave():
    at = AppTest.from_function(script_that_waits_twice, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    found = re.fullmatch(r"first second: waited (\d+) then (\d+) times", at.markdown[-1].value)
    assert found, at.markdown[-1].value
    assert int(found[1]) >= 1 and int(found[2]) >= 1  # both requests really waited, so both drew the button
