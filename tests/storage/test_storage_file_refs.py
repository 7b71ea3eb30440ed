"""ComfyUI file references (`filename [type]`, `type`, `subfolder`) resolve inside their folder,
the way `/view` reads them, or fail with a domain error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope.storage.directories import Directories, PathEscapeError
from flowscope.storage.file_refs import (
    FileRefError,
    check_plain_name,
    parse_file_type,
    resolve_file,
    resolve_folder,
)


@pytest.fixture
def folders(tmp_path: Path) -> Directories:
    directories = Directories.under(tmp_path / "base")
    directories.ensure()
    return directories


def test_the_type_picks_the_folder_and_defaults_to_output(folders: Directories) -> None:
    assert resolve_file(folders, "x.png") == folders.output.resolve() / "x.png"
    assert resolve_file(folders, "x.png", "input") == folders.input.resolve() / "x.png"
    assert resolve_file(folders, "x.png", "temp", "a/b") == folders.temp.resolve() / "a/b/x.png"
    assert resolve_file(folders, "x.png", "", default="input") == folders.input.resolve() / "x.png"


def test_an_annotation_wins_over_the_type(folders: Directories) -> None:
    assert resolve_file(folders, "x.png [input]", "output") == folders.input.resolve() / "x.png"
    # Even an unknown type does not matter once the name says where it lives.
    assert resolve_file(folders, "x.png [temp]", "bogus") == folders.temp.resolve() / "x.png"


def test_the_folder_part_of_a_name_is_ignored_as_comfyui_does(folders: Directories) -> None:
    assert resolve_file(folders, "sub/x.png") == folders.output.resolve() / "x.png"


@pytest.mark.parametrize(
    "filename",
    [
        "",
        ".",
        "a/.",
        " [output]",
        "/etc/passwd",
        "\\server\\share",
        "../x.png",
        "a/../x.png",
        "x..png",
        "a/",
    ],
)
def test_malformed_names_are_refused(folders: Directories, filename: str) -> None:
    with pytest.raises(FileRefError):
        resolve_file(folders, filename)


@pytest.mark.parametrize(
    ("filename", "subfolder"), [("x\x00.png", ""), ("x.png", "a\x00"), ("\udcff.png", "")]
)
def test_text_no_path_can_hold_is_refused(
    folders: Directories, filename: str, subfolder: str
) -> None:
    with pytest.raises(FileRefError):
        resolve_file(folders, filename, subfolder=subfolder)


@pytest.mark.parametrize("subfolder", ["..", "../input", "a/../../x", "/etc", "/"])
def test_a_subfolder_leaving_the_folder_is_an_escape(folders: Directories, subfolder: str) -> None:
    with pytest.raises(PathEscapeError) as caught:
        resolve_file(folders, "x.png", subfolder=subfolder)
    assert str(folders.base) not in str(caught.value)  # no server paths in the message
    with pytest.raises(PathEscapeError):
        resolve_folder(folders, "output", subfolder)


def test_a_symlink_out_of_the_folder_is_an_escape(folders: Directories, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    (folders.output / "link.png").symlink_to(secret)
    (folders.output / "linkdir").symlink_to(tmp_path)
    with pytest.raises(PathEscapeError):
        resolve_file(folders, "link.png")
    with pytest.raises(PathEscapeError):
        resolve_file(folders, "secret.png", subfolder="linkdir")


def test_a_symlink_inside_the_folder_is_followed(folders: Directories) -> None:
    (folders.output / "real.png").write_bytes(b"x")
    (folders.output / "alias.png").symlink_to(folders.output / "real.png")
    assert resolve_file(folders, "alias.png") == folders.output.resolve() / "real.png"


def test_types_and_plain_names() -> None:
    assert parse_file_type(None, "input") == "input"
    assert parse_file_type("temp", "input") == "temp"
    with pytest.raises(FileRefError, match="unknown type 'models'"):
        parse_file_type("models", "input")
    assert check_plain_name("a b.png") == "a b.png"
    for bad in ("", ".", "..", "a/b", "a\\b", "a\x00"):
        with pytest.raises(FileRefError):
            check_plain_name(bad)


# Path-shaped text: the pieces traversal attempts are made of.
PATHY = st.lists(
    st.sampled_from(["a", ".", "..", "/", "\\", "\x00", " ", "%2e", "é", " [input]", "~"]),
    max_size=8,
).map("".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    filename=st.one_of(PATHY, st.text(max_size=30)),
    subfolder=st.one_of(PATHY, st.text(max_size=30)),
    kind=st.sampled_from([None, "", "input", "output", "temp", "models", "../x"]),
)
def test_any_reference_stays_inside_its_folder_or_fails_with_a_domain_error(
    folders: Directories, filename: str, subfolder: str, kind: str | None
) -> None:
    try:
        path = resolve_file(folders, filename, kind, subfolder)
    except (FileRefError, PathEscapeError):
        return
    roots = [Path(os.path.realpath(folders.for_type(name))) for name in ("input", "output", "temp")]
    assert any(root in path.parents for root in roots)
