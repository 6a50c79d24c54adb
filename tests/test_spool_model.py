"""The spool against a model of what must be in it, the way Vector tests its disk buffer.

Hypothesis runs random sequences of append, send (read the oldest rows), acknowledge
(all or part of a row), reject (to the dead letters), fail (an answer that never came) and
crash-and-reopen, and checks after each step that the spool holds exactly what the model
says: every committed line not yet acknowledged, in order, nothing twice, nothing else.

A crash is what a SIGKILL leaves: the database and WAL files as they are on disk at that
moment (the process's page cache is the kernel's, so a killed process's writes are
there), copied to a new directory while the old connection is still open, then opened
there. A power cut additionally tears the last commit: the WAL is cut at a random byte
inside the frames that commit wrote, and the last append must then be there whole or not
at all.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from lifecycle.adapters.spool import Batch, Rejected, Spool, SpoolChunk

CHUNK = 7  # lines per row: appends span several rows


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.generation = 0
        self.spool = self._open(self.root / "0")
        self.queue: list[bytes] = []  # the model: lines that must be waiting, in order
        self.dead: list[bytes] = []
        self.sent: dict[int, SpoolChunk] = {}  # rows read and not answered yet
        self.cursor = 0
        self.next_line = 0
        self.last_append: tuple[int, int, list[bytes]] | None = None  # WAL size before/after

    def _open(self, directory: Path) -> Spool:
        return Spool(directory, chunk_points=CHUNK, synchronous="normal").open()

    def _wal(self) -> Path:
        return Path(f"{self.spool.path}-wal")

    # ----- rules ----------------------------------------------------------------------
    @rule(n=st.integers(1, 30))
    def append(self, n: int) -> None:
        lines = [b"m v=%di %d" % (i, i) for i in range(self.next_line, self.next_line + n)]
        self.next_line += n
        before = self._wal().stat().st_size
        assert self.spool.append_batches([Batch.of_lines(lines)]).ok
        self.queue.extend(lines)
        self.last_append = (before, self._wal().stat().st_size, lines)

    @rule(points=st.integers(1, 40))
    def send(self, points: int) -> None:
        for chunk in self.spool.peek(points, after=self.cursor):
            self.sent[chunk.id] = chunk
            self.cursor = chunk.id

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def acknowledge(self, data: st.DataObject) -> None:
        chunk = self.sent.pop(data.draw(st.sampled_from(sorted(self.sent))))
        lines = list(chunk.lines)
        delivered = data.draw(st.integers(1, len(lines)))
        rejected = data.draw(st.integers(0, len(lines) - delivered))
        gone, dead = lines[:delivered], lines[delivered:delivered + rejected]
        rest = lines[delivered + rejected:]
        assert self.spool.settle(chunk.id, remaining=rest,
                                 rejected=[Rejected(dead, 400, "bad")] if dead else [])
        for line in gone + dead:
            self.queue.remove(line)
        self.dead.extend(dead)
        self.last_append = None
        if rest:  # what is left of the row is read again by the next pass
            self.cursor = min(self.cursor, chunk.id - 1)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        """No answer: the row stays as it is and is read again by the next pass."""
        chunk_id = data.draw(st.sampled_from(sorted(self.sent)))
        del self.sent[chunk_id]
        self.cursor = min(self.cursor, chunk_id - 1)

    @rule()
    def crash_and_reopen(self) -> None:
        self._crash()

    @precondition(lambda self: self.last_append is not None)
    @rule(data=st.data())
    def power_cut_tears_the_last_append(self, data: st.DataObject) -> None:
        assert self.last_append is not None
        before, after, lines = self.last_append
        cut = data.draw(st.integers(before, max(before, after - 1)))
        self._crash(wal_bytes=cut)
        waiting = self._stored()
        if waiting == self.queue[:len(self.queue) - len(lines)]:
            del self.queue[len(self.queue) - len(lines):]  # the torn commit is gone, whole
        assert waiting == self.queue, "a torn commit left part of itself or hurt others"

    def _crash(self, wal_bytes: int | None = None) -> None:
        self.generation += 1
        target = self.root / str(self.generation)
        target.mkdir(mode=0o700)
        for suffix in ("", "-wal"):
            source = Path(f"{self.spool.path}{suffix}")
            if source.exists():
                shutil.copyfile(source, target / f"{source.name}")
        if wal_bytes is not None:
            with open(target / self._wal().name, "r+b") as f:
                f.truncate(wal_bytes)
        old, self.spool = self.spool, self._open(target)
        old.close()  # checkpoints the old directory only; the copy is what a crash left
        self.sent.clear()
        self.cursor = 0
        self.last_append = None

    # ----- what must hold ---------------------------------------------------------------
    def _stored(self) -> list[bytes]:
        return [line for chunk in self.spool.peek(10**9) for line in chunk.lines]

    @invariant()
    def holds_exactly_the_model(self) -> None:
        assert self._stored() == self.queue
        stats = self.spool.stats()
        assert (stats.points, stats.dead_points) == (len(self.queue), len(self.dead))
        assert sorted(x for d in self.spool.dead_letters(10**6) for x in d.lines) \
            == sorted(self.dead)
        assert not self.spool.quarantines

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.root, ignore_errors=True)


SpoolMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=25,
                                          deadline=None)
test_the_spool_holds_what_the_model_says_through_crashes = SpoolMachine.TestCase
