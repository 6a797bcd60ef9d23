"""Lessons: guided steps with a live figure, predict-then-reveal questions, and a handout to download."""

from urllib.parse import urlencode

import streamlit as st

import ui
from attn import lessons
from attn.jobs import Cancelled

PAGE_TITLES = {path: title for path, title, *_ in ui.PAGES}
# Each page's address relative to this one; the home page is served at "/" (no url_path), which is ".".
PAGE_ADDRESSES = {path: url_path or "." for path, _, _, url_path, _ in ui.PAGES}


def control_key(lesson_id: str, step_no: int, name: str) -> str:
    # One widget per (lesson, step, control), kept for the session, so going back finds a step as it was left.
    return f"lsn.{lesson_id}.{step_no}.{name}"


@ui.cached("Computing the figure…")
def step_figure(lesson_id, index, values):
    return lessons.get_lesson(lesson_id).steps[index].build_figure(dict(values))


@ui.cached()
def step_note(lesson_id, index, values):
    return lessons.get_lesson(lesson_id).steps[index].note_for(dict(values))


@ui.cached(queued=True)
def step_run(lesson_id, index, values, _progress=None):
    # Cached for every session: a class pressing the same button runs the model once. The run waits its
    # turn in the process-wide line for heavy work (place shown, can be left), like the Model Attention page.
    return ui.in_line(lessons.get_lesson(lesson_id).steps[index].run, dict(values), progress=_progress)


def go(delta: int) -> None:
    st.session_state["step"] += delta


def reveal(q: lessons.Question) -> None:
    guess = st.session_state.get(f"guess.{q.id}")
    # A guess typed without Enter reaches the server with the click, but the box would then show empty:
    # setting it from here sends the value back to the (now disabled) box.
    st.session_state[f"guess.{q.id}"] = guess
    try:
        st.session_state[f"_grade.{q.id}"] = lessons.grade(q, guess)
        st.session_state.pop(f"_guess_error.{q.id}", None)
    except ValueError as e:
        st.session_state[f"_guess_error.{q.id}"] = str(e)


def clear_error(q: lessons.Question) -> None:
    st.session_state.pop(f"_guess_error.{q.id}", None)


def try_again(q: lessons.Question) -> None:
    st.session_state.pop(f"_grade.{q.id}", None)
    st.session_state[f"guess.{q.id}"] = None if q.kind == "choice" else ""


def question_box(q: lessons.Question, number: int) -> None:
    graded = st.session_state.get(f"_grade.{q.id}")
    with st.container(border=True):
        st.markdown(f"**Predict, then reveal · question {number}.** {q.prompt}")
        key = f"guess.{q.id}"
        if q.kind == "choice":
            st.radio("Your prediction", q.choices, index=None, key=key, disabled=graded is not None,
                     persist_state="session", on_change=clear_error, args=(q,))
        else:
            st.text_input(f"Your prediction{f' ({q.unit})' if q.unit else ''} — {q.tolerance_text()}", key=key,
                          disabled=graded is not None, placeholder="a number: 12, 2.5k, 3e9, 4 billion",
                          persist_state="session", on_change=clear_error, args=(q,))
        if graded is None:
            st.button("Reveal the answer", key=f"reveal.{q.id}", on_click=reveal, args=(q,), type="primary")
            if f"_guess_error.{q.id}" in st.session_state:
                ui.notice(st.session_state[f"_guess_error.{q.id}"], "warning", ":material/edit:")
            return
        show = st.success if graded.correct else st.error
        show(f"**Answer: {graded.answer_text}.** {graded.summary}", icon=":material/check_circle:" if graded.correct else ":material/cancel:")
        for label, value in graded.options:
            st.markdown(f"- {'**' if label == graded.answer else ''}{label}{'**' if label == graded.answer else ''}: {value}")
        st.markdown(graded.explanation)
        st.button("Try again", key=f"again.{q.id}", on_click=try_again, args=(q,))


st.title("Lessons")
st.caption("Guided tours through the lab, a step at a time. Each step has a live figure to play with and a link "
           "to the full page; the questions ask for your prediction before the lab computes the answer.")

# Links carry the lesson, the step and that step's controls. The controls' URL names are short ("window");
# their widgets have per-step keys, so the values are moved across (and anything another page kept
# under the same name is put back).
if not st.session_state.get("_url_loaded_lessons"):
    parsers = lessons.url_parsers(st.query_params.to_dict())
    names = [k for k in parsers if k not in ("lesson", "step")]
    kept = {k: st.session_state.pop(k) for k in names if k in st.session_state}
    notices = ui.load_url_keys("lessons", parsers, quiet=lessons.URL_CONTROL_NAMES)
    from_url = {k: st.session_state.pop(k) for k in names if k in st.session_state}
    st.session_state.update(kept)
    ui.set_default("lesson", lessons.LESSON_IDS[0])
    ui.set_default("step", 1)
    for name, value in from_url.items():
        st.session_state[control_key(st.session_state["lesson"], st.session_state["step"], name)] = value
else:
    notices = []
for notice in notices:
    ui.notice(f"{notice} Opened with the defaults instead.", "warning", ":material/link:")

