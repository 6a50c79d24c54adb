"""Records to line protocol: the bulk path, stamping, and ``Point`` byte-for-byte identity."""

from __future__ import annotations

import enum
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from influxdb_client.client.write.point import Point

from lifecycle.adapters.influx._lines import LineEncoder, split_timestamp
from lifecycle.adapters.influx._point import point_line
from lifecycle.adapters.spool import Batch


def test_split_timestamp() -> None:
    assert split_timestamp(b"m,t=a v=1i 123") == (b"m,t=a v=1i", 123)
    assert split_timestamp(b"m v=-1 -5") == (b"m v=-1", -5)
    assert split_timestamp(b"m v=1i") == (b"m v=1i", None)
    assert split_timestamp(b'm s="a 123"') == (b'm s="a 123"', None)
    assert split_timestamp(b"m a\\ 5=1") == (b"m a\\ 5=1", None)


def test_records_become_lines_with_a_timestamp_stamped_at_acceptance() -> None:
    enc = LineEncoder()
    before = time.time_ns()
    lines = enc.lines("m,t=a v=1i\n\n# comment\nm,t=a v=2i 42\n")
    assert lines[1] == b"m,t=a v=2i 42"
    stamped = split_timestamp(lines[0])[1]
    assert stamped is not None
    assert before <= stamped <= time.time_ns()
    many = [split_timestamp(enc.lines(b"m v=1")[0])[1] for _ in range(1000)]
    assert len(set(many)) == 1000  # never two points with the same stamp
    assert enc.lines(Point("p").tag("t", "x").field("v", 1.5).time(7, "s")) == [
        b"p,t=x v=1.5 7000000000"]
    when = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    assert enc.lines(Point("p").field("v", 1).time(when))[0].endswith(b" 1704164645123456000")
    assert enc.lines({"measurement": "d", "tags": {"k": "v"}, "fields": {"f": 2},
                      "time": 5}) == [b"d,k=v f=2i 5"]
    assert LineEncoder("ms").lines("m v=1 5") == [b"m v=1 5000000"]
    assert enc.encode("a v=1 1\nb v=2 2") == Batch(b"a v=1 1\nb v=2 2", 2)
    with pytest.raises(ValueError, match="without fields"):
        enc.encode(Point("empty"))
    with pytest.raises(ValueError, match="not line protocol"):
        enc.encode("garbage")
    with pytest.raises(TypeError):
        enc.encode(3.14)


NOW = time.time_ns()


@pytest.mark.parametrize("records", [
    # the one-pass path: one line each, 19-digit timestamps
    [f"m,t=a v={i}i {NOW + i}" for i in range(50)],
    [f"m,t=a v={i}i {NOW + i}".encode() for i in range(50)],
    # each of these has something the one-pass path must leave to the per-line one
    ["m v=1i 5", b"m,t=a v=2 6", " m v=3 4", "m v=4 -5", "m s=\"a 12\"", "#comment v=1 2",
     "a v=1\nb v=2 7", "m,t=a\\ 5 v=1i", b"m v=1\r"],
    [f"m v=1 {NOW}", f"m v=2 {NOW}\n"],  # a trailing newline: an empty line
    [f"m v=1 {NOW}", f"m v=1 {NOW} "],  # trailing whitespace
    [f"m v=1 {NOW}", f"\tm v=1 {NOW}"],  # leading whitespace
    [f"m v=1 {NOW}", f"m v=1\\ {NOW}"],  # an escaped space: no timestamp
    [f"m v=1 {NOW}", f"m v=1 {NOW}0"],  # 20 digits
    [f"m v=1 {NOW}", f"m v=1 {NOW}\nm v=2"],  # two lines in one record
    [f"m v=1 {NOW}", "m v=1"],
    [f"m v=1 {NOW}", f"m,t=a v=1 {NOW}".encode()],  # str and bytes mixed
    [f"m v=1 {NOW}", Point("p").field("v", 1).time(5), {"measurement": "d", "fields": {"f": 2}}],
])
def test_the_bulk_path_agrees_with_the_per_line_one(records: list[object]) -> None:
    enc = LineEncoder(chunk=4)
    enc.stamp = lambda: 42  # type: ignore[assignment]  # the same stamps on both paths
    bulk = [line for batch in enc.encode_many(records) for line in batch.lines()]
    assert bulk == [line for r in records for line in enc.lines(r)]
    assert all(split_timestamp(x)[1] is not None for x in bulk)


def test_bulk_input_is_all_or_nothing_and_in_batches() -> None:
    enc = LineEncoder(chunk=4)
    batches = enc.encode_many(f"m v={i}i {NOW + i}" for i in range(10))
    assert [b.count for b in batches] == [4, 4, 2]
    assert batches[2].lines() == [f"m v={i}i {NOW + i}".encode() for i in (8, 9)]
    with pytest.raises(ValueError, match="not line protocol"):
        enc.encode_many([f"m v=1 {NOW}"] * 5 + ["garbage"])
    with pytest.raises(TypeError):
        enc.encode_many([f"m v=1 {NOW}", 3.14])


