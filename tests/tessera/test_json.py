"""The one strict JSON parse (`tessera.json.parse`): I-JSON, bounded depth, clear errors."""

import pytest

from tessera.json import MAX_DEPTH, load_object, parse


class Refused(Exception):
    pass


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"a": -Infinity}', "-Infinity is not a JSON number"),
        ('{"a": 1e400}', "1e400 is beyond the range of a double"),
        ('{"a": -1e400}', "beyond the range"),
        ('{"a": "\\ud800"}', "lone surrogate"),
        ('{"\\udc00": 1}', "lone surrogate"),
        ('["\\ud83d x"]', "lone surrogate"),
        ('{"a": 1, "a": 2}', "the name 'a' appears twice"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        ('{"a": ' * 5000 + "1" + "}" * 5000, "nested deeper"),
        (b"\xff\xfe{}", "can't decode"),  # UTF-16, which json.loads would take from bytes
        ('{"a": 1}'.encode("utf-16"), "can't decode"),
        ("{not json", "Expecting property name"),
        ("1" * 5000, "digits"),
    ],
)
def test_what_json_loads_would_take_is_refused_naming_why(raw: str | bytes, says: str) -> None:
    with pytest.raises(Refused) as caught:
        parse(raw, "the body", Refused)
    assert str(caught.value).startswith("the body is not JSON: ") and says in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ('{"\\ud83d\\ude00": "\\ud83d\\ude00"}', {"😀": "😀"}),  # a surrogate pair is a character
        ('{"名称": "数据"}', {"名称": "数据"}),
        ('[1.5, -0, 1e308, "[[[["]', [1.5, 0, 1e308, "[[[["]),
        ('{"a": {"a": 1}}', {"a": {"a": 1}}),  # the same name in different objects
    ],
)
def test_strict_json_is_read_as_json(raw: str, value: object) -> None:
    assert parse(raw, "the body", Refused) == value


def test_as_deep_as_allowed_is_read() -> None:
    value = parse("[" * MAX_DEPTH + "]" * MAX_DEPTH, "the body", Refused)
    for _ in range(MAX_DEPTH - 1):
        (value,) = value
    assert value == []


def test_a_byte_order_mark_is_ignored() -> None:
    assert parse(b'\xef\xbb\xbf{"a": 1}', "the body", Refused) == {"a": 1}


def test_load_object_wants_an_object() -> None:
    with pytest.raises(Refused, match="the report must be a JSON object"):
        load_object("[]", "the report", Refused)
