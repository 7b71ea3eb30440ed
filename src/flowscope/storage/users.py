"""The user registry (`user/users.json`, `{user_id: name}`) and which user a request acts as:
the `Comfy-User` header under `--multi-user`, `default` otherwise (there is no authentication;
spec §4.4). Each user's files live in `user/<user_id>/`."""

from __future__ import annotations

import os
import re
import threading
import uuid
from pathlib import Path

from flowscope.storage.json_files import read_json_object, write_json_object

DEFAULT_USER = "default"
USERS_FILE = "users.json"
# ComfyUI reserves ids with this prefix for the server's own ("system") users.
SYSTEM_USER_PREFIX = "__"
_UNSAFE_ID_CHARS = re.compile(r"[^a-zA-Z0-9\-_]+")


class UnknownUserError(LookupError):
    """The request names a user the registry does not have (or may not be used over HTTP)."""


class UserNameError(ValueError):
    """A new user's name is empty, reserved or already taken."""


class UserRegistry:
    """Reads `users.json` again only when it changed on disk, so several server processes
    sharing a user folder see each other's new users."""

    def __init__(self, user_dir: Path, *, multi_user: bool) -> None:
        self.user_dir = user_dir
        self.multi_user = multi_user
        self.users_file = user_dir / USERS_FILE
        self._lock = threading.Lock()
        self._cached: dict[str, str] = {}
        self._cached_stamp: tuple[int, int, int] | None = None

    def users(self) -> dict[str, str]:
        """`{user_id: name}`: the registry under multi-user, else just `default`."""
        if not self.multi_user:
            return {DEFAULT_USER: DEFAULT_USER}
        return dict(self._load())

    def resolve(self, header: str | None) -> str:
        """The user id a request acts as; UnknownUserError when it is not registered."""
        if not self.multi_user:
            return DEFAULT_USER
        user_id = header or DEFAULT_USER
        if user_id.startswith(SYSTEM_USER_PREFIX) or not is_safe_user_id(user_id):
            raise UnknownUserError(f"unknown user {user_id!r}")
        if user_id not in self._load():
            raise UnknownUserError(f"unknown user {user_id!r}")
        return user_id

    def root(self, user_id: str) -> Path:
        """The folder of a resolved user's files (it may not exist yet)."""
        if not is_safe_user_id(user_id):
            raise UnknownUserError(f"unknown user {user_id!r}")
        return self.user_dir / user_id

    def add(self, name: str) -> str:
        """Register `name`; returns the new id, `<name with unsafe characters as ->_<uuid4>`."""
        name = name.strip()
        if not name:
            raise UserNameError("username not provided")
        if name.startswith(SYSTEM_USER_PREFIX):
            raise UserNameError("System User prefix not allowed")
        user_id = _UNSAFE_ID_CHARS.sub("-", name)
        if user_id.startswith(SYSTEM_USER_PREFIX):
            raise UserNameError("System User prefix not allowed")
        user_id = f"{user_id}_{uuid.uuid4()}"
        with self._lock:
            users = self._read_file()
            if not self.multi_user:
                users = {DEFAULT_USER: DEFAULT_USER, **users}
            if name in users.values():
                raise UserNameError("Duplicate username.")
            users[user_id] = name
            self.user_dir.mkdir(parents=True, exist_ok=True)
            write_json_object(self.users_file, users)
            self._cached_stamp = None
        return user_id

    def _load(self) -> dict[str, str]:
        stamp = _stamp(self.users_file)
        with self._lock:
            if stamp is None or stamp != self._cached_stamp:
                self._cached = self._read_file()
                self._cached_stamp = stamp
            return self._cached

    def _read_file(self) -> dict[str, str]:
        raw = read_json_object(self.users_file)
        return {key: value for key, value in raw.items() if isinstance(value, str)}


def is_safe_user_id(user_id: str) -> bool:
    """An id usable as one folder name under `user/`."""
    return (
        bool(user_id)
        and user_id not in (".", "..")
        and not any(char in user_id for char in "/\\\x00")
        and user_id.isprintable()
    )


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns
