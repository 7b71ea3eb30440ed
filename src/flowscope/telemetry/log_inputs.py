"""How much of each node's constant inputs its events carry (`--log-inputs`, spec §4).

Its own module so the command line can offer the choices without importing the engine (and
torch with it)."""

from __future__ import annotations

from typing import Literal

LogInputs = Literal["none", "preview", "full"]
LOG_INPUTS: tuple[LogInputs, ...] = ("none", "preview", "full")
