"""Frame qualnames read the same on every supported Python (3.10 has no co_qualname)."""

from __future__ import annotations

import sys
from types import FrameType

from lifecycle._qualname import frame_qualname


class Base:
    def where(self) -> FrameType:
        return sys._getframe()

    @classmethod
    def where_cls(cls) -> FrameType:
        return sys._getframe()


class Child(Base):
    pass


def plain(value: int) -> FrameType:
    return sys._getframe()


def test_a_method_inherited_by_a_subclass_is_named_after_the_class_that_defines_it() -> None:
    assert frame_qualname(Child().where()) == "Base.where"


def test_a_classmethod_is_named_with_its_class() -> None:
    assert frame_qualname(Child.where_cls()) == "Base.where_cls"


def test_a_module_function_whose_first_argument_is_any_object_keeps_its_plain_name() -> None:
    assert frame_qualname(plain(3)) == "plain"
