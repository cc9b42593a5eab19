"""The local token estimate: text, non-ASCII, images, documents, tools (a table of cases)."""

from __future__ import annotations

from typing import Any

import pytest

from anvil_cli.policy.tokens import estimate_input_tokens

OVERHEAD = 8 + 4  # per request, plus one message


def _one(content: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}


def _doc(source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "document", "source": source, **extra}


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR" * 10}}


@pytest.mark.parametrize(
    ("content", "tokens"),
    [
        ("", 0),
        ("abcd" * 100, 100),  # ASCII: four characters a token
        ([{"type": "text", "text": "abcd" * 100}], 100),
        ("é" * 100, 100),  # non-ASCII: one token each
        ("日本語のテキスト", 8),
        ("abcd" * 25 + "😀" * 10, 35),
        ([IMAGE], 1_600),
        ([IMAGE, IMAGE, {"type": "text", "text": "abcd" * 10}], 3_210),
        ([{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}], 1_600),
        ([_doc({"type": "base64", "media_type": "application/pdf", "data": "A" * 30_000})], 10_000),
        ([_doc({"type": "text", "media_type": "text/plain", "data": "abcd" * 250})], 250),
        ([_doc({"type": "content", "content": [{"type": "text", "text": "abcd" * 5}, IMAGE]})], 1_605),
        ([_doc({"type": "url", "url": "https://example.com/a.pdf"})], 3_000),
        ([_doc({"type": "file", "file_id": "file_011"})], 3_000),
        ([_doc({"type": "text", "data": "abcd"}, title="abcd" * 2, context="abcd" * 3)], 6),
        (
            [
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [IMAGE, {"type": "text", "text": "ab" * 8}],
                }
            ],
            1_604,
        ),
    ],
)
def test_message_content(content: Any, tokens: int) -> None:
    assert estimate_input_tokens(_one(content)) == tokens + OVERHEAD


def test_system_and_tools_count_too() -> None:
    request = {**_one("hi"), "system": "é" * 40, "tools": [{"name": "ß" * 20}]}
    # "hi" 0.5, system 40, tools: '[{"name":"' 10 ASCII + 20 + '"}]' 3 ASCII = 20 + 13/4
    assert estimate_input_tokens(request) == round(0.5 + 40 + 20 + 13 / 4 + OVERHEAD)


def test_never_below_one() -> None:
    assert estimate_input_tokens({"messages": []}) == 8
    assert estimate_input_tokens({}) >= 1


class _Watched(str):
    """A string that records the calls of its methods that could walk its characters."""

    touched: list[str]


def _recording(name: str) -> Any:
    original = getattr(str, name)

    def method(self: _Watched, *args: Any, **kwargs: Any) -> Any:
        self.touched.append(name)
        return original(self, *args, **kwargs)

    return method


# every public str method but the O(1) `isascii`, and the operators that read characters
_WALKS = [n for n in dir(str) if not n.startswith("_") and n != "isascii"]
_WALKS += ["__iter__", "__getitem__", "__contains__", "__add__", "__mul__", "__mod__", "__format__"]
for _name in _WALKS:
    setattr(_Watched, _name, _recording(_name))


def _watched(text: str) -> _Watched:
    found = _Watched(text)
    found.touched = []
    return found


def test_plain_ascii_stays_on_the_constant_time_path() -> None:
    """ASCII text is counted from `isascii()` and `len()` alone, both O(1) in CPython, never by
    walking its characters (this runs once per job, on prompts of any length)."""
    text = _watched("x" * 200_000)
    assert estimate_input_tokens(_one(text)) == 50_000 + OVERHEAD
    assert text.touched == []
    other = _watched("x" * 1_000 + "é")  # the watch does see the slow path
    assert estimate_input_tokens(_one(other)) == 250 + 1 + OVERHEAD
    assert other.touched
