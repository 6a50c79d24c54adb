"""A frame's function qualname (``Condition.wait``), the same on every supported Python.

Python 3.11 keeps it on the code object (``co_qualname``). Python 3.10 does not, so there it
is rebuilt from the frame's first argument (``self`` or ``cls``): the class in its MRO that
defines a function with this very code names it. Without this, leak reports would print
``threading.wait`` and an ignore rule written as ``Queue.get`` would stop matching on 3.10.
Nested functions keep their bare name on 3.10 (``inner``, not ``outer.<locals>.inner``).
"""

from __future__ import annotations

import sys
from types import CodeType, FrameType


def frame_qualname(frame: FrameType) -> str:
    """The qualified name of the function running in ``frame``."""
    code = frame.f_code
    if sys.version_info >= (3, 11):
        return code.co_qualname
    return _rebuilt(frame, code)  # pragma: no cover - Python 3.10 only


def _rebuilt(frame: FrameType, code: CodeType) -> str:
    if code.co_argcount == 0:
        return code.co_name
    try:
        owner = frame.f_locals.get(code.co_varnames[0])
    except Exception:  # a frame being torn down in another thread
        return code.co_name
    cls = owner if isinstance(owner, type) else type(owner)
    for klass in cls.__mro__:
        fn = klass.__dict__.get(code.co_name)
        fn = getattr(fn, "__func__", fn)  # classmethod, staticmethod
        if getattr(fn, "__code__", None) is code:
            return f"{klass.__qualname__}.{code.co_name}"
    return code.co_name
