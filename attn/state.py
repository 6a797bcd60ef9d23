"""A view's settings as URL query parameters: decoding (untrusted input) and encoding.

The same keys name the page's widgets, so a link reopens exactly the same view.
Pattern B of a comparison uses the same names with the prefix "b_".
"""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping

from . import limits
from .masks import MAX_N
from .presets import PARAMS, PATTERN_INFO, PICKABLE, ParamSpec

# Largest value a URL or a widget may give a parameter (default MAX_N): the builders' own bounds.
INT_MAX = {"seed": limits.PARAM_MAX, "random_blocks": limits.BIGBIRD_MAX_RANDOM_BLOCKS}
MAX_TEXT = limits.URL_TEXT_CHARS
MAX_LIST_ITEMS = limits.URL_LIST_ITEMS
PREFIXES = ("", "b_")


def parse_int_list(text: str, what: str = "value", minimum: int = 0) -> tuple[int, ...]:
    """'0, 17 ,64' -> (0, 17, 64). Raises ValueError with a plain sentence."""
    items = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    if len(items) > MAX_LIST_ITEMS:
        raise ValueError(f"At most {MAX_LIST_ITEMS} {what}s, got {len(items)}.")
    out = []
    for t in items:
        if not t.lstrip("-").isdigit() or len(t) > 7:
            raise ValueError(f"'{t}' is not a whole number; write {what}s as whole numbers separated by commas.")
        v = int(t)
        if v < minimum:
            raise ValueError(f"Each {what} must be at least {minimum}, got {v}.")
        out.append(v)
    return tuple(out)


def format_int_list(values) -> str:
    return ", ".join(str(v) for v in values)


def parse_param(spec: ParamSpec, text: str):
    """URL text -> widget value (int, bool, or normalised list text). Raises ValueError."""
    if spec.kind == "text":  # a custom rule: checked by attn.rules when the rule is built
        return str(text).strip()[:MAX_TEXT]
    text = str(text).strip()
    if spec.kind == "bool":
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"{spec.label} must be 1 or 0, got '{text[:20]}'.")
    if spec.kind == "int":
        return parse_bounded_int(text, spec.label, spec.minimum, INT_MAX.get(spec.name, MAX_N))
    return format_int_list(parse_int_list(text, spec.label.lower().rstrip("s"), spec.minimum))


def parse_bounded_int(text: str, label: str, lo: int, hi: int) -> int:
    t = str(text).strip()
    digits = t[1:] if t.startswith("-") else t
    if not (digits.isascii() and digits.isdigit()):  # '²'.isdigit() is True, int('²') fails
        raise ValueError(f"{label} must be a whole number, got '{t[:20]}'.")
    if len(digits.lstrip("0")) > 12:  # a whole number, but far out of range: not worth converting
        raise ValueError(f"{label} must be within {lo}..{hi}, got {t[:20]}{'…' if len(t) > 20 else ''}.")
    v = int(t)
    if not lo <= v <= hi:
        raise ValueError(f"{label} must be within {lo}..{hi}, got {v}.")
    return v


def encode_param(spec: ParamSpec, value) -> str:
    if spec.kind == "bool":
        return "1" if value else "0"
    if spec.kind == "text":
        return str(value)
    return str(value).replace(" ", "")


def _pattern(text: str) -> str:
    if text not in PICKABLE:
        raise ValueError(f"unknown pattern '{str(text)[:30]}'.")
    return text


def view_parsers(n_min: int = 8, extra: Mapping | None = None) -> dict:
    """The URL keys of a mask view, each with its parser (text -> value, ValueError if refused):
    N, two flags, and pattern A / pattern B ("b_") with every parameter; then `extra`, the
    page's own keys."""
    parsers: dict = {"n": lambda t: parse_bounded_int(t, "N", n_min, MAX_N)}
    for flag in ("compare", "labels"):
        parsers[flag] = lambda t, f=flag: parse_param(ParamSpec(f, f, "bool", False), t)
    for prefix in PREFIXES:
        parsers[prefix + "pattern"] = _pattern
        for name, spec in PARAMS.items():
            parsers[prefix + name] = lambda t, s=spec: parse_param(s, t)
    return parsers | dict(extra or {})


def decode_view(query: Mapping[str, object], n_min: int = 8, extra: Mapping | None = None) -> tuple[dict, list[str]]:
    """Validated settings of a mask view from URL query parameters, and a notice per refused value
    (decode_keys with view_parsers)."""
    return decode_keys(query, view_parsers(n_min, extra))


