"""Every page has a "Share this view" expander whose link carries the page's own settings."""

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP, PAGES = ROOT / "app.py", ROOT / "app_pages"


@pytest.mark.parametrize("script, query, expected", [
    ("home.py", {"w": "6", "layers": "3"}, {"w": "6", "layers": "3"}),
    ("lessons.py", {"lesson": "big-picture", "step": "2"}, {"lesson": "big-picture", "step": "2"}),
    ("mask_explorer.py", {"pattern": "band", "window": "8", "n": "64"}, {"pattern": "band", "window": "8", "n": "64"}),
    ("receptive_field.py", {"n": "128", "layers": "4"}, {"n": "128", "layers": "4"}),
    ("model_attention.py", {"doc": "story", "tokens": "16", "window": "8"}, {"doc": "story", "window": "8"}),
    ("benchmark.py", {"ns": "256,512", "heads": "2"}, {"ns": "256,512", "heads": "2"}),
    ("serving_cost.py", {"model": "gemma-2-9b", "ctx": "8192"}, {"model": "gemma-2-9b", "ctx": "8192"}),
])
def test_every_page_shares_its_view(script, query, expected):
    # Home and Lessons link to other pages, which needs the app's navigation; before its first run AppTest
    # finds a page by file name, which is the url path of these two. The others run on their own.
    if script in ("home.py", "lessons.py"):
        at = AppTest.from_file(str(APP), default_timeout=300)
        at.query_params.update(query | {"present": "1"})
        if script != "home.py":
            at.switch_page(str(PAGES / script))
    else:
        at = AppTest.from_file(str(PAGES / script), default_timeout=300)
        at.query_params.update(query)
        at.session_state["present"] = True
    at.run()
    assert not at.exception
    share = [e for e in at.expander if e.label in ("Share this view", "Share and download")]
    assert len(share) == 1, [e.label for e in at.expander]
    link = share[0].code[0].value
    got = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert expected.items() <= got.items(), got
    assert got.get("present") == "1"  # the presenter view travels with the link


def test_a_links_notices_outlive_the_width_probes_rerun_and_go_when_the_user_acts():
    # The browser's width report (ui.page_width_probe) reruns a page once it is drawn. AppTest has no
    # browser, so its callback's flag is set by hand; the run after it must still show what was wrong
    # with the link, and the next run (a user's act) must not. Also checks that the rerun keeps the
    # link's settings.
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.query_params.update({"w": "zz", "layers": "3"})
    at.run()
    notices = [w.value for w in at.warning if "Ignored URL parameter" in w.value]
    assert len(notices) == 1 and "w" in notices[0], [w.value for w in at.warning]
    at.session_state["_probe_rerun"] = True  # what ui._width_reported leaves for the next run
    at.run()
    assert [w.value for w in at.warning if "Ignored URL parameter" in w.value] == notices
    assert at.slider(key="layers").value == 3
    at.run()
    assert not [w.value for w in at.warning if "Ignored URL parameter" in w.value]
    assert at.slider(key="layers").value == 3 and not at.exception
