"""Lessons page through AppTest: every lesson walked from its first step to its last, every question
answered and revealed against the library's value, the links, URL state and bad links.

The page runs inside app.py (navigation registered), so its links to the other pages resolve."""

import re
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from streamlit.testing.v1 import AppTest

import ui
from attn import lessons

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
PAGE = ROOT / "app_pages" / "lessons.py"


def title_words(chart) -> str:
    """A chart's title as read: ui.plot breaks a long title into lines (fit_title)."""
    import json

    return json.loads(chart.proto.spec)["layout"]["title"]["text"].replace("<br>", " ")


def open_lessons(**query):
    # Before its first run AppTest finds a page by file name; the Lessons page's url_path is its file name,
    # so the first run is a fresh visit to /lessons?… with these parameters.
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update(query)
    at.switch_page(str(PAGE))
    return at.run()


def shown_values(at, lesson, k):
    step = lesson.steps[k - 1]
    return {c.name: at.session_state[f"lsn.{lesson.id}.{k}.{c.name}"] for c in step.controls}


def revealed(at) -> str:
    return " ".join(e.value for e in [*at.success, *at.error])


def wrong_guess(q: lessons.Question):
    if q.kind == "choice":
        return next(c for c in q.choices if c != lessons.answer(q))
    return str(lessons.answer(q) * 3 + 7)


@pytest.mark.parametrize("lesson_id", list(lessons.LESSONS))
def test_walk_each_lesson_and_answer_every_question(lesson_id):
    lesson = lessons.LESSONS[lesson_id]
    at = open_lessons()
    at.selectbox(key="lesson").set_value(lesson_id).run()
    n = len(lesson.steps)
    for k, step in enumerate(lesson.steps, start=1):
        assert not at.exception, (k, at.exception)
        assert at.session_state["step"] == k
        assert at.header[0].value == step.title
        assert at.get("progress")[0].proto.text == f"Step {k} of {n}"
        assert at.query_params["lesson"] == lesson_id and at.query_params["step"] == str(k)
        values = shown_values(at, lesson, k)
        assert values == step.defaults()
        if step.slow:  # the model runs on request only: the button is there, no figure yet
            assert at.button(key="run_step").label == step.run_label
            assert not at.get("plotly_chart")
        elif step is lesson.steps[1] and lesson_id == "cost-and-quality" and lessons.bench_file() is None:
            assert any("No recorded benchmark" in i.value for i in at.info)
        else:
            assert [c.key for c in at.get("plotly_chart")] == ["lesson_fig"]
        target = step.link_for(values)
        # The link's address carries the settings (it can be copied): [label](page?query).
        links = [re.search(r"\[:material/open_in_new: (.*)\]\(([\w-]+)\?(.*)\)", m.value) for m in at.markdown]
        links = [m for m in links if m]
        if target is not None:
            assert len(links) == 1 and links[0][2] == next(p[3] for p in ui.PAGES if p[0] == target.page)
            assert ("with these settings" in links[0][1]) == bool(target.params)
            assert dict(parse_qsl(links[0][3])) == target.query
        for q in step.questions:
            if q.kind == "choice":
                at.radio(key=f"guess.{q.id}").set_value(wrong_guess(q))
            else:
                at.text_input(key=f"guess.{q.id}").input(wrong_guess(q))
            at.button(key=f"reveal.{q.id}").click().run()
            assert not at.exception
            assert f"**Answer: {lessons.answer_text(q)}.**" in revealed(at), q.id
            assert at.error and not at.success  # a wrong guess is marked wrong
        assert at.button(key="back").disabled == (k == 1)
        assert at.button(key="next").disabled == (k == n)
        if k < n:
            at.button(key="next").click().run()


def test_right_guess_try_again_and_guess_locked_after_reveal():
    at = open_lessons(lesson="sliding-window", step="5")
    q = lessons.LESSON_1.steps[4].questions[0]
    at.button(key=f"reveal.{q.id}").click().run()  # no prediction yet: asked for one, nothing revealed
    assert any("Type a number first" in w.value for w in at.warning) and not revealed(at)
    at.text_input(key=f"guess.{q.id}").input("eight").run()
    at.button(key=f"reveal.{q.id}").click().run()
    assert any("is not a number" in w.value for w in at.warning) and not revealed(at)
    at.text_input(key=f"guess.{q.id}").input(str(int(lessons.answer(q)))).run()
    assert not at.warning  # the complaint goes once the guess changes
    at.button(key=f"reveal.{q.id}").click().run()
    assert at.success and "Exactly right" in at.success[0].value
    assert at.text_input(key=f"guess.{q.id}").disabled
    at.button(key=f"again.{q.id}").click().run()
    assert not at.text_input(key=f"guess.{q.id}").disabled and at.text_input(key=f"guess.{q.id}").value == ""
    assert not revealed(at)


