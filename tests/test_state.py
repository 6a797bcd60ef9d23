"""URL parameters are untrusted: decode, refuse with a notice, round-trip."""

from attn.state import decode_view, encode_view, near_miss_notices, parse_int_list, view_parsers

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


def test_a_repeated_key_uses_its_last_value_and_says_so():
    values, notices = decode_view({"window": ["256", "512"], "n": ["64", "64"]})
    assert values["window"] == 512 and values["n"] == 64
    assert notices == ["URL parameter window is given 2 times ('256', '512'); the last one is used."]


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
    # A whole number far out of range says so, rather than that it is not a whole number.
    for text, shown in (("1000000000000", "1000000000000"), ("-1" + "0" * 30, "-1" + "0" * 18 + "…")):
        with pytest.raises(ValueError, match=f"N must be within 1..100, got {shown}"):
            parse_bounded_int(text, "N", 1, 100)
    assert parse_bounded_int("0000000000000007", "N", 1, 100) == 7  # leading zeros are no size


# Unknown keys that are near misses of a known one get a hint; other unknown keys stay silent.
# The expected answers are written out by hand, not computed by the function under test.
KNOWN = {"n", "window", "b_window", "seed", "sinks", "layers", "present"}


@pytest.mark.parametrize("key, meant", [
    ("N", "n"), ("n ", "n"), (" n", "n"), ("Window", "window"), ("WINDOW", "window"), ("windw", "window"),
    ("wndow", "window"), ("b-window", "b_window"), ("B_Window", "b_window"), ("seeds", "seed"), ("sink", "sinks"),
    ("Layers", "layers"), ("layer", "layers"),
])
def test_near_miss_keys_get_a_hint(key, meant):
    assert near_miss_notices({key: "8"}, KNOWN) == [f"Unknown URL parameter '{key}' was ignored; did you mean '{meant}'?"]


@pytest.mark.parametrize("key", [
    "utm_source", "fbclid", "gclid", "embed", "embed_options", "ref", "w", "s", "x" * 200, "😀", "__proto__", "%2e",
    "ns[]", "<b>k</b>", "",
])
def test_unrelated_unknown_keys_stay_silent(key):
    assert near_miss_notices({key: "8"}, KNOWN) == []


def test_known_and_quiet_keys_are_never_hinted():
    assert near_miss_notices({"n": "64", "window": "8", "present": "1"}, KNOWN) == []
    assert near_miss_notices({"Seed": "3"}, KNOWN, quiet={"Seed"}) == []
    # Both spellings: the known one is read, and the stray one is still reported.
    assert near_miss_notices({"n": "64", "N": "100"}, KNOWN) == ["Unknown URL parameter 'N' was ignored; did you mean 'n'?"]


def test_a_synonym_points_to_the_key_this_page_reads():
    hint = "Unknown URL parameter '{}' was ignored; did you mean 'w'?"
    for key in ("window", "Window", "windw"):
        assert near_miss_notices({key: "8"}, {"w", "layers"}, synonyms={"window": "w"}) == [hint.format(key)]
    assert near_miss_notices({"window": "8"}, {"w", "layers"}) == []  # without the synonym: silent
    # A synonym for a key the page does not read, or one that is itself known, changes nothing.
    assert near_miss_notices({"window": "8"}, {"layers"}, synonyms={"window": "w"}) == []
    assert near_miss_notices({"window": "8"}, {"w", "window"}, synonyms={"window": "w"}) == []


def test_view_parsers_are_what_decode_view_reads():
    # Each key is read: decode_view either takes its value or refuses it with a notice.
    for key in view_parsers():
        values, refused = decode_view({key: "\x00odd\x00"})
        assert key in values or refused, key
    assert decode_view({"Window": "8", "zzz": "1"}) == ({}, [])
    assert {"n", "window", "b_window", "pattern", "b_pattern", "compare", "labels", "layers"} <= set(view_parsers(extra={"layers": int}))
