"""The durable spool: permissions, order, caps, dead letters, locking, and SIGKILL."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lifecycle.adapters.spool import Batch, Rejected, Spool, SpoolLockedError, SpoolState

CHILD = Path(__file__).with_name("influx_spool_child.py")


def lines(n: int, start: int = 0, tag: str = "t") -> list[bytes]:
    return [f"m,tag={tag} v={i}i {i}".encode() for i in range(start, start + n)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_even_with_a_loose_umask(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        with Spool(directory) as spool:
            assert spool.append_batches([Batch.of_lines(lines(10))]).ok
            assert mode(directory) == 0o700
            files = [spool.path, Path(f"{spool.path}-wal"), Path(f"{spool.path}-shm")]
            for path in files:
                assert path.exists(), path
                assert mode(path) == 0o600, path
    finally:
        os.umask(old)


def test_replays_oldest_first_and_deletes_only_on_settle(tmp_path: Path) -> None:
    with Spool(tmp_path, chunk_points=100) as spool:
        assert spool.append_batches([Batch.of_lines(lines(250))]).ok  # three rows: 100, 100, 50
        assert spool.append_batches([Batch.of_lines(lines(10, start=250))]).ok
        chunks = spool.peek(max_points=200)
        assert [c.points for c in chunks] == [100, 100]
        assert chunks[0].lines[0] == b"m,tag=t v=0i 0"
        assert chunks[1].lines[-1] == b"m,tag=t v=199i 199"
        assert spool.peek(max_points=1)[0].points == 100  # at least one chunk, never split
        spool.settle(chunks[0].id)
        spool.settle(chunks[1].id, remaining=chunks[1].lines[60:])  # 60 delivered
        rest = [line for c in spool.peek(10_000) for line in c.lines]
        assert rest == lines(100, start=160)
        assert spool.stats().points == 100


def test_replay_reads_after_an_id_and_settles_without_an_fsync(tmp_path: Path) -> None:
    with Spool(tmp_path, chunk_points=100) as spool:
        assert spool._db is not None
        assert spool.append_batches([Batch.of_lines(lines(150)),
                                     Batch.of_lines(lines(50, 150))]).ok
        rows = spool.peek(10_000)
        assert [c.points for c in rows] == [100, 50, 50]
        assert rows[1].batch == Batch.of_lines(lines(50, 100))
        assert [c.id for c in spool.peek(50, after=rows[0].id)] == [rows[1].id]
        assert [c.id for c in spool.peek(10_000, after=rows[1].id)] == [rows[2].id]
        assert spool.peek(10_000, after=rows[2].id) == []
        statements: list[str] = []
        spool._db.set_trace_callback(statements.append)
        spool.settle(rows[0].id)
        spool.settle(rows[1].id, remaining=Batch.of_lines(lines(10, 140)))
        spool._db.set_trace_callback(None)
        # each settle commits with synchronous=NORMAL (no fsync), then the policy is back
        assert [x for x in statements if x.startswith(("PRAGMA", "BEGIN", "COMMIT"))] == [
            "PRAGMA synchronous=NORMAL", "BEGIN IMMEDIATE", "COMMIT",
            "PRAGMA synchronous=FULL"] * 2
        assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert spool._db.execute("PRAGMA secure_delete").fetchone()[0] == 2  # FAST
        assert [x for c in spool.peek(10_000) for x in c.lines] == lines(10, 140) + lines(50, 150)
        assert spool.stats().bytes == len(b"\n".join(lines(10, 140))) + len(
            b"\n".join(lines(50, 150)))


def test_settle_moves_rejected_lines_to_dead_letters(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append_batches([Batch.of_lines(lines(5))], origin="earlier")
        chunk = spool.peek(100)[0]
        bad = Rejected(chunk.lines[2:3], 400, "unable to parse")
        spool.settle(chunk.id, remaining=chunk.lines[3:], rejected=[bad])
        dead = spool.dead_letters()
        assert [(d.status, d.reason, d.lines, d.origin) for d in dead] == [
            (400, "unable to parse", (lines(5)[2],), "earlier")]
        assert spool.stats().points == 2
        assert spool.requeue_dead_letters() == {"earlier": 1}
        assert spool.dead_letters() == []
        assert spool.stats().points == 3
        spool.dead_letter(lines(4), status=401, reason="unauthorized")
        assert spool.stats().dead_points == 4
        assert spool.purge_dead_letters() == 4
        assert spool.stats().dead_points == 0


def test_full_is_a_state_with_counted_refusals_not_an_exception(tmp_path: Path) -> None:
    batch = lines(100)
    size = len(b"\n".join(batch))
    with Spool(tmp_path, max_bytes=size * 3) as spool:
        for _ in range(3):
            assert spool.append_batches([Batch.of_lines(batch)]).ok
        assert spool.state is SpoolState.FULL
        refused = [spool.append_batches([Batch.of_lines(batch)]) for _ in range(50)]
        assert all(r.stored == 0 and r.refused == 100 and r.reason == "full" for r in refused)
        stats = spool.stats()
        assert stats.refused == 5000
        assert stats.refused_reasons == {"full": 5000}
        assert stats.points == 300
        for chunk in spool.peek(200):
            spool.settle(chunk.id)
        assert spool.state is SpoolState.OK
        assert spool.append_batches([Batch.of_lines(batch)]).ok


def test_disk_full_is_reported_as_full(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        assert spool._db is not None
        pages = spool._db.execute("PRAGMA page_count").fetchone()[0]
        spool._db.execute(f"PRAGMA max_page_count={pages + 2}")  # a disk with ~8 KiB free
        result = spool.append_batches([Batch.of_lines([b"x" * 1000] * 100)])
        assert (result.stored, result.reason) == (0, "disk_full")
        assert spool.state is SpoolState.FULL
        assert spool.stats().points == 0


def test_fsync_policy_is_explicit(tmp_path: Path) -> None:
    expected = {"full": 2, "normal": 1, "off": 0}
    for policy, value in expected.items():
        with Spool(tmp_path / policy, synchronous=policy) as spool:  # type: ignore[arg-type]
            assert spool._db is not None
            assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == value
            assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ValueError, match="synchronous"):
        Spool(tmp_path, synchronous="sometimes")  # type: ignore[arg-type]


def test_one_owner_per_directory_and_contents_survive_reopen(tmp_path: Path) -> None:
    first = Spool(tmp_path, origin="a").open()
    first.append_batches([Batch.of_lines(lines(7))])
    with pytest.raises(SpoolLockedError):
        Spool(tmp_path).open()
    first.close()
    with Spool(tmp_path, origin="b") as second:
        second.append_batches([Batch.of_lines(lines(3))])
        assert second.points_by_origin() == {"a": 7, "b": 3}


def test_thread_safe_appends(tmp_path: Path) -> None:
    with Spool(tmp_path, synchronous="normal") as spool:
        def worker(k: int) -> None:
            for j in range(20):
                assert spool.append_batches([Batch.of_lines(lines(50, start=(k * 20 + j) * 50))]).ok

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        got = sorted(line for c in spool.peek(10**9) for line in c.lines)
        assert got == sorted(lines(4 * 20 * 50))


def test_survives_sigkill_mid_write(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, str(CHILD), "spool", str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    committed = 0
    try:
        assert child.stdout is not None
        for text in child.stdout:
            committed = int(text.split()[1])
            if committed >= 40_000:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert committed >= 40_000
    with Spool(tmp_path) as spool:
        assert spool._db is not None
        assert spool._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        got = [line for c in spool.peek(10**9) for line in c.lines]
    assert len(got) >= committed  # everything acknowledged is there, maybe a bit more
    assert len(got) % 2000 == 0  # and whole transactions only
    values = [int(line.split(b"value=")[1].split(b"i")[0]) for line in got]
    assert values == list(range(len(got)))


def test_closed_spool_refuses(tmp_path: Path) -> None:
    spool = Spool(tmp_path).open()
    spool.close()
    assert spool.state is SpoolState.CLOSED
    assert spool.append_batches([Batch.of_lines(lines(2))]).reason == "closed"
    with pytest.raises(RuntimeError, match="not open"):
        spool.peek(1)
