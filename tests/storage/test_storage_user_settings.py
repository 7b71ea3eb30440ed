"""Settings files: merged under a lock, replaced atomically (a failed write leaves the old file
whole), and a damaged file is read as `{}` but kept as `.bad`, never lost."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from flowscope.storage.atomic_files import TEMP_PREFIX, write_bytes_atomic
from flowscope.storage.json_files import read_json_object, write_json_object
from flowscope.storage.user_settings import SETTINGS_FILE, SettingsStore


def test_updates_merge_and_read_back(tmp_path: Path) -> None:
    store = SettingsStore()
    root = tmp_path / "default"
    assert store.read(root) == {}
    assert store.get(root, "Comfy.X") is None
    store.update(root, {"Comfy.X": 1, "Comfy.Y": {"a": [1, 2]}})
    store.update(root, {"Comfy.X": "two"})
    assert store.read(root) == {"Comfy.X": "two", "Comfy.Y": {"a": [1, 2]}}
    assert store.get(root, "Comfy.Y") == {"a": [1, 2]}
    assert json.loads((root / SETTINGS_FILE).read_text()) == store.read(root)


def test_a_failed_write_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SettingsStore()
    store.update(tmp_path, {"kept": True})

    def crash(_source: Any, _target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)  # the rename that would publish the new file
    with pytest.raises(OSError, match="No space"):
        store.update(tmp_path, {"lost": True})
    monkeypatch.undo()
    assert store.read(tmp_path) == {"kept": True}
    assert [name for name in os.listdir(tmp_path) if name.startswith(TEMP_PREFIX)] == []


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b""])
def test_a_damaged_file_reads_as_empty_and_is_kept_as_bad(tmp_path: Path, content: bytes) -> None:
    (tmp_path / SETTINGS_FILE).write_bytes(content)
    store = SettingsStore()
    assert store.read(tmp_path) == {}
    assert (tmp_path / (SETTINGS_FILE + ".bad")).read_bytes() == content
    store.update(tmp_path, {"fresh": 1})
    assert store.read(tmp_path) == {"fresh": 1}
    assert (tmp_path / (SETTINGS_FILE + ".bad")).read_bytes() == content


def test_each_distinct_damaged_version_is_kept_once(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{one")
    assert read_json_object(path) == {}
    assert read_json_object(path) == {}  # the same damage is not copied twice
    path.write_text("{two")
    assert read_json_object(path) == {}
    assert sorted(os.listdir(tmp_path)) == ["x.json", "x.json.bad", "x.json.bad.1"]
    assert (tmp_path / "x.json.bad").read_text() == "{one"
    assert (tmp_path / "x.json.bad.1").read_text() == "{two"


def test_concurrent_updates_lose_no_key(tmp_path: Path) -> None:
    store = SettingsStore()
    barrier = threading.Barrier(8)

    def writer(index: int) -> None:
        barrier.wait()
        for step in range(10):
            store.update(tmp_path, {f"w{index}.{step}": step})

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.read(tmp_path)) == 80


def test_json_objects_are_written_readably_and_atomically(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write_json_object(path, {"name": "é", "n": 1})
    assert path.read_text(encoding="utf-8") == '{\n    "name": "é",\n    "n": 1\n}'
    write_bytes_atomic(path, b"{}")
    assert read_json_object(path) == {}
    assert os.listdir(tmp_path) == ["x.json"]
