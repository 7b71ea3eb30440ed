"""One user's files: every path stays inside `user/<id>/` (never the folder itself, never a
neighbour's folder or users.json), listings as ComfyUI gives them, atomic writes, moves."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope.storage.directories import PathEscapeError
from flowscope.storage.user_files import UserFiles, UserPathError


@pytest.fixture
def files(tmp_path: Path) -> UserFiles:
    user_dir = tmp_path / "user"
    (user_dir / "other").mkdir(parents=True)
    (user_dir / "other" / "private.json").write_text("{}")
    (user_dir / "users.json").write_text("{}")
    return UserFiles(user_dir / "default")


def populate(files: UserFiles) -> None:
    files.write("workflows/a.json", b"a")
    files.write("workflows/sub/b.json", b"bb")
    files.write("workflows/.hidden.json", b"h")
    files.write("workflows/.cache/c.json", b"c")
    files.write("top.json", b"t")


def relative_names(files: UserFiles, paths: list[Path], base: str) -> list[str]:
    return [path.relative_to(files.resolve(base)).as_posix() for path in paths]


def test_listing_skips_hidden_names_and_recurses_on_request(files: UserFiles) -> None:
    populate(files)
    assert relative_names(files, files.list_files("workflows", recurse=False), "workflows") == [
        "a.json"
    ]
    assert relative_names(files, files.list_files("workflows", recurse=True), "workflows") == [
        "a.json",
        "sub/b.json",
    ]
    with pytest.raises(FileNotFoundError):
        files.list_files("nothing", recurse=True)
    with pytest.raises(NotADirectoryError):
        files.list_files("top.json", recurse=True)


def test_file_info_is_comfyui_shaped(files: UserFiles) -> None:
    before = int(time.time() * 1000) - 2000
    path = files.write("workflows/a.json", b"12345")
    info = files.info(path, files.resolve("workflows"))
    assert info["path"] == "a.json"
    assert info["size"] == 5
    assert info["modified"] >= before
    assert info["created"] >= before
    assert files.info(path)["path"] == "workflows/a.json"


def test_v2_entries_list_folders_first_with_paths_from_the_user_root(files: UserFiles) -> None:
    assert files.entries() == []  # a user without a folder yet has nothing
    populate(files)
    entries = files.entries("workflows")
    assert [(entry["type"], entry["path"]) for entry in entries] == [
        ("directory", "workflows/.cache"),
        ("directory", "workflows/sub"),
        # ComfyUI sorts by name alone, whatever the folder.
        ("file", "workflows/.hidden.json"),
        ("file", "workflows/a.json"),
        ("file", "workflows/sub/b.json"),
        ("file", "workflows/.cache/c.json"),
    ]
    assert [entry["name"] for entry in entries][:2] == [".cache", "sub"]
    file_entry = entries[4]
    assert file_entry["name"] == "b.json"
    assert file_entry["size"] == 2
    assert isinstance(file_entry["modified"], float)
    assert "size" not in entries[0]
    with pytest.raises(FileNotFoundError):
        files.entries("missing")
    with pytest.raises(NotADirectoryError):
        files.entries("top.json")


def test_listings_do_not_follow_symlinks_out(files: UserFiles, tmp_path: Path) -> None:
    populate(files)
    secret = tmp_path / "secret.json"
    secret.write_text("s")
    os.symlink(secret, files.resolve("workflows") / "leak.json")
    os.symlink(tmp_path, files.resolve("workflows") / "outdir")
    listed = relative_names(files, files.list_files("workflows", recurse=True), "workflows")
    assert "leak.json" not in listed
    paths = [entry["path"] for entry in files.entries()]
    assert "workflows/leak.json" not in paths
    assert "workflows/outdir" not in paths


def test_write_without_overwrite_refuses_an_existing_file(files: UserFiles) -> None:
    files.write("a.json", b"1")
    with pytest.raises(FileExistsError):
        files.write("a.json", b"2", overwrite=False)
    assert files.resolve("a.json").read_bytes() == b"1"
    files.write("a.json", b"3")
    assert files.resolve("a.json").read_bytes() == b"3"
    files.write("new/b.json", b"4", overwrite=False)
    assert files.resolve("new/b.json").read_bytes() == b"4"
    with pytest.raises(IsADirectoryError):
        files.write("new", b"5")
    assert not [name for name in os.listdir(files.resolve("new")) if name.startswith(".")]


def test_delete(files: UserFiles) -> None:
    files.write("a/b.json", b"1")
    files.delete("a/b.json")
    assert not files.resolve("a/b.json").exists()
    with pytest.raises(FileNotFoundError):
        files.delete("a/b.json")
    with pytest.raises(IsADirectoryError):
        files.delete("a")


def test_move(files: UserFiles) -> None:
    files.write("a.json", b"1")
    files.write("b.json", b"2")
    with pytest.raises(FileExistsError):
        files.move("a.json", "b.json", overwrite=False)
    moved = files.move("a.json", "deep/c.json", overwrite=False)
    assert files.relative(moved) == "deep/c.json"
    assert moved.read_bytes() == b"1"
    assert not files.resolve("a.json").exists()
    files.move("deep/c.json", "b.json")
    assert files.resolve("b.json").read_bytes() == b"1"
    with pytest.raises(FileNotFoundError):
        files.move("missing.json", "x.json")
    with pytest.raises(IsADirectoryError):
        files.move("b.json", "deep")


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("", UserPathError),
        ("//", PathEscapeError),
        ("a\x00b", UserPathError),
        ("a\\..\\b", UserPathError),
        ("\udc80", UserPathError),
        ("/etc/passwd", PathEscapeError),
        ("../users.json", PathEscapeError),
        ("../other/private.json", PathEscapeError),
        ("a/../../other", PathEscapeError),
        ("..", PathEscapeError),
    ],
)
def test_paths_out_of_the_user_folder_are_refused(
    files: UserFiles, path: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        files.resolve(path)


def test_the_user_folder_itself_cannot_be_written_deleted_or_moved(files: UserFiles) -> None:
    files.write("a.json", b"1")
    for path in (".", "./", "./."):
        with pytest.raises(UserPathError, match="user folder itself"):
            files.delete(path)
        with pytest.raises(UserPathError):
            files.move(path, "x")
        with pytest.raises(UserPathError):
            files.write(path, b"")
    assert files.resolve("a.json").exists()


def test_a_symlink_out_of_the_folder_is_refused(files: UserFiles, tmp_path: Path) -> None:
    files.write("a.json", b"1")
    os.symlink(tmp_path / "user" / "other", files.resolve("a.json").parent / "neighbour")
    with pytest.raises(PathEscapeError):
        files.resolve("neighbour/private.json")
    with pytest.raises(PathEscapeError):
        files.write("neighbour/evil.json", b"x")
    assert not (tmp_path / "user" / "other" / "evil.json").exists()


PATHY = st.lists(
    st.sampled_from(["a", ".", "..", "/", "\\", "\x00", "%2e", "users.json", "other", "é", " "]),
    max_size=8,
).map("".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.one_of(PATHY, st.text(max_size=30)))
def test_any_path_resolves_inside_the_user_folder_or_fails_with_a_domain_error(
    files: UserFiles, path: str
) -> None:
    root = files.real_root
    try:
        resolved = files.resolve(path)
    except (UserPathError, PathEscapeError):
        return
    assert resolved == root or root in resolved.parents


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.one_of(PATHY, st.text(max_size=20)))
def test_any_write_lands_inside_the_user_folder_or_fails_cleanly(
    files: UserFiles, tmp_path: Path, path: str
) -> None:
    try:
        written = files.write(path, b"x")
    except (UserPathError, PathEscapeError, OSError):
        pass
    else:
        assert files.real_root in written.parents
    assert (tmp_path / "user" / "users.json").read_text() == "{}"
    assert os.listdir(tmp_path / "user" / "other") == ["private.json"]
