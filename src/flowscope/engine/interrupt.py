"""The interrupt flag of one executor: set from any thread, checked between nodes, list items and
progress updates."""

from __future__ import annotations

from flowscope.nodes.progress import ExecutionInterrupted


class InterruptFlag:
    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True  # a plain attribute store is atomic under the GIL

    def clear(self) -> None:
        self._set = False

    @property
    def is_set(self) -> bool:
        return self._set

    def check(self) -> None:
        """Raise ExecutionInterrupted (once) if the flag is set."""
        if self._set:
            self._set = False
            raise ExecutionInterrupted("Processing interrupted")
