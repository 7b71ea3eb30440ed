"""ExecutionBlocker: an output value that stops every node consuming it (conditional outputs)."""

from __future__ import annotations


class ExecutionBlocker:
    """Return this as an output to block downstream nodes.

    With `message=None` the block is silent; with a message the job reports an `ExecutionBlocked`
    error for the blocked node, and the rest of the job goes on.
    """

    __slots__ = ("message",)

    def __init__(self, message: str | None) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"ExecutionBlocker({self.message!r})"
