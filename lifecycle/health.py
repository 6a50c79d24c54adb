"""What a health check returns when a bare bool is not enough."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Health:
    """The result of ``Service.check()``: healthy or not, and why (``detail``, JSON-safe)."""

    ok: bool
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "detail": dict(self.detail)}
