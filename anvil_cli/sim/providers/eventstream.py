"""AWS event-stream framing (`application/vnd.amazon.eventstream`), the encoding side only.

A message is a prelude (total length, headers length, CRC32 of those 8 bytes), string headers,
a payload and a CRC32 of everything before it. Bedrock's InvokeModelWithResponseStream sends
each Messages API stream event as a `chunk` event whose JSON payload carries the event's
JSON base64-encoded under `bytes`; an error mid-stream is an `exception` message.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Mapping

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7  # the header value type of a UTF-8 string


def _header(name: str, value: str) -> bytes:
    key, text = name.encode(), value.encode()
    return struct.pack(">B", len(key)) + key + struct.pack(">BH", _STRING, len(text)) + text


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    lengths = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    head = lengths + struct.pack(">I", zlib.crc32(lengths))
    message = head + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def chunk(event_json: bytes) -> bytes:
    """A `chunk` event carrying one Messages API stream event (its JSON)."""
    payload = json.dumps({"bytes": base64.b64encode(event_json).decode("ascii")}).encode()
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, payload)


def exception(kind: str, message: str) -> bytes:
    """An `exception` message: the stream failed (`kind` as the ResponseStream names it)."""
    payload = json.dumps({"message": message}).encode()
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, payload)
