"""The user registry: `default` in single-user mode, `users.json` under `--multi-user`, ComfyUI's
id scheme for new users, and no way to act as a user that is not registered."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flowscope.storage.users import (
    DEFAULT_USER,
    UnknownUserError,
    UserNameError,
    UserRegistry,
    is_safe_user_id,
)


def test_single_user_mode_is_always_default(tmp_path: Path) -> None:
    registry = UserRegistry(tmp_path, multi_user=False)
    assert registry.users() == {"default": "default"}
    assert registry.resolve(None) == DEFAULT_USER
    assert registry.resolve("someone-else") == DEFAULT_USER  # the header is ignored
    assert registry.root(DEFAULT_USER) == tmp_path / "default"


def test_a_new_user_gets_a_sanitised_id_with_a_uuid(tmp_path: Path) -> None:
    registry = UserRegistry(tmp_path, multi_user=True)
    user_id = registry.add("  Ann Lee/../x  ")
    assert re.fullmatch(r"Ann-Lee-x_[0-9a-f-]{36}", user_id)
    assert registry.users() == {user_id: "Ann Lee/../x"}
    assert json.loads((tmp_path / "users.json").read_text()) == {user_id: "Ann Lee/../x"}
    assert registry.resolve(user_id) == user_id


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "username not provided"), ("   ", "username not provided"), ("__sys", "System User")],
)
def test_bad_names_are_refused(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(UserNameError, match=message):
        UserRegistry(tmp_path, multi_user=True).add(name)
    assert not (tmp_path / "users.json").exists()


def test_a_duplicate_name_is_refused(tmp_path: Path) -> None:
    registry = UserRegistry(tmp_path, multi_user=True)
    registry.add("ann")
    with pytest.raises(UserNameError, match=r"^Duplicate username\.$"):
        registry.add(" ann ")


def test_unknown_missing_and_system_users_are_refused(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_text(
        json.dumps({"ann_1": "ann", "__system": "x", "../up": "y"})
    )
    registry = UserRegistry(tmp_path, multi_user=True)
    assert registry.resolve("ann_1") == "ann_1"
    for header in ("bob", None, "", "__system", "../up"):
        with pytest.raises(UnknownUserError):
            registry.resolve(header)


def test_default_works_in_multi_user_mode_once_registered(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_text(json.dumps({"default": "default"}))
    assert UserRegistry(tmp_path, multi_user=True).resolve(None) == "default"


def test_users_added_by_another_process_are_seen(tmp_path: Path) -> None:
    first = UserRegistry(tmp_path, multi_user=True)
    assert first.users() == {}
    user_id = UserRegistry(tmp_path, multi_user=True).add("bob")
    assert first.resolve(user_id) == user_id


def test_single_user_mode_records_new_users_beside_default(tmp_path: Path) -> None:
    user_id = UserRegistry(tmp_path, multi_user=False).add("ann")
    stored = json.loads((tmp_path / "users.json").read_text())
    assert stored == {"default": "default", user_id: "ann"}


def test_a_damaged_users_file_counts_as_empty_and_is_kept(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_text("{broken")
    registry = UserRegistry(tmp_path, multi_user=True)
    assert registry.users() == {}
    assert (tmp_path / "users.json.bad").read_text() == "{broken"
    user_id = registry.add("ann")
    assert json.loads((tmp_path / "users.json").read_text()) == {user_id: "ann"}
    assert (tmp_path / "users.json.bad").read_text() == "{broken"


@pytest.mark.parametrize(
    ("user_id", "safe"),
    [("ann_1", True), ("", False), (".", False), ("..", False), ("a/b", False), ("a\x00", False)],
)
def test_safe_user_ids(user_id: str, safe: bool) -> None:
    assert is_safe_user_id(user_id) is safe
