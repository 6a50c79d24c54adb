"""The lane policy: which sender lane takes what from the buffer, and how long an idle one
waits (a fake clock; the breaker and the sizer are the real ones)."""

from __future__ import annotations

import pytest

from lifecycle.adapters.influx._lanes import MIN_IDLE, LanePolicy
from lifecycle.adapters.influx._policy import BatchSizer, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(threshold=1, reset=2.0, reset_max=8.0, clock=clock)


def lanes(breaker: CircuitBreaker, clock: Clock, *, from_buffer: bool = True,
          sizer: BatchSizer | None = None) -> LanePolicy:
    return LanePolicy(breaker, sizer or BatchSizer(100), batch_size=100, flush_interval=1.0,
                      max_in_flight=3, from_buffer=from_buffer, clock=clock)


def test_a_full_batch_goes_at_once_and_a_partial_one_after_the_flush_interval(
        breaker: CircuitBreaker, clock: Clock) -> None:
    policy = lanes(breaker, clock)
    assert policy.take(0, waiting=250, first_at=clock.now, connected=True, replaying=False) == 100
    assert policy.take(0, waiting=40, first_at=clock.now, connected=True, replaying=False) == 0
    clock.now += 1.0
    assert policy.take(0, waiting=40, first_at=99.9, connected=True, replaying=False) == 100
    assert policy.take(0, waiting=0, first_at=0.0, connected=True, replaying=False) == 0


def test_the_batch_follows_the_sizer_online_and_is_batch_size_offline(
        breaker: CircuitBreaker, clock: Clock) -> None:
    sizer = BatchSizer(100)
    sizer.shrink()
    policy = lanes(breaker, clock, sizer=sizer)
    assert policy.take(0, waiting=60, first_at=clock.now, connected=True, replaying=False) == 50
    assert policy.full_batch(50) and not policy.full_batch(49)
    # no server: lane 0 takes whole batches to the spool, the other lanes none
    assert policy.take(0, waiting=60, first_at=clock.now, connected=False, replaying=False) == 0
    assert policy.take(0, waiting=100, first_at=clock.now, connected=False,
                       replaying=False) == 100
    assert policy.take(1, waiting=500, first_at=clock.now, connected=False, replaying=False) == 0


def test_other_lanes_ship_only_while_the_breaker_is_closed_and_no_replay_runs(
        breaker: CircuitBreaker, clock: Clock) -> None:
    policy = lanes(breaker, clock)
    def taken(replaying: bool = False) -> list[int]:
        return [policy.take(lane, waiting=500, first_at=clock.now, connected=True,
                            replaying=replaying) for lane in range(3)]

    assert (taken(), taken(replaying=True)) == ([100, 100, 100], [100, 0, 0])
    breaker.failure()  # open: lane 0 spills, the others wait
    assert (policy.window(), policy.online(True), taken()) == (1, False, [100, 0, 0])
    clock.now += 2.0  # half-open: one probe, from lane 0 only
    assert (breaker.state, policy.window(), policy.online(True)) == ("half_open", 1, True)
    assert taken() == [100, 0, 0]
    breaker.success()
    assert policy.window() == 3


def test_in_disk_mode_no_lane_takes_from_the_buffer_and_a_replay_never_yields(
        breaker: CircuitBreaker, clock: Clock) -> None:
    disk = lanes(breaker, clock, from_buffer=False)
    assert disk.take(0, waiting=500, first_at=0.0, connected=True, replaying=False) == 0
    assert not disk.replay_yields(500, 0.0)
    memory = lanes(breaker, clock)
    assert memory.replay_yields(500, clock.now) and not memory.replay_yields(10, clock.now)
    assert memory.replays(0) and not memory.replays(1)


def test_an_idle_lane_waits_until_the_oldest_line_is_due_or_the_replay_may_go(
        breaker: CircuitBreaker, clock: Clock) -> None:
    policy = lanes(breaker, clock)
    assert policy.idle(1, waiting=0, first_at=0.0, replay_at=None) == 1.0
    assert policy.idle(1, waiting=5, first_at=clock.now - 0.75, replay_at=None) == 0.25
    assert policy.idle(1, waiting=5, first_at=clock.now - 3.0, replay_at=None) == MIN_IDLE
    assert policy.idle(0, waiting=0, first_at=0.0, replay_at=clock.now + 0.5) == 0.5
    assert policy.idle(1, waiting=0, first_at=0.0, replay_at=clock.now + 0.5) == 1.0
    breaker.failure()  # the replay waits for the breaker too, at most the flush interval
    assert policy.idle(0, waiting=0, first_at=0.0, replay_at=clock.now) == 1.0
    clock.now += 1.5
    assert policy.idle(0, waiting=0, first_at=0.0, replay_at=clock.now) == 0.5
