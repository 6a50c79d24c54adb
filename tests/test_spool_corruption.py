"""A damaged spool file: a clear record naming the file and the points, never a silent loss,
never a retry loop. The damage is real: bytes of the file overwritten, cut or replaced."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from lifecycle.adapters.spool import Batch, Spool

ROWS, PER_ROW = 20, 500


def filled(directory: Path) -> Spool:
    """A closed spool of 20 rows of 500 lines (about 15 KB each), checkpointed."""
    spool = Spool(directory, chunk_points=PER_ROW, origin="earlier").open()
    for r in range(ROWS):
        lines = [b"m,row=%d value=%di %d" % (r, i, r * PER_ROW + i) for i in range(PER_ROW)]
        assert spool.append_batches([Batch.of_lines(lines)]).ok
    spool.close()
    return spool


def stored(spool: Spool) -> int:
    return sum(c.points for c in spool.peek(10**9))


def overwrite(path: Path, at: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)


def quarantined_once(spool: Spool, caplog: pytest.LogCaptureFixture) -> Path:
    [found] = spool.quarantines
    moved = Path(found.file)
    assert moved.parent == spool.directory / "quarantine" and moved.exists()
    assert os.stat(moved.parent).st_mode & 0o777 == 0o700
    assert str(moved) in caplog.text and "lost" in caplog.text
    return moved


def test_a_damaged_page_loses_only_its_rows_and_says_how_many_points(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    spool = filled(tmp_path)
    data = spool.path.read_bytes()
    page = data.index(b"m,row=7 value=0i") // 32768
    overwrite(spool.path, page * 32768, b"\xff" * 32768)
    with spool:  # opening it finds the damage
        kept = stored(spool)  # reads past the damage: nothing blocked behind it
        [found] = spool.quarantines
        lost = sum(found.lost.values())
        assert not found.hidden and lost > 0 and lost % PER_ROW == 0
        assert kept + lost == ROWS * PER_ROW
        assert found.lost_rows == lost // PER_ROW
        assert f"{lost} point(s)" in caplog.text
        quarantined_once(spool, caplog)
        assert spool.append_batches([Batch.of_lines([b"m v=1i 1"])]).ok  # works on
        assert stored(spool) == kept + 1


def test_a_truncated_file_is_quarantined_with_what_could_be_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    spool = filled(tmp_path)
    size = spool.path.stat().st_size
    os.truncate(spool.path, size // 2)
    with spool:  # opening it finds the damage
        kept = stored(spool)
        [found] = spool.quarantines
        assert 0 < kept < ROWS * PER_ROW
        assert found.hidden or kept + sum(found.lost.values()) == ROWS * PER_ROW
        quarantined_once(spool, caplog)


def test_a_file_with_a_wrong_header_is_quarantined_not_retried(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    spool = filled(tmp_path)
    overwrite(spool.path, 0, b"this is not SQLite")
    with spool:  # opening it finds the damage
        [found] = spool.quarantines
        assert found.hidden and stored(spool) == 0  # nothing readable: said so, not zero
        assert "cannot be read" in found.describe()
        moved = quarantined_once(spool, caplog)
        assert moved.read_bytes().startswith(b"this is not SQLite")  # kept for an expert
        assert spool.append_batches([Batch.of_lines([b"m v=1i 1"])]).ok


def test_a_torn_last_write_loses_that_commit_whole_and_nothing_before(tmp_path: Path) -> None:
    """What a power cut during a commit leaves: the WAL cut inside the last commit's frames.
    SQLite's frame checksums drop that commit entirely; the earlier ones are intact."""
    spool = Spool(tmp_path / "live", chunk_points=PER_ROW, synchronous="full").open()
    wal = Path(f"{spool.path}-wal")
    for r in range(3):
        row = [b"m,row=%d v=%di %d" % (r, i, i) for i in range(PER_ROW)]
        assert spool.append_batches([Batch.of_lines(row)]).ok
    before = wal.stat().st_size
    assert spool.append_batches([Batch.of_lines([b"m,row=3 v=%di %d" % (i, i) for i in range(PER_ROW)])]).ok
    after = wal.stat().st_size
    crashed = tmp_path / "crashed"
    crashed.mkdir(mode=0o700)
    for name in (spool.path.name, wal.name):
        shutil.copyfile(spool.path.parent / name, crashed / name)
    spool.close()
    os.truncate(crashed / wal.name, (before + after) // 2)
    with Spool(crashed, chunk_points=PER_ROW) as reopened:
        assert stored(reopened) == 3 * PER_ROW
        assert not reopened.quarantines


def test_damage_found_while_the_spool_is_open_is_quarantined_on_the_next_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The spool is open (120 rows: more than SQLite's page cache keeps) when a page of an
    early row is overwritten on disk; the next read runs into it, quarantines the file and
    reads on, once; the points the damaged row held are counted from the tally."""
    caplog.set_level(logging.ERROR)
    with Spool(tmp_path, chunk_points=PER_ROW) as spool:
        for r in range(120):
            assert spool.append_batches([Batch.of_lines([b"m,row=%d value=%di %d" % (r, i, r * PER_ROW + i)
                                 for i in range(PER_ROW)])]).ok
        assert spool._db is not None
        spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = spool.path.read_bytes()
        page = data.index(b"m,row=10 value=0i") // 32768
        overwrite(spool.path, page * 32768, b"\0" * 32768)
        kept = stored(spool)
        [found] = spool.quarantines
        lost = sum(found.lost.values())
        assert not found.hidden and lost > 0 and kept + lost == 120 * PER_ROW
        assert stored(spool) == kept and len(spool.quarantines) == 1  # not retried
        quarantined_once(spool, caplog)
