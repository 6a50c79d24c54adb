"""One write request through ``WriteApiAsync`` and what its answer means for the batch.

Why classify here: the retry loop must not care whether a failure was an aiohttp timeout,
a refused connection or an HTTP status; it needs one of four verdicts. Every text that
leaves this module has the token scrubbed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import aiohttp
import anyio
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

from lifecycle.redact import scrub

from ._policy import parse_retry_after

Verdict = Literal["ok", "retry", "too_large", "rejected"]

#: 4xx answers that mean "this batch will never be accepted as it is" (dead-lettered);
#: 408 and 429 are about the server's state, so they are retried like 5xx.
RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    status: int | None = None  # HTTP status, None for a transport failure
    reason: str = ""
    retry_after: float | None = None
    timeout: bool = False


def classify_status(status: int) -> Verdict:
    if 200 <= status < 300:
        return "ok"
    if status == 413:
        return "too_large"
    if status in RETRYABLE_4XX or status >= 500:
        return "retry"
    return "rejected"


class Poster:
    """Posts line-protocol bodies (nanosecond precision) to one bucket."""

    def __init__(self, url: str, token: str | None, org: str | None, bucket: str, *,
                 timeout: float, connect_timeout: float) -> None:
        self.bucket = bucket
        self.org = org or ""
        self._token = token
        self._timeout = timeout
        client_timeout = aiohttp.ClientTimeout(total=timeout, connect=min(connect_timeout, timeout))
        self._client = InfluxDBClientAsync(url=url, token=token or "", org=self.org,
                                           timeout=client_timeout)
        self._api = self._client.write_api()

    async def post(self, body: bytes) -> Outcome:
        """One request with ``body`` (lines joined by newlines) as it is."""
        try:
            # An outer deadline in case a transport ignores its own timeout.
            with anyio.fail_after(self._timeout + 5.0):
                await self._api.write(bucket=self.bucket, org=self.org, record=body,
                                      write_precision="ns")  # type: ignore[arg-type]
        except ApiException as exc:
            status = int(exc.status or 0)
            retry_after = parse_retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            return Outcome(classify_status(status) if status else "retry", status or None,
                           self._text(f"HTTP {status}: {exc.message or exc.reason}"), retry_after)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            return Outcome("retry", None, self._text(f"timeout: {type(exc).__name__}"),
                           timeout=True)
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome("retry", None, self._text(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # unexpected: retried, then spooled; never lost
            return Outcome("retry", None, self._text(f"unexpected {type(exc).__name__}: {exc}"))
        return Outcome("ok", 204)

    def _text(self, text: str) -> str:
        text = scrub(text, [self._token] if self._token else [])
        return text if len(text) <= 300 else text[:297] + "..."

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
