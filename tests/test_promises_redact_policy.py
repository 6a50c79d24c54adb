"""Promises of redaction and of the restart policy that a whole-module mutation run
(mutmut over ``lifecycle/redact.py`` and ``lifecycle/policy.py``) found unguarded; pure
functions, so no event loop (see "Mutation testing" in docs/testing.md).
"""

from __future__ import annotations

import random

from lifecycle import RestartPolicy
from lifecycle.redact import describe_error, mask_url, safe_cause, scrub


def test_every_secret_is_masked_whole_whatever_the_order_of_the_secrets() -> None:
    for secrets in (["zzzz", "aa-zzzz"], ["aa-zzzz", "zzzz"]):
        assert scrub("token=aa-zzzz end", secrets) == "token=*** end"


def test_a_secret_of_four_characters_is_masked_inside_a_word_a_shorter_one_only_alone() -> None:
    assert scrub("keyabcdkey", ["abcd"]) == "key***key"
    assert scrub("cat at at-home", ["at"]) == "cat *** ***-home"


def test_each_url_encoding_of_a_secret_is_masked() -> None:
    secret = "my pa/ss"
    for spelled in ("my pa/ss", "my%20pa%2Fss", "my+pa%2Fss"):
        assert scrub(f"dsn password={spelled};", [secret]) == "dsn password=***;"


def test_a_password_holding_at_signs_and_colons_is_masked_whole() -> None:
    url = "postgresql://app:p@ss:w@rd@db.internal:5432/orders?sslmode=require&password=x1"
    assert mask_url(url) == ("postgresql://app:***@db.internal:5432/orders"
                             "?sslmode=require&password=***")
    assert mask_url("https://db.internal/x?token=") == "https://db.internal/x?token="
    assert mask_url("https://h/?password=a=b") == "https://h/?password=***"
    assert mask_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"  # adds no query
    assert mask_url("postgresql://u:pw@[::1/db") == "postgresql://u:***@[::1/db"  # unparsable


def test_an_error_is_described_by_its_type_and_scrubbed_message() -> None:
    assert describe_error(ConnectionError(), ["s3cret"]) == "ConnectionError"
    assert describe_error(ValueError("bad s3cret"), ["s3cret"]) == "ValueError: bad ***"


def test_an_error_is_chained_as_a_cause_only_when_it_reveals_no_secret() -> None:
    harmless = OSError("refused")
    assert safe_cause(harmless, ["s3cret"]) is harmless
    assert safe_cause(OSError("login s3cret refused"), ["s3cret"]) is None


def test_jittered_restart_delays_stay_between_the_jitter_floor_and_the_capped_base() -> None:
    policy = RestartPolicy(backoff=(1.0, 4.0), jitter=0.5)
    rng = random.Random(7)
    for attempt, base in [(0, 1.0), (1, 2.0), (2, 4.0), (9, 4.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in delays), (attempt, min(delays), max(delays))


def test_on_always_restarts_a_run_that_ended_as_well_as_one_that_failed() -> None:
    always, failure, never = (RestartPolicy(on=on) for on in ("always", "failure", "never"))
    assert always.wants_restart(False) and always.wants_restart(True)
    assert failure.wants_restart(True) and not failure.wants_restart(False)
    assert not never.wants_restart(True) and not never.wants_restart(False)
