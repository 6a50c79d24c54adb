"""Child process of the harness: ``python -m benchmarks._child '<json request>'``.

Calls the target ``warmup`` times (discarded), then ``repeats`` times, and prints
``BENCHMARK-RESULT {"samples": [...]}`` (plus ``"profile"`` text when asked). Exits with
``os._exit`` so that threads a peer left behind (the sync influxdb-client's) cannot hold
the process open.
"""

from __future__ import annotations

import cProfile
import importlib
import io
import json
import os
import pstats
import sys
import traceback
from typing import Any

from benchmarks import _clock
from benchmarks._harness import MARK, ROOT


def _call(target: str, kwargs: dict[str, Any]) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(**kwargs)


def _profile_text(prof: cProfile.Profile, top: int = 25) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    text = buf.getvalue()
    for prefix in sorted({p for p in sys.path if p and "site-packages" in p}, key=len,
                         reverse=True):
        text = text.replace(prefix.rstrip("/") + "/", "")
    text = text.replace(str(ROOT) + "/", "").replace(os.path.dirname(os.__file__) + "/", "")
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def main() -> None:
    request = json.loads(sys.argv[1])
    target, kwargs = request["target"], request["kwargs"]
    answer: dict[str, Any] = {}
    try:
        for _ in range(int(request["warmup"])):
            _call(target, kwargs)
        if request.get("profile"):
            _clock.profiler = cProfile.Profile()
            answer["samples"] = [_call(target, kwargs)]
            answer["profile"] = _profile_text(_clock.profiler)
            _clock.profiler = None
        else:
            answer["samples"] = [_call(target, kwargs) for _ in range(int(request["repeats"]))]
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.write("\n" + MARK + json.dumps(answer) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
