"""The editor's terminal panel: an in-memory ring of recent events as text lines
(`/internal/logs`), pushed as `logs` WebSocket messages to the clients that subscribed."""

from __future__ import annotations

import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Action, Event, Level, format_timestamp

DEFAULT_CAPACITY = 1000
# Too chatty for a terminal: the editor polls, and progress has its own WebSocket messages.
LEFT_OUT = frozenset({Action.HTTP_REQUEST, Action.NODE_PROGRESS})

Send = Callable[[str, Any, str | None], None]  # WebSocketHub.send


class LogRing:
    """The last `capacity` events, each `{"t": iso timestamp, "m": "text\\n"}` as ComfyUI's
    log ring holds console lines. Call it with an event (it is a bus subscriber)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, send: Send | None = None) -> None:
        # (time_ns, line): formatted when read, not for each of the many events never read.
        self._entries: deque[tuple[int, str]] = deque(maxlen=capacity)
        self._send = send
        self._subscribers: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def attach(self, bus: EventBus, left_out: Iterable[Action] = LEFT_OUT) -> Callable[[], None]:
        """Subscribe to `bus` for every action but `left_out`; returns the unsubscriber."""
        skipped = frozenset(left_out)
        return bus.subscribe(self, [action for action in Action if action not in skipped])

    def __call__(self, event: Event) -> None:
        if event.level is Level.DEBUG:
            return
        prefix = "" if event.level is Level.INFO else f"[{event.level.value}] "
        self.append(prefix + event.message, event.time_ns)

    def append(self, message: str, time_ns: int) -> None:
        kept = (time_ns, message.rstrip("\n") + "\n")
        self._entries.append(kept)
        subscribers = self._subscribers
        if subscribers and self._send is not None:
            entry = _entry(kept)
            for sid in subscribers:
                self._send("logs", {"entries": [entry], "size": None}, sid)

    def entries(self) -> list[dict[str, str]]:
        return [_entry(kept) for kept in list(self._entries)]

    def text(self) -> str:
        """Every entry as `"<iso-ts> - <message>"` lines (GET /internal/logs)."""
        return "".join(f"{entry['t']} - {entry['m']}" for entry in self.entries())

    def subscribe(self, sid: str) -> None:
        with self._lock:
            self._subscribers = self._subscribers | {sid}

    def unsubscribe(self, sid: str) -> None:
        with self._lock:
            self._subscribers = self._subscribers - {sid}

    @property
    def subscribers(self) -> frozenset[str]:
        return self._subscribers


def _entry(kept: tuple[int, str]) -> dict[str, str]:
    time_ns, line = kept
    return {"t": format_timestamp(time_ns), "m": line}


def terminal_size() -> dict[str, int]:
    """The server's terminal size, for the editor's terminal panel (80x24 without one)."""
    size = shutil.get_terminal_size()
    return {"cols": size.columns, "rows": size.lines}
