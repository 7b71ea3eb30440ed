"""`schema_of`: INPUT_TYPES() is asked every time, and its answer parsed again only when it
changed (a file list refreshed in place, a class attribute changed)."""

from __future__ import annotations

from typing import Any, ClassVar

from flowscope.nodes.protocol import schema_of

FILES: dict[str, Any] = {"required": {"name": (["a.png", "b.png"],), "strength": ("FLOAT",)}}


class Dynamic:
    calls = 0
    RETURN_TYPES: ClassVar[tuple[str, ...]] = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        cls.calls += 1
        return FILES  # the same dict each time, changed in place below


def test_an_unchanged_answer_reuses_the_schema_and_a_changed_one_is_parsed() -> None:
    first = schema_of("Dynamic", Dynamic)
    again = schema_of("Dynamic", Dynamic)
    assert again is first  # not parsed again
    assert Dynamic.calls == 2  # but asked each time
    assert first.inputs["name"].choices == ("a.png", "b.png")

    FILES["required"]["name"] = (["a.png", "b.png", "c.png"],)  # a new file appeared
    refreshed = schema_of("Dynamic", Dynamic)
    assert refreshed is not first
    assert refreshed.inputs["name"].choices == ("a.png", "b.png", "c.png")

    Dynamic.RETURN_TYPES = ("IMAGE", "MASK")
    try:
        widened = schema_of("Dynamic", Dynamic)
        assert widened.return_types == ("IMAGE", "MASK")
        assert schema_of("Renamed", Dynamic).class_type == "Renamed"
    finally:
        Dynamic.RETURN_TYPES = ("IMAGE",)


class Uncomparable:
    """An answer whose == is not a truth value is parsed every time (no stale schema)."""

    RETURN_TYPES: ClassVar[tuple[str, ...]] = ("INT",)
    FUNCTION = "run"

    class Odd:
        def __eq__(self, other: object) -> bool:
            raise ValueError("ambiguous")

        __hash__ = object.__hash__

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"x": ("INT", {"default": 1, "odd": cls.Odd()})}}


def test_an_answer_that_cannot_be_compared_is_parsed_each_time() -> None:
    first = schema_of("Uncomparable", Uncomparable)
    assert schema_of("Uncomparable", Uncomparable) is not first
    assert first.inputs["x"].type == "INT"