def near_miss_notices(query: Iterable[str], known: Iterable[str], quiet: Iterable[str] = (),
                      synonyms: Mapping[str, str] | None = None) -> list[str]:
    """A notice for each unknown key that looks like a known one: another case ("N", "Window"),
    stray spaces, "-" for "_", or a slip in a longer name ("windw"). Any other unknown key stays
    silent: shared links pick up keys no page reads (utm_source, fbclid), and those are not mistakes.
    quiet: keys that belong to a neighbouring view (another lesson step), never hinted at.
    synonyms: another page's name for a known key (Home reads "w" where the mask pages read
    "window"); the synonym and its near misses point to the known key."""
    known, quiet = set(known), set(quiet)
    by_lower = {k.lower(): k for k in known}
    by_lower |= {alias.lower(): meant for alias, meant in (synonyms or {}).items() if meant in known and alias not in known}
    out = []
    for key in query:
        key = str(key)
        if key in known or key in quiet:
            continue
        plain = key.strip().lower().replace("-", "_")
        match = by_lower.get(plain)
        if match is None and 3 <= len(plain) <= 40:  # one-letter keys match only by case or spaces
            close = difflib.get_close_matches(plain, list(by_lower), n=1, cutoff=0.8)
            match = by_lower[close[0]] if close else None
        if match is not None:
            out.append(f"Unknown URL parameter '{key[:40]}' was ignored; did you mean '{match}'?")
    return out


def decode_keys(query: Mapping[str, object], parsers: Mapping) -> tuple[dict, list[str]]:
    """Page settings from URL parameters: each key's parser turns text into a value or raises
    ValueError; refused values are left out (the widget keeps its default) with a notice.
    Unknown keys are ignored here (near_miss_notices names the near misses)."""
    values: dict = {}
    notices: list[str] = []
    for key, parse in parsers.items():
        raw = query.get(key)
        if isinstance(raw, (list, tuple)):
            if len(set(map(str, raw))) > 1:  # a link edited by hand, or two links pasted together
                shown = ", ".join(f"'{str(r)[:20]}'" for r in raw[:4]) + (", …" if len(raw) > 4 else "")
                notices.append(f"URL parameter {key} is given {len(raw)} times ({shown}); the last one is used.")
            raw = raw[-1] if raw else None
        if raw is None:
            continue
        try:
            values[key] = parse(str(raw)[:2000])
        except ValueError as e:
            notices.append(f"Ignored URL parameter {key}: {e}")
    return values, notices


def parse_choice(choices, label: str, aliases: dict | None = None):
    """A parser accepting one of `choices` (their text form), or an alias naming one of them."""
    by_text = {str(c): c for c in choices}
    by_alias = {a: by_text[str(c)] for a, c in (aliases or {}).items() if str(c) in by_text}

    def parse(text):
        if text in by_alias:
            return by_alias[text]
        if text not in by_text:
            shown = ", ".join(list(by_text)[:12]) + (", …" if len(by_text) > 12 else "")
            raise ValueError(f"{label} must be one of {shown}; got '{str(text)[:30]}'.")
        return by_text[text]

    return parse


def parse_bounded_float(text: str, label: str, lo: float, hi: float) -> float:
    try:
        v = float(str(text).strip()[:30])
    except ValueError:
        raise ValueError(f"{label} must be a number, got '{str(text)[:20]}'.") from None
    if not (lo <= v <= hi):  # also refuses nan
        raise ValueError(f"{label} must be within {lo:g}..{hi:g}, got {v:g}.")
    return v


def encode_view(state: Mapping[str, object], extra_keys=()) -> dict[str, str]:
    """URL query parameters for a view: N, flags, the parameters of the shown pattern(s),
    and the page's own keys (`extra_keys`, written as text)."""
    out = {"n": str(state["n"])}
    for key in extra_keys:
        if key in state and state[key] is not None:
            value = state[key]
            out[key] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    prefixes = PREFIXES if state.get("compare") else ("",)
    for flag in ("compare", "labels"):
        if state.get(flag):
            out[flag] = "1"
    for prefix in prefixes:
        pattern = state.get(prefix + "pattern")
        if pattern is None:
            continue
        out[prefix + "pattern"] = pattern
        for name in PATTERN_INFO[pattern].params:
            key = prefix + name
            if key in state:
                out[key] = encode_param(PARAMS[name], state[key])
    return out
