"""Saving uploads under ComfyUI's naming: identical bytes keep their name, different bytes get
`name (i).ext`, overwrite replaces, and racing uploads never overwrite each other."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope.storage.atomic_files import TEMP_PREFIX
from flowscope.storage.directories import PathEscapeError
from flowscope.storage.file_refs import FileRefError
from flowscope.storage.uploads import new_hasher, numbered_name, save_upload


def upload(
    folder: Path, name: str, data: bytes, *, overwrite: bool = False, hash_name: str = "sha256"
) -> str:
    saved = save_upload(folder, name, io.BytesIO(data), overwrite=overwrite, hash_name=hash_name)
    assert saved.path == folder.resolve() / saved.name
    return saved.name


def leftovers(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX)]


def test_the_same_bytes_reuse_the_name_and_different_bytes_get_a_number(tmp_path: Path) -> None:
    assert upload(tmp_path, "x.png", b"one") == "x.png"
    again = save_upload(tmp_path, "x.png", io.BytesIO(b"one"))
    assert (again.name, again.reused) == ("x.png", True)
    assert upload(tmp_path, "x.png", b"two") == "x (1).png"
    assert upload(tmp_path, "x.png", b"three") == "x (2).png"
    # An identical file further down the numbering is found, not written a third time.
    assert upload(tmp_path, "x.png", b"two") == "x (1).png"
    assert (tmp_path / "x.png").read_bytes() == b"one"
    assert (tmp_path / "x (1).png").read_bytes() == b"two"
    assert (tmp_path / "x (2).png").read_bytes() == b"three"
    assert sorted(os.listdir(tmp_path)) == ["x (1).png", "x (2).png", "x.png"]


def test_a_same_size_file_with_other_bytes_is_not_taken_for_a_duplicate(tmp_path: Path) -> None:
    upload(tmp_path, "a.bin", b"aaaa")
    assert upload(tmp_path, "a.bin", b"aaab") == "a (1).bin"


def test_overwrite_replaces_the_file(tmp_path: Path) -> None:
    upload(tmp_path, "x.png", b"old")
    assert upload(tmp_path, "x.png", b"new", overwrite=True) == "x.png"
    assert (tmp_path / "x.png").read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_the_folder_is_created(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    assert upload(folder, "x.png", b"1") == "x.png"
    assert (folder / "x.png").read_bytes() == b"1"


@pytest.mark.parametrize(
    ("name", "index", "expected"),
    [
        ("x.png", 0, "x.png"),
        ("x.png", 3, "x (3).png"),
        ("archive.tar.gz", 1, "archive.tar (1).gz"),
        ("noext", 2, "noext (2)"),
        (".hidden", 1, ".hidden (1)"),
    ],
)
def test_numbered_names_follow_splitext(name: str, index: int, expected: str) -> None:
    assert numbered_name(name, index) == expected


@pytest.mark.parametrize("algorithm", sorted(hashlib.algorithms_available))
def test_every_hashlib_algorithm_dedupes(tmp_path: Path, algorithm: str) -> None:
    upload(tmp_path, "x.bin", b"same", hash_name=algorithm)
    assert upload(tmp_path, "x.bin", b"same", hash_name=algorithm) == "x.bin"
    assert upload(tmp_path, "x.bin", b"diff", hash_name=algorithm) == "x (1).bin"


def test_an_unknown_hashing_function_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown hashing function 'sha999'.*sha256"):
        new_hasher("sha999")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b.png", "../x.png", "a\\b.png", "x\x00.png"])
def test_names_with_a_folder_part_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(FileRefError):
        save_upload(tmp_path, name, io.BytesIO(b"1"))
    assert os.listdir(tmp_path) == []


def test_an_existing_symlink_out_of_the_folder_is_not_written_through(tmp_path: Path) -> None:
    folder, outside = tmp_path / "input", tmp_path / "secret.txt"
    folder.mkdir()
    outside.write_bytes(b"keep")
    (folder / "x.png").symlink_to(outside)
    with pytest.raises(PathEscapeError, match="leads out"):
        save_upload(folder, "x.png", io.BytesIO(b"evil"), overwrite=True)
    assert outside.read_bytes() == b"keep"
    assert leftovers(folder) == []


def test_racing_uploads_of_one_name_each_keep_their_own_file(tmp_path: Path) -> None:
    contents = [f"content {index}".encode() * 1000 for index in range(8)]
    names: list[str] = []
    barrier = threading.Barrier(len(contents))

    def run(data: bytes) -> None:
        barrier.wait()
        names.append(upload(tmp_path, "x.png", data))

    threads = [threading.Thread(target=run, args=(data,)) for data in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == len(contents)
    stored = {(tmp_path / name).read_bytes() for name in names}
    assert stored == set(contents)
    assert leftovers(tmp_path) == []


def test_a_large_upload_is_streamed_whole(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    assert upload(tmp_path, "big.bin", data) == "big.bin"
    assert (tmp_path / "big.bin").read_bytes() == data
    assert upload(tmp_path, "big.bin", data) == "big.bin"


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=40))
def test_any_name_is_saved_inside_the_folder_or_refused(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "input"
    try:
        saved = save_upload(folder, name, io.BytesIO(b"data"))
    except (FileRefError, PathEscapeError):
        return
    except OSError as exc:  # e.g. a name longer than the file system allows
        assert exc.errno is not None
        return
    assert saved.path.parent == folder.resolve()
    assert saved.path.read_bytes() == b"data"
