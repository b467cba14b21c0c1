"""Hostile values and malformed JSON bodies, as hypothesis strategies.

A request body is drawn as a `Body`: the bytes to send and the name of the fault it carries, so a run
can say which faults it tried. JSON text is written by `dumps`, which can also put what `json.dumps`
refuses to write into it: `NaN`, `-Infinity`, `1e400`, lone surrogates, repeated names.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

CHINESE = "数据共享平台医疗健康交通能源金融制造业个人信息出境安全评估"
LONE_SURROGATES = ["\ud800", "\udfff", "a\ud83d", "\udc00z"]
RAW_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1" + "0" * 400, "0." + "0" * 400 + "1"]
BAD_URLS = [
    "http://127.0.0.1:80a",
    "http://127.0.0.1:99999",
    "\ufeffhttp://127.0.0.1:1/",
    "ftp://example.org/",
    "javascript:alert(1)",
    "http://",
    "http:// space.example/",
    "http://[::1",
    "http://exa\x00mple.org/",
    "http://" + "a" * 3000 + ".org/",
    "//no-scheme.example/",
    "http://127.0.0.1:1/",
    "http://例子.测试/数据",
    "file:///etc/passwd",
]
BAD_IDS = [
    "",
    " ",
    "../../etc/passwd",
    "urn:tessera:" + "x" * 5000,
    "a/b/c",
    "%00",
    "\x00",
    "null",
    "urn:tessera:provider\n",
    "😀" * 50,
    CHINESE,
    "x" * 300,
    "/tmp/" + "x" * 5000,
    "/tmp/" + "x/" * 3000,
    "/dev/zero",
    "/proc/self/mem",
]


@dataclass(frozen=True)
class Raw:
    """JSON text put into a document as it is (NaN, 1e400, a repeated name …)."""

    text: str


@dataclass(frozen=True)
class Body:
    """The bytes of a request body and the fault they carry ("valid" for none)."""

    content: bytes
    fault: str


def dumps(value: Any) -> str:
    """`value` as JSON text; `Raw` parts are written as they are, lone surrogates as \\uXXXX escapes."""
    raws: list[str] = []

    def mark(item: Any) -> Any:
        if isinstance(item, Raw):
            raws.append(item.text)
            return f"\x01RAW{len(raws) - 1}\x01"
        if isinstance(item, dict):
            return {str(k): mark(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value), allow_nan=True)  # ensure_ascii escapes lone surrogates
    return re.sub(r'"\\u0001RAW(\d+)\\u0001"', lambda m: raws[int(m.group(1))], text)


def nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from([CHINESE, CHINESE * 200, "x" * 100_000, "\x00", "'\"<>&;--", "\u202e\u200b"]),
    st.sampled_from(LONE_SURROGATES),
    st.sampled_from(BAD_URLS),
    st.sampled_from(BAD_IDS),
    st.sampled_from(RAW_NUMBERS).map(Raw),
)

hostile = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=12), inner, max_size=4),
    ),
    max_leaves=12,
)


def _fault_of(value: Any) -> str:
    text = dumps(value)
    if any(raw in text for raw in ("NaN", "Infinity", "1e400", "1e999")) or re.search(r"\d{300}", text):
        return "json: NaN, infinity or huge number"
    if re.search("[\ud800-\udfff]", json.dumps(json.loads(text), ensure_ascii=False)):  # pairs join on reading
        return "json: lone surrogate"
    if len(text) > 50_000:
        return "json: very long string"
    if any(url in text for url in ("://", "javascript:")):
        return "json: bad URL"
    return "json: wrong type or value"


@st.composite
def mutated(draw: st.DrawFn, seed: dict[str, Any]) -> Body:
    """`seed` (a valid body) with one field replaced, removed or added, or the whole body broken."""
    choice = draw(st.sampled_from(["replace", "remove", "extra", "deep", "raw", "wrong top", "valid"]))
    document = dict(seed)
    if choice == "valid" or (choice in ("replace", "remove") and not document):
        return Body(dumps(document).encode(), "valid")
    if choice == "replace":
        name = draw(st.sampled_from(sorted(document)))
        document[name] = draw(hostile)
        return Body(dumps(document).encode(), _fault_of(document[name]))
    if choice == "remove":
        del document[draw(st.sampled_from(sorted(document)))]
        return Body(dumps(document).encode(), "json: missing field")
    if choice == "extra":
        document[draw(st.text(min_size=1, max_size=20))] = draw(hostile)
        return Body(dumps(document).encode(), "json: extra field")
    if choice == "deep":
        depth = draw(st.sampled_from([65, 200, 5000, 100_000]))
        kind = draw(st.sampled_from(["array", "object"]))
        name = draw(st.sampled_from(sorted(document) or ["x"]))
        text = dumps(document | {name: Raw(nested(depth, kind))})
        return Body(text.encode(), "json: deep nesting")
    if choice == "wrong top":
        top = draw(st.sampled_from(["[]", "null", "1", '"text"', "true", "[" + dumps(document) + "]"]))
        return Body(top.encode(), "json: not an object")
    return draw(broken_bytes(document))


@st.composite
def broken_bytes(draw: st.DrawFn, document: dict[str, Any]) -> Body:
    """Bytes that are not (strict) JSON at all."""
    text = dumps(document)
    kind = draw(
        st.sampled_from(
            ["truncated", "binary", "latin-1", "utf-16", "repeated name", "empty", "bom", "trailing", "too large"]
        )
    )
    if kind == "too large":  # past every body limit (1 MiB at most), refused while streaming
        return Body(b'{"x": "' + b"x" * (1024 * 1024 + 10) + b'"}', "body: too large")
    if kind == "truncated":
        return Body(text[: draw(st.integers(0, max(0, len(text) - 1)))].encode(), "body: truncated JSON")
    if kind == "binary":
        return Body(draw(st.binary(min_size=1, max_size=200)), "body: binary")
    if kind == "latin-1":
        return Body(dumps({"title": "caf\xe9"}).encode("utf-8").replace(b"\xc3\xa9", b"\xe9"), "body: not UTF-8")
    if kind == "utf-16":
        return Body(text.encode("utf-16"), "body: not UTF-8")
    if kind == "repeated name":
        return Body((text[:-1] + (", " if document else "") + '"a": 1, "a": 2}').encode(), "json: repeated name")
    if kind == "empty":
        return Body(b"", "body: empty")
    if kind == "bom":
        return Body(b"\xef\xbb\xbf" + text.encode(), "body: byte order mark")
    return Body(text.encode() + b" garbage", "body: trailing garbage")
