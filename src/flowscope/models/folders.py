"""ComfyUI's model folders (`models/checkpoints`, `models/loras`, ...): which folder names exist,
where each one's files live (the base directory plus `extra_model_paths.yaml` files), what each
lists, and resolving a model name to its file without leaving the folder."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flowscope.storage.directories import Directories, PathEscapeError

# The weight formats ComfyUI's loaders accept (`folder_paths.supported_pt_extensions`).
PT_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})
# An empty set lists every file, as in ComfyUI (custom_nodes, folders added by a config file).
ALL_FILES: frozenset[str] = frozenset()
# Old folder names that configs and custom nodes still use.
LEGACY_NAMES = {"unet": "diffusion_models", "clip": "text_encoders"}
# A diffusers model is a folder holding this file; the `diffusers` folder lists those folders.
DIFFUSERS_MARKER = "model_index.json"
EXTRA_CONFIG_NAME = "extra_model_paths.yaml"
# /experiment/models leaves these out: they hold no models.
NOT_MODEL_FOLDERS = frozenset({"configs", "custom_nodes"})


@dataclass(frozen=True, slots=True)
class FolderSpec:
    name: str
    subdirs: tuple[str, ...]  # under models/, in search order
    extensions: frozenset[str]
    lists_model_dirs: bool = False  # list folders holding DIFFUSERS_MARKER instead of files


# ComfyUI's folders, in its order (what GET /models answers).
DEFAULT_FOLDERS: tuple[FolderSpec, ...] = (
    FolderSpec("checkpoints", ("checkpoints",), PT_EXTENSIONS),
    FolderSpec("configs", ("configs",), frozenset({".yaml"})),
    FolderSpec("loras", ("loras",), PT_EXTENSIONS),
    FolderSpec("vae", ("vae",), PT_EXTENSIONS),
    FolderSpec("text_encoders", ("text_encoders", "clip"), PT_EXTENSIONS),
    FolderSpec("diffusion_models", ("unet", "diffusion_models"), PT_EXTENSIONS),
    FolderSpec("clip_vision", ("clip_vision",), PT_EXTENSIONS),
    FolderSpec("style_models", ("style_models",), PT_EXTENSIONS),
    FolderSpec("embeddings", ("embeddings",), PT_EXTENSIONS),
    FolderSpec("diffusers", ("diffusers",), ALL_FILES, lists_model_dirs=True),
    FolderSpec("vae_approx", ("vae_approx",), PT_EXTENSIONS),
    FolderSpec("controlnet", ("controlnet", "t2i_adapter"), PT_EXTENSIONS),
    FolderSpec("gligen", ("gligen",), PT_EXTENSIONS),
    FolderSpec("upscale_models", ("upscale_models",), PT_EXTENSIONS),
    FolderSpec("custom_nodes", (), ALL_FILES),  # the base directory's custom_nodes/
    FolderSpec("hypernetworks", ("hypernetworks",), PT_EXTENSIONS),
    FolderSpec("photomaker", ("photomaker",), PT_EXTENSIONS),
    FolderSpec("classifiers", ("classifiers",), frozenset({""})),  # files without an extension
    FolderSpec("model_patches", ("model_patches",), PT_EXTENSIONS),
    FolderSpec("audio_encoders", ("audio_encoders",), PT_EXTENSIONS),
)


def canonical_folder_name(name: str) -> str:
    """`unet` -> `diffusion_models`, `clip` -> `text_encoders`; other names unchanged."""
    return LEGACY_NAMES.get(name, name)


class UnknownFolderError(LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"there is no model folder {name!r}; known folders: {', '.join(known)}")
        self.name = name


class ExtraModelPathsError(ValueError):
    """An extra_model_paths.yaml that cannot be read; the message names the file and the key."""


# --- extra_model_paths.yaml -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExtraModelPath:
    folder: str  # canonical name (legacy names mapped)
    path: Path
    is_default: bool  # searched before the base directory's folder
    source: Path  # the config file it came from


def read_extra_model_paths(config: Path) -> list[ExtraModelPath]:
    """The folders an `extra_model_paths.yaml` adds, in file order (ComfyUI's format).

    Each top-level section maps folder names to paths; a value may hold several paths, one per
    line (`|` blocks). `base_path` (with `~` and `$VARS` expanded) prefixes the section's relative
    paths; without it they are relative to the config file's folder. `is_default: true` puts the
    section's paths before the built-in ones.
    """
    try:
        text = config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExtraModelPathsError(f"cannot read {config}: {exc}") from exc
    return parse_extra_model_paths(text, source=Path(os.path.abspath(config)))


def parse_extra_model_paths(text: str, *, source: Path) -> list[ExtraModelPath]:
    """`read_extra_model_paths` on the text of a config file located at `source`."""
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExtraModelPathsError(f"{source} is not valid YAML: {exc}") from exc
    if document is None:
        return []
    if not isinstance(document, dict):
        raise ExtraModelPathsError(
            f"{source}: expected sections of folder names (a mapping), not {_kind(document)}"
        )
    found: list[ExtraModelPath] = []
    for section_name, section in document.items():
        if section is None:
            continue
        where = f"{source}, section {section_name!r}"
        if not isinstance(section, dict):
            raise ExtraModelPathsError(f"{where}: expected a mapping, not {_kind(section)}")
        entries = dict(section)
        base = _base_path(entries.pop("base_path", None), source, where)
        is_default = entries.pop("is_default", False)
        if not isinstance(is_default, bool):
            raise ExtraModelPathsError(f"{where}: is_default must be true or false")
        for folder, value in entries.items():
            for line in _path_lines(value, f"{where}, key {folder!r}"):
                path = Path(os.path.normpath(os.path.join(base, _expand(line))))
                found.append(
                    ExtraModelPath(canonical_folder_name(str(folder)), path, is_default, source)
                )
    return found


def _base_path(value: Any, source: Path, where: str) -> str:
    if value is None:
        return str(source.parent)
    if not isinstance(value, str):
        raise ExtraModelPathsError(f"{where}: base_path must be a path, not {_kind(value)}")
    # Relative to the config file, not to wherever the server happens to be started.
    return os.path.join(source.parent, _expand(value.strip()))


def _path_lines(value: Any, where: str) -> Iterator[str]:
    if isinstance(value, str):
        lines: list[Any] = value.split("\n")
    elif isinstance(value, list):
        lines = value
    else:
        raise ExtraModelPathsError(f"{where}: expected a path or paths, not {_kind(value)}")
    for line in lines:
        if not isinstance(line, str):
            raise ExtraModelPathsError(f"{where}: expected a path, not {_kind(line)}")
        if line.strip():
            yield line.strip()


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__}"


# --- listing ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str  # relative to its root, `/`-separated: `sub/model.safetensors`
    path_index: int  # which of the folder's roots holds it
    size: int
    modified: float
    created: float


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    size: int
    modified: float
    created: float


@dataclass(frozen=True, slots=True)
class _Scan:
    entries: tuple[_Entry, ...]
    dir_mtimes: tuple[tuple[str, float], ...]  # every folder walked, to tell when it changed
    generation: int


def _walk(root: str) -> tuple[list[_Entry], list[tuple[str, float]]]:
    """Every non-hidden file under `root`, following links once (a link loop is walked once)."""
    entries: list[_Entry] = []
    dirs: list[tuple[str, float]] = []
    seen: set[str] = set()
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            dirs.append((folder, os.stat(folder).st_mtime))
            with os.scandir(folder) as listing:
                children = list(listing)
        except OSError:
            continue  # vanished or unreadable: list what can be read
        for child in children:
            if child.name.startswith("."):
                continue
            name = prefix + child.name
            try:
                if child.is_dir():
                    pending.append((child.path, name + "/"))
                elif child.is_file():
                    stat = child.stat()
                    entries.append(_Entry(name, stat.st_size, stat.st_mtime, stat.st_ctime))
            except OSError:
                continue  # a dangling link
    return entries, dirs


class ModelFolders:
    """The model folder table of one flowscope instance, with cached listings.

    A listing is cached per root folder and reused while none of the folders walked has a new
    mtime (adding, removing or renaming a file changes its folder's mtime), so listing a large
    model library costs a few `stat` calls.
    """

    def __init__(self, models_dir: Path, custom_nodes_dir: Path) -> None:
        models = Path(os.path.abspath(models_dir))
        self._custom_nodes_dir = Path(os.path.abspath(custom_nodes_dir))
        self._roots: dict[str, list[Path]] = {}
        self._extensions: dict[str, frozenset[str]] = {}
        self._model_dirs: set[str] = set()
        for spec in DEFAULT_FOLDERS:
            roots = [models / sub for sub in spec.subdirs] or [self._custom_nodes_dir]
            self._roots[spec.name] = roots
            self._extensions[spec.name] = spec.extensions
            if spec.lists_model_dirs:
                self._model_dirs.add(spec.name)
        self._scans: dict[str, _Scan] = {}
        self._lock = threading.Lock()
        self._generation = 0

    @classmethod
    def from_directories(
        cls, directories: Directories, extra_configs: Sequence[Path] = ()
    ) -> ModelFolders:
        """The base directory's folders, then `BASE/extra_model_paths.yaml` if it exists, then
        each of `extra_configs` (`--extra-model-paths-config`), in order."""
        folders = cls(directories.models, directories.custom_nodes)
        base_config = directories.base / EXTRA_CONFIG_NAME
        configs = [base_config] if base_config.is_file() else []
        for config in [*configs, *extra_configs]:
            folders.add_extra_paths(read_extra_model_paths(config))
        return folders

    # --- the table ---

    def names(self) -> list[str]:
        """Every folder name, ComfyUI's first and in its order (GET /models)."""
        return list(self._roots)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_folder_name(name) in self._roots

    def paths(self, folder: str) -> list[Path]:
        """The folder's roots, in search order."""
        return list(self._roots[self._known(folder)])

    def extensions(self, folder: str) -> frozenset[str]:
        """The file extensions the folder lists (empty: every file)."""
        return self._extensions[self._known(folder)]

    def as_dict(self) -> dict[str, list[str]]:
        """{folder: [absolute roots]} (GET /internal/folder_paths)."""
        return {name: [str(root) for root in roots] for name, roots in self._roots.items()}

    def add_path(self, folder: str, path: Path, *, is_default: bool = False) -> None:
        """Search `path` for `folder` too: first when `is_default`, else last. A new folder name
        lists every file, as in ComfyUI."""
        name = canonical_folder_name(folder)
        root = Path(os.path.abspath(path))
        roots = self._roots.setdefault(name, [])
        self._extensions.setdefault(name, ALL_FILES)
        if root in roots:
            return
        if is_default:
            roots.insert(0, root)
        else:
            roots.append(root)

    def add_extra_paths(self, extra: Iterable[ExtraModelPath]) -> None:
        for entry in extra:
            self.add_path(entry.folder, entry.path, is_default=entry.is_default)

    @property
    def custom_node_folders(self) -> list[Path]:
        """Every custom node folder, the base directory's included, in search order."""
        return self.paths("custom_nodes")

    @property
    def extra_custom_node_folders(self) -> list[Path]:
        """The custom node folders config files added (what `load_catalog` takes as extras)."""
        return [p for p in self.paths("custom_nodes") if p != self._custom_nodes_dir]

    # --- listing ---

    def filenames(self, folder: str) -> list[str]:
        """The names a loader's combo offers: `sub/file.safetensors`, sorted, without repeats."""
        name = self._known(folder)
        return sorted({file.name for file in self._files(name)})

    def files(self, folder: str) -> list[ModelFile]:
        """Every file of every root, with its root's index (GET /experiment/models/{folder})."""
        return list(self._files(self._known(folder)))

    def fingerprint(self, folders: Iterable[str] | None = None) -> tuple[int, ...]:
        """Changes whenever a listing of `folders` would; by default every folder but
        custom_nodes (node packs do not change while the server runs)."""
        if folders is None:
            names = [name for name in self._roots if name != "custom_nodes"]
        else:
            names = [self._known(folder) for folder in folders]
        return tuple(self._scan(root).generation for name in names for root in self._roots[name])

    def model_names(self) -> list[str]:
        """The folders that hold models (GET /experiment/models): all but configs, custom_nodes."""
        return [name for name in self._roots if name not in NOT_MODEL_FOLDERS]

    def _files(self, name: str) -> Iterator[ModelFile]:
        extensions = self._extensions[name]
        for index, root in enumerate(self._roots[name]):
            entries = self._scan(root).entries
            if name in self._model_dirs:
                yield from _model_dirs(entries, index)
                continue
            for entry in entries:
                if extensions and os.path.splitext(entry.name)[1].lower() not in extensions:
                    continue
                yield ModelFile(entry.name, index, entry.size, entry.modified, entry.created)

    def _scan(self, root: Path) -> _Scan:
        key = str(root)
        cached = self._scans.get(key)
        if cached is not None and _unchanged(cached):
            return cached
        entries, dirs = _walk(key)
        if cached is not None and cached.entries == tuple(entries):
            # Same files (e.g. a root that still does not exist): same generation, so
            # fingerprints only change when a listing does.
            scan = _Scan(cached.entries, tuple(dirs), cached.generation)
        else:
            with self._lock:
                self._generation += 1
                scan = _Scan(tuple(entries), tuple(dirs), self._generation)
        self._scans[key] = scan
        return scan

    # --- resolving ---

    def full_path(self, folder: str, name: str) -> Path | None:
        """The file `name` (as listed) of `folder`, from the first root that has it; None if none.

        Raises PathEscapeError for a name that is absolute or climbs out (`..`); links inside a
        root are followed, since model libraries are often linked in from elsewhere.
        """
        folder_name = self._known(folder)
        parts = model_name_parts(name)
        model_dirs = folder_name in self._model_dirs
        for root in self._roots[folder_name]:
            candidate = root.joinpath(*parts)
            if (candidate / DIFFUSERS_MARKER).is_file() if model_dirs else candidate.is_file():
                return candidate
        return None

    def path_in(self, folder: str, path_index: int, name: str) -> Path:
        """`name` under the folder's root number `path_index` (it may not exist).

        Raises UnknownFolderError, IndexError for a root that does not exist, PathEscapeError.
        """
        roots = self._roots[self._known(folder)]
        if not 0 <= path_index < len(roots):
            raise IndexError(f"{folder} has {len(roots)} root folder(s), not #{path_index}")
        return roots[path_index].joinpath(*model_name_parts(name))

    def _known(self, folder: str) -> str:
        name = canonical_folder_name(folder)
        if name not in self._roots:
            raise UnknownFolderError(folder, self._roots)
        return name


def model_name_parts(name: str) -> list[str]:
    """The path parts of a model name; `\\` counts as a separator (names saved on Windows).

    Raises PathEscapeError for an empty, absolute or climbing (`..`) name.
    """
    if not name or "\0" in name:
        raise PathEscapeError(f"{name!r} is not a file name")
    text = name.replace("\\", "/")
    if text.startswith("/") or (os.name == "nt" and os.path.splitdrive(text)[0]):
        raise PathEscapeError(f"absolute path {name!r} is not allowed here")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts:
        raise PathEscapeError(f"{name!r} is not a file name")
    if ".." in parts:
        raise PathEscapeError(f"{name!r} climbs out of the model folder")
    return parts


def _unchanged(scan: _Scan) -> bool:
    for folder, mtime in scan.dir_mtimes:
        try:
            if os.stat(folder).st_mtime != mtime:
                return False
        except OSError:
            return False
    # A root that did not exist has no recorded mtime: look again (one failing stat).
    return bool(scan.dir_mtimes)


def _model_dirs(entries: Iterable[_Entry], index: int) -> Iterator[ModelFile]:
    for entry in entries:
        folder, _, file_name = entry.name.rpartition("/")
        if file_name == DIFFUSERS_MARKER and folder:
            yield ModelFile(folder, index, 0, entry.modified, entry.created)
