"""The event bus: emitters publish events, subscribers observe them, and nothing blocks execution.

Subscribers run synchronously in the emitting thread, so they must be cheap (the sinks of the
telemetry issue only enqueue). A subscriber that raises is counted and skipped; it never fails
the job that emitted the event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from flowscope.telemetry.events import Action, Event

Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: tuple[tuple[Subscriber, frozenset[Action] | None], ...] = ()
        self._lock = threading.Lock()
        self.subscriber_errors = 0

    def subscribe(
        self, subscriber: Subscriber, actions: Iterable[Action] | None = None
    ) -> Callable[[], None]:
        """Call `subscriber` for every event (or only `actions`); returns an unsubscriber."""
        entry = (subscriber, frozenset(actions) if actions is not None else None)
        with self._lock:
            self._subscribers = (*self._subscribers, entry)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not entry)

        return unsubscribe

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    def emit(self, event: Event) -> None:
        # Copy-on-write tuple: emit never takes the lock.
        for subscriber, actions in self._subscribers:
            if actions is not None and event.action not in actions:
                continue
            try:
                subscriber(event)
            except Exception:
                self.subscriber_errors += 1


class InMemorySubscriber:
    """Collects events in a list: for tests and for in-process consumers such as the CLI."""

    def __init__(
        self, bus: EventBus | None = None, actions: Iterable[Action] | None = None
    ) -> None:
        self.events: list[Event] = []
        self._unsubscribe: Callable[[], None] | None = None
        if bus is not None:
            self._unsubscribe = bus.subscribe(self, actions)

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def actions(self) -> list[str]:
        return [event.action.value for event in self.events]

    def of(self, action: Action) -> list[Event]:
        return [event for event in self.events if event.action is action]

    def where(self, **fields: Any) -> list[Event]:
        """Events whose ECS fields match, with `_` standing for `.` (`node_id="3"`)."""
        wanted = {key.replace("_", ".", 1): value for key, value in fields.items()}
        return [e for e in self.events if all(e.get(k) == v for k, v in wanted.items())]

    def clear(self) -> None:
        self.events.clear()