class Level(enum.IntEnum):
    HIGH = 3


def varied_points() -> list[Point]:
    """Points across the library's escaping, field type and precision rules."""
    t = NOW
    fields: list[object] = [1.0, 0.1, -0.0, 1e20, 2.5e-7, float("nan"), float("inf"), 0, -7,
                            2**63 - 1, True, False, "", "plain", 'q"uo\\te', "a 123", "tab\t",
                            "ünï", None, Decimal("1.50"), Level.HIGH, "two\nlines"]
    names = ["cpu", "cpu load", "a,b", "m=eq", "back\\slash", "ünï", "new\nline", "#hash",
             "\x0bvt", "", 5]
    tags: list[dict[object, object]] = [
        {}, {"host": "a"}, {"z": "1", "a": "2", "m": "3"}, {"sp ace": "v al", "c,o": "e=q"},
        {"t": "ends\\"}, {"": "x", "y": ""}, {"n": None}, {"i": 5, "b": True, "f": 1.5},
        {"nl": "a\nb", "tab": "a\tb"}, {7: "int-key"}]
    out = []
    for i, value in enumerate(fields):
        out.append(Point("m").tag("k", "v").field("f", value).time(t + i))
    for i, name in enumerate(names):
        out.append(Point(name).field("v", i).time(t + i))
    for i, tag_set in enumerate(tags):
        p = Point("m")
        for k, v in tag_set.items():
            p.tag(k, v)
        out.append(p.field("v", float(i)).time(t + i))
    out += [
        Point("m").field("b", 1).field("a", "x").field("c", 2.0).time(t),  # sorted fields
        Point("m").field("k e,y=", 1).time(t),
        Point("m").field("v", 1),  # no time: stamped
        Point("m").field("v", 1).time(1_700_000_000, "s"),
        Point("m").field("v", 1).time(1_700_000_000_123, "ms"),
        Point("m").field("v", 1).time(1_700_000_000_123_456, "us"),
        Point("m").field("v", 1).time(-5),
        Point("m").field("v", 1).time(datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)),
        Point("m").field("v", 1).time(datetime(2024, 1, 2, 3, 4, 5, 6), "ms"),
        Point("m").field("v", 1).time("2024-01-02T03:04:05.123456789Z"),
        Point("m").field("v", 1).time(True),
        Point("m"),  # no fields
        Point("m").field("v", None),
        Point("m").field(3, 1),  # a non-str field key
        Point.from_dict({"measurement": "d", "tags": {"k": "v"}, "time": 9,
                         "fields": {"u": 5, "f": 6, "i": 7, "x": 8}},
                        field_types={"u": "uint", "f": "float", "i": "int"}),
    ]
    return out


def outcome(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except (TypeError, ValueError) as exc:
        return type(exc)


def test_points_encode_byte_for_byte_as_the_library_does() -> None:
    enc = LineEncoder()
    enc.stamp = lambda: 42  # type: ignore[assignment]
    points = varied_points()
    fast = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # the library warns about '#...'
        for point in points:
            expected = outcome(lambda p=point: enc.library_line(p))  # type: ignore[misc]
            assert outcome(lambda p=point: enc.lines(p)[0]) == expected, point._name
            line = outcome(lambda p=point: point_line(p, enc.stamp))  # type: ignore[misc]
            if isinstance(line, bytes):
                assert line == expected, point._name
                fast += 1
        # and all at once, through the bulk path
        good = [p for p in points if isinstance(outcome(lambda p=p: enc.library_line(p)), bytes)]
        assert [x for b in enc.encode_many(good) for x in b.lines()] == [
            enc.library_line(p) for p in good]
    assert fast >= 40  # the common cases take the fast path


def test_big_bulk_writes_are_checked_in_one_pass_with_the_same_outcome() -> None:
    enc = LineEncoder(chunk=1000)
    enc.stamp = lambda: 42  # type: ignore[assignment]
    good = [f"m,t=a v={i}i {NOW + i}".encode() for i in range(2500)]
    batches = enc.encode_many(good)
    assert [b.count for b in batches] == [1000, 1000, 500]
    assert [x for b in batches for x in b.lines()] == good
    for bad in (b"m v=1", b"m v=1 5", f"a v=1 {NOW}\nb v=2 {NOW}".encode(), b"   ", b"#c",
                f"m v=1 {NOW}\n".encode()):
        records = [*good[:600], bad, *good[600:999]]
        bulk = [x for b in enc.encode_many(records) for x in b.lines()]
        assert bulk == [x for r in records for x in enc.lines(r)], bad
