"""attn.text: messages that quote user input are shown letter for letter (markdown_literal), checked
against an independent CommonMark renderer (markdown-it-py): what it renders is exactly the text we escaped;
and the short forms the pages print."""

import html

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from attn.text import count, markdown_literal, share_text, shorten, spans_text

COMMONMARK = MarkdownIt("commonmark")


def shown(markdown: str) -> str:
    """The text a reader sees: the rendered paragraph without its tags, entities decoded."""
    out = COMMONMARK.render(markdown).strip()
    assert out.startswith("<p>") and out.endswith("</p>"), out  # one plain paragraph: no heading, list, code block
    inner = out[3:-4]
    assert "<" not in inner, out  # no emphasis, link, code span or raw HTML survived
    return html.unescape(inner)


@pytest.mark.parametrize("text", [
    "Only abs(), min() and max() may be called; this call is not allowed (column 1: __import__('os'))",
    "Attribute access (.) is not allowed (column 1: q.__class__)",
    "** (power) is not allowed (column 1: 9**9**9)",
    "Ignored URL parameter window: `x` is <b>not</b> a [link](http://example.com) or $x^2$ or :red[x]",
    "first line\n- not a list\n2) not a list\n=== not a heading\n> not a quote", "# not a heading", "1. not a list", "- not a list", "> not a quote", "a\\b\\\\c", "~~not struck~~",
])
def test_refusals_read_as_written(text):
    assert shown(markdown_literal(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=80))
def test_any_ascii_line_reads_as_written(text):
    text = text.strip()
    if text:
        assert shown(markdown_literal(text)) == text


def test_unescaped_text_would_be_mangled():
    # The reference renderer really does read these as Markdown: the test above can fail.
    assert COMMONMARK.render("q.__class__ and 9**9**9") == "<p>q.<strong>class</strong> and 9<strong>9</strong>9</p>\n"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab1_*`\\[]()<>$~&:#-+.=! ", min_size=1, max_size=40))
def test_dense_markdown_punctuation_reads_as_written(text):
    text = text.strip()
    if text:
        assert shown(markdown_literal(text)) == text


def test_short_forms():
    assert shorten("custom(rule=q >= k)", 19) == "custom(rule=q >= k)" and shorten("abcdef", 4) == "abc…"
    assert (count(1, "size"), count(0, "size"), count(1234, "interval")) == ("1 size", "0 sizes", "1,234 intervals")
    assert spans_text([(3, 4), (7, 8), (12, 16)]) == "3, 7, 12–15"
    assert spans_text([(i, i + 1) for i in range(0, 40, 2)], limit=3) == "0, 2, 4 …"
    assert spans_text([(1000, 1001), (2000, 4096)]) == "1,000, 2,000–4,095"


@pytest.mark.parametrize("x, expected", [
    (0, "0%"), (1, "100%"), (8192 / 131072, "6.25%"), (0.00003, "0.003%"), (131041 / 131072, "99.98%"),
    (0.99999, "99.999%"), (0.5, "50%"),
])
def test_share_text(x, expected):
    # Three significant digits, exact halves kept (6.25%, not 6.2%), and never 100% for less than all.
    assert share_text(x) == expected
