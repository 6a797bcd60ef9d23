"""Text shown in the app: Markdown that reads as written, short labels, counted nouns, position lists.
Pure functions (no Streamlit), so the pages and the tests share them."""

from __future__ import annotations

import re

# What Markdown (and Streamlit's extras: $math$, :emoji: and :color[...] directives, ~strike~) reads as
# formatting. Only these are escaped, so that a message keeps its letters in tests and logs
# ("q >= k", "column 1: q.x", "sliding_window"): an underscore run between two letters or digits can
# neither open nor close emphasis in CommonMark, so only other underscores are escaped.
_MARKDOWN_ANYWHERE = re.compile(r"[\\`*\[\]<$~&]|:(?=\S)|_+")
_MARKDOWN_LINE_START = re.compile(r"^([ ]*)([#>+=-]|\d+(?=[.)]))", re.MULTILINE)


def _escape(m: re.Match) -> str:
    s, run = m.string, m[0]
    if run[0] == "_" and 0 < m.start() and m.end() < len(s) and s[m.start() - 1].isalnum() and s[m.end()].isalnum():
        return run
    return "".join("\\" + c for c in run)


def markdown_literal(text: str) -> str:
    """`text` escaped so that Streamlit's Markdown shows it letter for letter: a refused rule such as
    `__import__('os')` or `9**9**9`, quoted in its message, must not turn into bold text or a formula.
    (CommonMark lets a backslash escape any ASCII punctuation. Streamlit still prints >=, <= and -> as
    ≥, ≤ and →, escaped or not: seen in Chromium.)"""
    text = _MARKDOWN_ANYWHERE.sub(_escape, str(text))
    # Line starts: headings, quotes, list items ("- x", "2. x", "2) x"), setext underlines.
    return _MARKDOWN_LINE_START.sub(lambda m: m[1] + (m[2] + "\\" if m[2][0].isdigit() else "\\" + m[2]), text)


def shorten(text: str, width: int) -> str:
    """text cut to `width` characters, with an ellipsis where it was cut (a long rule in a title)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def count(n: int, noun: str) -> str:
    """'1 size', '3 sizes'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def spans_text(spans, limit: int = 12) -> str:
    """Half-open [a, b) spans as a reader writes them: "3, 7, 12–15", the first `limit` and "…" after."""
    shown = ", ".join(f"{a:,}" if b - a == 1 else f"{a:,}–{b - 1:,}" for a, b in spans[:limit])
    return shown + (" …" if len(spans) > limit else "")


def share_text(x: float) -> str:
    """A percentage with three significant digits, so 0.003% does not print as 0.00%; a share short of
    all never prints as 100% (131,041 of 131,072 tokens is 99.98%, not the whole context)."""
    if x == 0:
        return "0%"
    for digits in range(3, 10):
        text = f"{x * 100:.{digits}g}%"
        if x >= 1 or float(text[:-1]) < 100:
            return text
    return "> 99.9999999%"
