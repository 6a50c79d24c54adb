"""Records to line protocol, once, at acceptance, with a timestamp stamped where missing.

Why at acceptance: the buffer and the spool then hold plain bytes (cheap to batch, to store
and to count), and a point that has its time fixed when it was accepted overwrites itself
when a batch is sent twice (a retry whose first answer was lost, a replay after a crash)
instead of becoming a duplicate. Everything leaves here with nanosecond timestamps, joined
into :class:`Batch` objects of at most ``chunk`` lines.

Bulk line protocol is checked in one pass: ``write_many`` of ``str``/``bytes`` lines that
all end with a 19-digit nanosecond timestamp (any time from 2001 to 2286) is joined and
matched by one regular expression instead of line by line; anything else takes the exact
per-line path, with the same checks.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from influxdb_client.client.write.point import Point

from ..spool import EMPTY, Batch
from ._point import TO_NS, point_line

__all__ = ["TO_NS", "LineEncoder", "Record", "Stamper", "split_timestamp"]

Record = Point | str | bytes | Mapping[str, Any]

# One line that the per-line path would keep as it is: it starts with neither whitespace
# nor '#', has a '=', and ends with a space and 19 digits not preceded by a backslash.
_LINE = rb"[^\s#=][^=\n]*+=.*+(?<=[^\\] [0-9]{19})"
if sys.version_info < (3, 11):  # pragma: no cover - no possessive quantifiers before 3.11
    _LINE = _LINE.replace(b"*+", b"*")


_ANY = re.compile(rb"(?:%s\n)*%s" % (_LINE, _LINE))


@functools.lru_cache(maxsize=8)
def _exactly(n: int) -> re.Pattern[bytes]:
    """Exactly ``n`` such lines joined by newlines (so a record holding two lines fails);
    compiled once per size, for the sizes that bulk writes use again and again."""
    return re.compile(rb"(?:%s\n){%d}%s" % (_LINE, n - 1, _LINE))


def _stamped(data: bytes, n: int) -> bool:
    """``data`` is exactly ``n`` lines that the per-line path would keep as they are."""
    if n >= 256:
        return _exactly(n).fullmatch(data) is not None
    return data.count(b"\n") == n - 1 and _ANY.fullmatch(data) is not None


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
    """Turns accepted records into batches; ``precision`` is that of integer timestamps in
    ``str``/``bytes``/``dict`` records (a :class:`Point` carries its own)."""

    def __init__(self, precision: str = "ns", chunk: int = 5000) -> None:
        if precision not in TO_NS:
            raise ValueError(f"precision must be one of {sorted(TO_NS)}, got {precision!r}")
        self.precision = precision
        self.chunk = max(1, chunk)
        self._factor = TO_NS[precision]
        self.stamp = Stamper()

    def encode(self, record: object) -> Batch:
        """The lines of one record; raises TypeError/ValueError for what cannot be a point."""
        return Batch.of_lines(self.lines(record))

    def encode_many(self, records: Iterable[object]) -> list[Batch]:
        """The lines of many records, in batches of at most ``chunk`` records' lines;
        all or, if one record is invalid, none (the error is raised)."""
        seq = records if isinstance(records, (list, tuple)) else list(records)
        out = []
        step = self.chunk
        for i in range(0, len(seq), step):
            part = seq if len(seq) <= step else seq[i:i + step]
            batch = self._bulk(part) if self._factor == 1 else None
            if batch is None:
                batch = self._each(part)
            if batch.count:
                out.append(batch)
        return out

    def lines(self, record: object) -> list[bytes]:
        if isinstance(record, (bytes, bytearray, memoryview)):
            return self._text(bytes(record), self._factor)
        if isinstance(record, str):
            return self._text(record.encode(), self._factor)
        if isinstance(record, Point):
            return [self._point(record)]
        if isinstance(record, Mapping):
            point = Point.from_dict(dict(record), self.precision)  # type: ignore[arg-type]
            return [self._point(point)]
        raise TypeError(f"cannot write a {type(record).__name__}: expected an influxdb_client "
                        "Point, line protocol (str or bytes) or a dict")

    @staticmethod
    def _bulk(part: Sequence[Any]) -> Batch | None:
        """All of ``part`` as one batch when every record is one line that the per-line
        path would keep unchanged (checked in one pass), else None."""
        try:
            data = b"\n".join(part)
        except TypeError:  # not all bytes
            try:
                data = "\n".join(part).encode()
            except (TypeError, UnicodeEncodeError):  # not all str, or not encodable
                return None
        return Batch(data, len(part)) if _stamped(data, len(part)) else None

    def _each(self, part: Sequence[object]) -> Batch:
        out: list[bytes] = []
        append, extend, stamp = out.append, out.extend, self.stamp
        for record in part:
            if type(record) is Point:
                line = point_line(record, stamp)
                append(line if line is not None else self.library_line(record))
            else:
                extend(self.lines(record))
        return Batch.of_lines(out) if out else EMPTY

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
        line = point_line(point, self.stamp)
        return line if line is not None else self.library_line(point)

    def library_line(self, point: Point) -> bytes:
        """The line through influxdb-client's own ``to_line_protocol`` (the reference)."""
        precision = str(point.write_precision)
        # A Point's own precision applies to an integer time; "ns" loses nothing otherwise.
        text = point.to_line_protocol("ns" if precision == "ns" else None)  # type: ignore[no-untyped-call]
        if not text:
            raise ValueError("a point without fields cannot be written")
        lines = self._text(str(text).encode(), TO_NS.get(precision, 1))
        if len(lines) != 1:
            raise ValueError(f"point does not encode to one line: {text!r}")
        return lines[0]