def test_deep_link_opens_the_step_with_its_settings_and_back_keeps_them():
    at = open_lessons(lesson="big-picture", step="3", random="1", seed="7")
    assert not at.exception and not at.warning
    assert at.header[0].value == lessons.LESSON_2.steps[2].title
    assert shown_values(at, lessons.LESSON_2, 3) == {"random": 1, "seed": 7}
    assert "1 random block(s) of 4, seed 7" in title_words(at.get("plotly_chart")[0])
    at.select_slider(key="lsn.big-picture.3.seed").set_value(4).run()
    assert at.query_params["seed"] == "4"
    at.button(key="next").click().run()
    at.button(key="back").click().run()
    assert shown_values(at, lessons.LESSON_2, 3) == {"random": 1, "seed": 4}


def test_bad_links_open_defaults_with_a_notice():
    at = open_lessons(lesson="no-such-lesson", step="x")
    assert not at.exception
    assert len(at.warning) == 2 and all("Ignored URL parameter" in w.value for w in at.warning)
    assert at.session_state["lesson"] == lessons.LESSON_IDS[0] and at.session_state["step"] == 1

    at = open_lessons(lesson="sliding-window", step="5", window="999", layers="-1")
    assert not at.exception
    assert {w.value.split(":")[0] for w in at.warning} == {"Ignored URL parameter window", "Ignored URL parameter layers"}
    assert at.session_state["step"] == 5
    assert shown_values(at, lessons.LESSON_1, 5) == lessons.LESSON_1.steps[4].defaults()

    at = open_lessons(lesson="cost-and-quality", step="99")
    assert not at.exception and any("within 1..5, got 99" in w.value for w in at.warning)
    assert at.session_state["step"] == 1 and at.session_state["lesson"] == "cost-and-quality"


def test_changing_lesson_starts_at_its_first_step():
    at = open_lessons(lesson="sliding-window", step="4")
    at.selectbox(key="lesson").set_value("big-picture").run()
    assert at.session_state["step"] == 1 and at.header[0].value == lessons.LESSON_2.steps[0].title
    assert at.query_params["lesson"] == "big-picture" and at.query_params["step"] == "1"


def test_every_link_opens_its_page_without_a_notice():
    seen = set()
    for lesson in lessons.LESSONS.values():
        for step in lesson.steps:
            target = step.link_for(step.defaults())
            if target is None or (target.page, tuple(sorted(target.query))) in seen:
                continue
            seen.add((target.page, tuple(sorted(target.query))))
            at = AppTest.from_file(str(APP), default_timeout=120).run()  # registers the pages' url paths
            at.query_params.clear()
            at.query_params.update(target.query)
            at.switch_page(target.page)
            at.run()
            assert at.title[0].value == next(p[1] for p in ui.PAGES if p[0] == target.page)
            assert not at.exception, (step.title, at.exception)
            assert not [w.value for w in at.warning if "URL parameter" in w.value], step.title
            # The page took every setting: the link it writes back for its view holds the same values.
            assert {k: at.query_params.get(k) for k in target.query} == target.query, step.title


def test_model_step_runs_the_model_on_request():
    # 64 tokens and three windows plus full: four short forwards of SmolLM2-135M on the CPU.
    lesson = lessons.LESSON_3
    k = next(i for i, s in enumerate(lesson.steps, start=1) if s.slow)
    at = open_lessons(lesson=lesson.id, step=str(k), doc="meeting", tokens="64")
    assert not at.exception and not at.get("plotly_chart")
    at.button(key="run_step").click().run(timeout=300)
    assert not at.exception and not at.error
    fig = at.get("plotly_chart")[0]
    import json

    spec = json.loads(fig.proto.spec)
    windowed, full = spec["data"][0], spec["data"][1]
    assert windowed["x"] == [w for w in lessons.sweep_windows(64) if w != "full"]
    assert "full causal attention" in full["name"] and "first 64 tokens" in title_words(fig)
    assert windowed["y"][0] > full["y"][0]  # an 8-token window leaves the model more surprised than full attention
    assert "run_step" not in [b.key for b in at.button]  # the offer to run is gone once there is a result
    assert any(m.value.startswith("Full attention: perplexity") for m in at.markdown)
    at.button(key="back").click().run()  # results stay for the session: coming back shows the figure
    at.button(key="next").click().run()
    assert at.get("plotly_chart") and "run_step" not in [b.key for b in at.button]


def test_a_near_miss_key_is_named_but_another_steps_control_is_not():
    at = open_lessons(lesson="sliding-window", Step="2", seed="3")  # seed: a control of another lesson's step
    assert not at.exception
    assert [w.value for w in at.warning] == ["Unknown URL parameter 'Step' was ignored; did you mean 'step'? Opened with the defaults instead."]
    assert at.session_state["step"] == 1
