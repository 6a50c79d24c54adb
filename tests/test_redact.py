"""Secrets are scrubbed from text in every spelling, short ones only as whole words."""

from __future__ import annotations

from lifecycle.redact import contains_secret, mask_url, scrub


def test_short_secrets_are_masked_as_words_only() -> None:
    assert scrub("timeout talking to t", ["t"]) == "timeout talking to ***"
    assert scrub("user:pw@host", ["pw"]) == "user:***@host"


def test_every_spelling_is_masked() -> None:
    assert scrub("token=s3cr3t%2F%21 raw=s3cr3t/!", ["s3cr3t/!"]) == "token=*** raw=***"
    assert contains_secret("a s3cr3t%2F%21", ["s3cr3t/!"])
    assert not contains_secret("timeout", ["t"])


def test_mask_url() -> None:
    assert mask_url("postgresql://app:hunter2@db:5432/x?sslpassword=k") == \
        "postgresql://app:***@db:5432/x?sslpassword=***"
