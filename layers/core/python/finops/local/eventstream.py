"""A minimal encoder for the AWS event-stream binary format (``application/vnd.amazon.eventstream``).

Each message: a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes; big-endian), the
headers (name length: 1 byte, name, value type 7 = string, value length: 2 bytes, value), the payload, and a
CRC32 of everything before it. https://docs.aws.amazon.com/AmazonS3/latest/API/RESTSelectObjectAppendix.html
(the same framing Bedrock's ConverseStream uses). Only string headers: all Bedrock sends. Used by the local
Bedrock simulation and by the adapter's tests.
"""

from __future__ import annotations

import struct
import zlib

STRING = 7


def encode_headers(headers: dict[str, str]) -> bytes:
    out = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", STRING, len(raw_value)) + raw_value
    return out


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    raw_headers = encode_headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))
