"""A user's settings (`user/<id>/comfy.settings.json`, `{setting_id: value}`): updates merge under
a lock and replace the file in one durable step; a damaged file reads as `{}` and is kept as
`comfy.settings.json.bad`."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowscope.storage.json_files import read_json_object, write_json_object

SETTINGS_FILE = "comfy.settings.json"


class SettingsStore:
    """Every user's settings file; one lock per file keeps concurrent updates from losing each
    other's keys (within this process)."""

    def __init__(self) -> None:
        self._locks: dict[Path, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def read(self, user_root: Path) -> dict[str, Any]:
        return read_json_object(user_root / SETTINGS_FILE)

    def get(self, user_root: Path, setting_id: str) -> Any:
        """The value of one setting, or None when it is not set."""
        return self.read(user_root).get(setting_id)

    def update(self, user_root: Path, values: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `values` into the file; returns the settings as saved."""
        path = user_root / SETTINGS_FILE
        with self._lock_for(path):
            settings = read_json_object(path)
            settings.update(values)
            user_root.mkdir(parents=True, exist_ok=True)
            write_json_object(path, settings)
        return settings

    def _lock_for(self, path: Path) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(path)
            if lock is None:
                lock = self._locks[path] = threading.Lock()
            return lock
