"""URL parameters are untrusted: decode, refuse with a notice, round-trip."""

from attn.state import decode_view, encode_view, parse_int_list

import pytest


def test_round_trip():
    state = {"n": 4096, "pattern": "bigbird", "window": 64, "global_tokens": "0, 7", "random_blocks": 3, "seed": 9,
             "block": 16, "causal": False, "compare": True, "b_pattern": "sliding_window", "b_window": 256, "labels": False}
    query = encode_view(state)
    values, notices = decode_view(query)
    assert notices == []
    for key, value in values.items():
        assert state[key] == value


@pytest.mark.parametrize(
    "query, bad",
    [
        ({"n": "abc"}, "n"),
        ({"n": "7"}, "n"),
        ({"n": "999999999"}, "n"),
        ({"pattern": "<script>"}, "pattern"),
        ({"window": "-1"}, "window"),
        ({"window": "1e9"}, "window"),
        ({"global_tokens": "0,,x"}, "global_tokens"),
        ({"global_tokens": ",".join(["1"] * 100)}, "global_tokens"),
        ({"causal": "maybe"}, "causal"),
        ({"b_pattern": "nope"}, "b_pattern"),
    ],
)
def test_garbage_is_refused_with_notice(query, bad):
    values, notices = decode_view(query)
    assert bad not in values
    assert len(notices) == 1 and bad in notices[0]


def test_unknown_keys_ignored_and_lists_normalised():
    values, notices = decode_view({"utm_source": "x", "lengths": " 3 ,4,5 "})
    assert notices == [] and values == {"lengths": "3, 4, 5"}


def test_parse_int_list_errors():
    with pytest.raises(ValueError, match="at least 1"):
        parse_int_list("0,2", "document length", 1)


def test_unicode_digits_are_refused_with_a_sentence():
    import pytest

    from attn.state import parse_bounded_int

    for text in ("²", "５", "٣", "1²"):
        with pytest.raises(ValueError, match="must be a whole number"):
            parse_bounded_int(text, "N", 1, 100)
    assert parse_bounded_int(" -3 ", "N", -5, 5) == -3
