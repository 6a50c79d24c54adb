"""Records to line protocol, once, at acceptance, with a timestamp stamped where missing.

Why at acceptance: the buffer and the spool then hold plain bytes (cheap to batch, to store
and to count), and a point that has its time fixed when it was accepted overwrites itself
when a batch is sent twice (a retry whose first answer was lost, a replay after a crash)
instead of becoming a duplicate. Everything leaves here with nanosecond timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from influxdb_client.client.write.point import Point

Record = Point | str | bytes | Mapping[str, Any]

_NOT_FAST = frozenset({b"", b" ", b"\t", b"\r", b"#"})

#: Multiplier from a precision to nanoseconds.
TO_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


class Stamper:
    """Nanosecond wall-clock stamps that never repeat, so two points written in the same
    nanosecond (or after a clock step back) do not overwrite each other."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        now = time.time_ns()
        if now <= self._last:
            now = self._last + 1
        self._last = now
        return now


def split_timestamp(line: bytes) -> tuple[bytes, int | None]:
    """``(line_without_time, time)``; time is None when the line has none.

    A line without a timestamp ends with its field set, whose last space-separated part
    holds a ``=`` or a closing quote; so a trailing all-digit part is the timestamp.
    """
    head, sep, tail = line.rpartition(b" ")
    if not sep or head.endswith(b"\\"):
        return line, None
    digits = tail[1:] if tail[:1] == b"-" else tail
    if not digits.isdigit():
        return line, None
    return head, int(tail)


class LineEncoder:
    """Turns accepted records into lines; ``precision`` is that of integer timestamps in
    ``str``/``bytes``/``dict`` records (a :class:`Point` carries its own)."""

    def __init__(self, precision: str = "ns") -> None:
        if precision not in TO_NS:
            raise ValueError(f"precision must be one of {sorted(TO_NS)}, got {precision!r}")
        self.precision = precision
        self._factor = TO_NS[precision]
        self.stamp = Stamper()

    def encode(self, record: object) -> list[bytes]:
        """Lines for one record; raises TypeError/ValueError for what cannot be a point."""
        if isinstance(record, bytes):
            return self._text(record, self._factor)
        if isinstance(record, str):
            return self._text(record.encode(), self._factor)
        if isinstance(record, Point):
            return [self._point(record)]
        if isinstance(record, Mapping):
            point = Point.from_dict(dict(record), self.precision)  # type: ignore[arg-type]
            return [self._point(point)]
        raise TypeError(f"cannot write a {type(record).__name__}: expected an influxdb_client "
                        "Point, line protocol (str or bytes) or a dict")

    def encode_many(self, records: Iterable[object]) -> list[bytes]:
        """Lines for many records; the common case (one line-protocol line with a
        nanosecond timestamp) takes a fast path with the same checks."""
        out: list[bytes] = []
        append, extend, encode = out.append, out.extend, self.encode
        fast = self._factor == 1
        for record in records:
            line: bytes | None = None
            if fast:
                kind = type(record)
                if kind is str:
                    line = record.encode()  # type: ignore[attr-defined]
                elif kind is bytes:
                    line = record  # type: ignore[assignment]
            if line is not None and b"\n" not in line:
                head, _, tail = line.rpartition(b" ")
                if (tail.isdigit() and b"=" in head and not head.endswith(b"\\")
                        and line[:1] not in _NOT_FAST):
                    append(line)
                    continue
            extend(encode(record))
        return out

    def _text(self, text: bytes, factor: int) -> list[bytes]:
        out = []
        for raw in text.split(b"\n"):
            line = raw.strip()
            if not line or line[:1] == b"#":
                continue
            if b" " not in line or b"=" not in line:
                raise ValueError(f"not line protocol: {line[:80]!r}")
            head, ts = split_timestamp(line)
            if ts is None:
                line = b"%s %d" % (line, self.stamp())
            elif factor != 1:
                line = b"%s %d" % (head, ts * factor)
            out.append(line)
        return out

    def _point(self, point: Point) -> bytes:
        precision = str(point.write_precision)
        # A Point's own precision applies to an integer time; "ns" loses nothing otherwise.
        text = point.to_line_protocol("ns" if precision == "ns" else None)  # type: ignore[no-untyped-call]
        if not text:
            raise ValueError("a point without fields cannot be written")
        lines = self._text(str(text).encode(), TO_NS.get(precision, 1))
        if len(lines) != 1:
            raise ValueError(f"point does not encode to one line: {text!r}")
        return lines[0]