top = st.columns([3, 2])
lesson_id = top[0].selectbox("Lesson", lessons.LESSON_IDS, key="lesson", format_func=lambda i: lessons.LESSONS[i].title,
                             on_change=lambda: st.session_state.update(step=1))
lesson = lessons.get_lesson(lesson_id)
n_steps = len(lesson.steps)
st.session_state["step"] = min(max(1, int(st.session_state["step"])), n_steps)
k = st.session_state["step"]
step = lesson.steps[k - 1]
top[0].caption(lesson.summary)

# Buttons as wide as their words (in columns of an eighth, a 1,024-pixel window cut them to "← B…" and
# "Ne…"); the progress bar takes the rest of the row.
with st.container(horizontal=True, vertical_alignment="bottom"):
    st.button("← Back", key="back", on_click=go, args=(-1,), disabled=k == 1, width="content")
    st.button("Next →", key="next", on_click=go, args=(1,), disabled=k == n_steps, width="content", type="primary")
    st.progress(k / n_steps, text=f"Step {k} of {n_steps}", width="stretch")

st.header(step.title, divider="gray")
left, right = st.columns([2, 3], gap="large")
values = {}
with left:
    st.markdown(step.text)
    for c in step.controls:
        key = control_key(lesson_id, k, c.name)
        ui.set_default(key, c.default)
        if st.session_state[key] not in c.options:  # stale state from an older version of a lesson
            st.session_state[key] = c.default
        if c.numeric:
            values[c.name] = st.select_slider(c.label, c.options, key=key, format_func=c.fmt, help=c.help or None,
                                              persist_state="session")
        else:
            values[c.name] = st.selectbox(c.label, c.options, key=key, format_func=c.fmt, help=c.help or None,
                                          persist_state="session")
items = tuple(sorted(values.items()))

with right:
    figure = None
    note = ""
    if step.slow:
        results = st.session_state.setdefault("_lesson_results", {})
        run_key = (lesson_id, k - 1, items)
        if run_key not in results:
            ask = st.empty()  # the offer to run goes once there is a result
            with ask.container():
                st.info("This step runs a real language model on the CPU: from a few seconds to a minute, longer the first "
                        "time (the model loads). The figure appears here.",
                        icon=":material/hourglass_top:")
                pressed = st.button(step.run_label, key="run_step", type="primary")
            if pressed:
                ui.join_line()  # pressing Run joins the line again
                bar = st.progress(0.0, text="Loading the model…")

                def progress(done, total, label):
                    bar.progress(min(done / total, 1.0), text=f"Forward pass {min(done + 1, total)} of {total}: {label}")

                try:
                    results[run_key] = step_run(lesson_id, k - 1, items, _progress=progress)
                    ask.empty()
                except (ValueError, RuntimeError, ImportError, OSError, Cancelled) as e:
                    ui.notice(f"The model could not run: {e}")
                bar.empty()
        if run_key in results:
            figure = step.build_figure(values, results[run_key])
            note = step.note_for(values, results[run_key])
    else:
        try:
            figure = step_figure(lesson_id, k - 1, items)
            note = step_note(lesson_id, k - 1, items)
        except ValueError as e:
            ui.notice(e, "info", ":material/info:")
    if figure is not None:
        ui.plot(figure, key="lesson_fig", filename=f"{lesson_id}_step{k}")
        if note:
            st.markdown(note)
    target = step.link_for(values)
    if target is not None and target.page in PAGE_TITLES:
        label = (f"Open this in {PAGE_TITLES[target.page]} with these settings" if target.params
                 else f"Open the {PAGE_TITLES[target.page]} page")
        # A plain link, not st.page_link: its address carries the settings, so it can be copied or opened in
        # a new tab (a page link's address is the bare page). It opens beside the lesson.
        query = urlencode(target.query | ui.global_url_params())
        st.markdown(f"[:material/open_in_new: {label}]({PAGE_ADDRESSES[target.page]}?{query})")

with left:
    first = sum(len(s.questions) for s in lesson.steps[: k - 1])
    for i, q in enumerate(step.questions):
        question_box(q, first + i + 1)


# Each step at the settings left on it in this session (defaults elsewhere), with any model results run.
# Gathered here, in the script run: the download callable runs later on another thread.
chosen = {i: {c.name: st.session_state.get(control_key(lesson_id, i + 1, c.name), c.default) for c in s.controls}
          for i, s in enumerate(lesson.steps)}
runs = {i: r for (lid, i, vals), r in st.session_state.get("_lesson_results", {}).items()
        if lid == lesson_id and dict(vals) == lesson.steps[i].values(chosen[i])}
top[1].download_button("Handout (HTML)", data=lambda: lessons.handout_html(lesson, chosen, runs),
                       file_name=f"{lesson_id}-handout.html", mime="text/html", on_click="ignore", icon=":material/description:",
                       help="This lesson as one HTML file: every step's text and figure, the questions with room "
                            "to answer, and the computed answers at the end. Opens offline.")
ui.share_view(ui.write_url_keys(lessons.url_params(lesson_id, k, values)))
