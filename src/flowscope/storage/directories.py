"""The data directory layout (ComfyUI's: input/, output/, temp/, user/, models/, custom_nodes/)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FileType = Literal["input", "output", "temp"]
FILE_TYPES: tuple[FileType, ...] = ("input", "output", "temp")


class PathEscapeError(ValueError):
    """A user-supplied name would resolve outside the directory it must stay in."""


def safe_join(root: Path, *parts: str) -> Path:
    """Join `parts` under `root`, refusing absolute parts, `..` escapes and symlinks out of root."""
    root_real = Path(os.path.realpath(root))
    for part in parts:
        if part and (os.path.isabs(part) or part.startswith(("/", "\\"))):
            raise PathEscapeError(f"absolute path {part!r} is not allowed here")
    candidate = Path(os.path.realpath(root_real.joinpath(*[p for p in parts if p])))
    if candidate != root_real and root_real not in candidate.parents:
        raise PathEscapeError(f"{'/'.join(parts)!r} leaves {root}")
    return candidate


def split_annotated_name(name: str, default: FileType = "input") -> tuple[str, FileType]:
    """`"x.png [output]"` -> (`"x.png"`, `"output"`); names without an annotation keep `default`."""
    for kind in FILE_TYPES:
        suffix = f" [{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, default


@dataclass(frozen=True)
class Directories:
    """The folders one flowscope instance reads and writes; every path is absolute."""

    base: Path
    input: Path
    output: Path
    temp: Path
    user: Path
    models: Path
    custom_nodes: Path

    @classmethod
    def under(
        cls,
        base: str | os.PathLike[str],
        *,
        input: str | os.PathLike[str] | None = None,
        output: str | os.PathLike[str] | None = None,
        temp: str | os.PathLike[str] | None = None,
        user: str | os.PathLike[str] | None = None,
    ) -> Directories:
        root = Path(base).absolute()
        return cls(
            base=root,
            input=Path(input).absolute() if input else root / "input",
            output=Path(output).absolute() if output else root / "output",
            temp=Path(temp).absolute() if temp else root / "temp",
            user=Path(user).absolute() if user else root / "user",
            models=root / "models",
            custom_nodes=root / "custom_nodes",
        )

    def ensure(self) -> None:
        """Create every folder that does not exist yet."""
        for path in (self.input, self.output, self.temp, self.user, self.models, self.custom_nodes):
            path.mkdir(parents=True, exist_ok=True)

    def for_type(self, kind: FileType) -> Path:
        """The folder for a ComfyUI file `type` (`input`, `output` or `temp`)."""
        if kind == "input":
            return self.input
        if kind == "output":
            return self.output
        if kind == "temp":
            return self.temp
        raise ValueError(f"unknown file type {kind!r}; expected one of {', '.join(FILE_TYPES)}")

    def resolve_annotated(self, name: str, default: FileType = "input") -> Path:
        """The path of an annotated name such as `"sub/x.png [output]"`, kept inside its folder."""
        plain, kind = split_annotated_name(name, default)
        return safe_join(self.for_type(kind), plain)
