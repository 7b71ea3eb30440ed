"""Events, the event bus and (in later work) every sink that observes them."""

from flowscope.telemetry.bus import EventBus, InMemorySubscriber, Subscriber
from flowscope.telemetry.events import Action, Event, Level, Outcome

__all__ = ["Action", "Event", "EventBus", "InMemorySubscriber", "Level", "Outcome", "Subscriber"]
