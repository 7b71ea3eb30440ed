"""Garbage-collector settings for a process that keeps large graphs alive.

A full CPython collection walks every tracked object: with a 10,000-node prompt, its results and
its events alive, one costs ~50 ms on a 2-core machine, and by default one is due whenever a
quarter again as many objects have survived since the last, i.e. several times per large job.
`tune_collector()` is called once by a composition root (the CLI, the server) after start-up:
it moves the start-up objects (modules, node classes, torch) out of the collector's way and
makes full collections ten times rarer. Young objects are collected as before, so short-lived
cycles (a caught exception and its frames) are still freed promptly.
"""

from __future__ import annotations

import gc

# gen1 collections between full collections (CPython's default: 10).
FULL_COLLECTION_INTERVAL = 100


def tune_collector() -> None:
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_INTERVAL)
