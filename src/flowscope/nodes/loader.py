"""Loading custom node packs (ComfyUI's `custom_nodes` folders) into a NodeRegistry.

Nothing here prints: each pack's outcome comes back as a result, and the caller formats the tables.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import tomllib
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from flowscope.nodes.registry import NodeRegistry

CUSTOM_NODES_PACKAGE = "custom_nodes"
PRESTARTUP_SCRIPT = "prestartup_script.py"
_DISABLED_SUFFIX = ".disabled"


@dataclass
class PackLoadResult:
    """What happened to one entry of a custom_nodes folder."""

    path: Path
    # Shown as `python_module` in /object_info: "custom_nodes.<pack name>".
    module_name: str
    seconds: float
    # The formatted traceback when importing (or reading the pack's exports) raised.
    error: str | None = None
    nodes: list[str] = field(default_factory=list)
    ignored_builtins: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    web_directory: Path | None = None
    skipped_reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def loaded(self) -> bool:
        """Whether the pack was imported and its NODE_CLASS_MAPPINGS registered."""
        return self.error is None and self.skipped_reason is None


@dataclass
class PrestartupResult:
    """One pack's `prestartup_script.py` run."""

    path: Path  # the pack folder, as ComfyUI's table shows it
    script: Path
    seconds: float
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


class _PackExportError(Exception):
    """A pack imported but exports something the loader cannot use."""


def pack_name(path: Path) -> str:
    """The pack's name: the folder name, or the file name without `.py`."""
    return path.stem if path.suffix == ".py" and path.is_file() else path.name


def sys_modules_key(path: Path) -> str:
    """The `sys.modules` key of a pack: its full path with "." replaced by "_x_", as ComfyUI does.

    Dots would make the import system read the path as a dotted package name, which breaks the
    pack's relative imports (`from .nodes import X` resolves to `<key>.nodes`).
    """
    if path.suffix == ".py" and path.is_file():
        path = path.with_suffix("")
    return os.path.abspath(path).replace(".", "_x_")


def _pack_entries(folder: Path) -> Iterator[Path]:
    """The candidate packs of one folder, in sorted order; a missing folder has none."""
    try:
        names = sorted(os.listdir(os.path.realpath(folder)))
    except (FileNotFoundError, NotADirectoryError):
        return
    base = Path(os.path.abspath(folder))
    for name in names:
        path = base / name
        if name == "__pycache__" or name.endswith(_DISABLED_SUFFIX):
            continue
        if path.is_file() and path.suffix != ".py":
            continue
        yield path


def load_custom_node_packs(registry: NodeRegistry, folders: Sequence[Path]) -> list[PackLoadResult]:
    """Import every pack of `folders`, in order, and register its nodes as non-built-ins.

    A pack that fails to import is reported and the others still load; a pack's nodes are only
    registered once its import has fully succeeded, so a failure never leaves half a pack behind.
    """
    return [_load_pack(registry, path) for folder in folders for path in _pack_entries(folder)]


def _load_pack(registry: NodeRegistry, path: Path) -> PackLoadResult:
    name = pack_name(path)
    result = PackLoadResult(path=path, module_name=f"{CUSTOM_NODES_PACKAGE}.{name}", seconds=0.0)
    started = time.perf_counter()
    if path.is_dir() and not (path / "__init__.py").is_file():
        result.skipped_reason = "no __init__.py"
        result.seconds = time.perf_counter() - started
        return result
    try:
        module = _import_pack(path)
        mappings, display_names = _node_mappings(module)
        web_directories = _web_directories(module, path, name)
    except _PackExportError as exc:
        result.error = f"{path}: {exc}"
        result.seconds = time.perf_counter() - started
        return result
    except (Exception, SystemExit) as exc:  # a broken pack must not stop the server starting
        result.error = _format_pack_error(exc)
        result.seconds = time.perf_counter() - started
        return result

    registry.web_directories.update(web_directories)
    # The module's WEB_DIRECTORY is served under the pack name; pyproject's under the project name.
    result.web_directory = web_directories.get(name) or next(iter(web_directories.values()), None)
    if mappings is None:
        result.skipped_reason = "no NODE_CLASS_MAPPINGS"
        if hasattr(module, "comfy_entrypoint"):
            result.skipped_reason += " (V3 comfy_entrypoint packs are not supported)"
    else:
        report = registry.register_mappings(
            mappings, display_names, python_module=result.module_name, builtin=False
        )
        result.nodes = report.added
        result.ignored_builtins = report.ignored_builtins
        result.replaced = report.replaced
    result.seconds = time.perf_counter() - started
    return result


def _import_pack(path: Path) -> ModuleType:
    """Execute a pack folder's `__init__.py` (as a package) or a single `.py` file."""
    key = sys_modules_key(path)
    if path.is_dir():
        # submodule_search_locations makes it a package, so its relative imports resolve.
        spec = importlib.util.spec_from_file_location(
            key, path / "__init__.py", submodule_search_locations=[str(path)]
        )
    else:
        spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot build an import spec for {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        # As the import system does, drop the half-initialised module, and here its submodules too.
        for loaded in [k for k in sys.modules if k == key or k.startswith(key + ".")]:
            del sys.modules[loaded]
        raise
    return module


def _node_mappings(module: ModuleType) -> tuple[dict[str, type] | None, dict[str, str]]:
    """NODE_CLASS_MAPPINGS (None when absent) and NODE_DISPLAY_NAME_MAPPINGS, checked."""
    mappings: Any = getattr(module, "NODE_CLASS_MAPPINGS", None)
    display_names: Any = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
    if not isinstance(display_names, Mapping):
        raise _PackExportError(
            f"NODE_DISPLAY_NAME_MAPPINGS is a {type(display_names).__name__}, not a dict"
        )
    if mappings is None:
        return None, dict(display_names)
    if not isinstance(mappings, Mapping):
        raise _PackExportError(f"NODE_CLASS_MAPPINGS is a {type(mappings).__name__}, not a dict")
    not_classes = [str(k) for k, v in mappings.items() if not isinstance(v, type)]
    if not_classes:
        raise _PackExportError(
            "NODE_CLASS_MAPPINGS values must be node classes; not a class: "
            + ", ".join(not_classes)
        )
    return {str(k): v for k, v in mappings.items()}, {
        str(k): str(v) for k, v in display_names.items()
    }


def _web_directories(module: ModuleType, path: Path, name: str) -> dict[str, Path]:
    """The pack's static web folders: pyproject's `[tool.comfy] web`, then WEB_DIRECTORY.

    WEB_DIRECTORY is relative to the pack folder (for a single-file pack, the folder holding it).
    """
    found: dict[str, Path] = {}
    pack_dir = path if path.is_dir() else path.parent
    pyproject = _pyproject_web_directory(pack_dir, name) if path.is_dir() else None
    if pyproject is not None:
        found[pyproject[0]] = pyproject[1]
    declared: Any = getattr(module, "WEB_DIRECTORY", None)
    if declared is not None:
        if not isinstance(declared, (str, os.PathLike)):
            raise _PackExportError(f"WEB_DIRECTORY is a {type(declared).__name__}, not a path")
        web_dir = Path(os.path.abspath(pack_dir / declared))
        if web_dir.is_dir():
            found[name] = web_dir
    return found


def _pyproject_web_directory(pack_dir: Path, name: str) -> tuple[str, Path] | None:
    """(project name, folder) from the pack's pyproject.toml, if it declares an existing one."""
    try:
        with (pack_dir / "pyproject.toml").open("rb") as file:
            config = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError):
        # The file is packaging metadata: a missing or broken one does not fail the pack.
        return None
    web = config.get("tool", {}).get("comfy", {}).get("web")
    if not isinstance(web, str) or not web:
        return None
    web_dir = Path(os.path.abspath(pack_dir / web))
    if not web_dir.is_dir():
        return None
    project_name = config.get("project", {}).get("name")
    return (project_name if isinstance(project_name, str) and project_name else name), web_dir


def _format_pack_error(exc: BaseException) -> str:
    """The traceback, starting at the pack's own code rather than at the loader and importlib."""
    tb = exc.__traceback__
    while tb is not None and _is_loader_frame(tb):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _is_loader_frame(tb: TracebackType) -> bool:
    filename = tb.tb_frame.f_code.co_filename
    return filename == __file__ or filename.startswith("<frozen importlib")


def run_prestartup_scripts(folders: Sequence[Path]) -> list[PrestartupResult]:
    """Execute each pack folder's `prestartup_script.py` (ComfyUI runs these before torch loads)."""
    results: list[PrestartupResult] = []
    for folder in folders:
        for path in _pack_entries(folder):
            script = path / PRESTARTUP_SCRIPT
            if not path.is_dir() or not script.is_file():
                continue
            started = time.perf_counter()
            error: str | None = None
            try:
                _run_script(script)
            except (Exception, SystemExit) as exc:  # a broken script must not stop start-up
                error = _format_pack_error(exc)
            results.append(
                PrestartupResult(path, script, time.perf_counter() - started, error=error)
            )
    return results


def _run_script(script: Path) -> None:
    # Not put in sys.modules: the script runs once for its side effects.
    spec = importlib.util.spec_from_file_location(sys_modules_key(script), script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot build an import spec for {script}")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def format_import_times(results: Sequence[PackLoadResult]) -> str:
    """ComfyUI's import-time table; a pack that did not load (failed or skipped) is flagged."""
    return _format_times(
        "Import times for custom nodes:",
        [(r.seconds, r.path, not r.loaded) for r in results],
        " (IMPORT FAILED)",
    )


def format_prestartup_times(results: Sequence[PrestartupResult]) -> str:
    return _format_times(
        "Prestartup times for custom nodes:",
        [(r.seconds, r.path, r.failed) for r in results],
        " (PRESTARTUP FAILED)",
    )


def _format_times(title: str, rows: list[tuple[float, Path, bool]], failed_mark: str) -> str:
    """Title, then `{seconds:6.1f} seconds{mark}: {path}` per row, fastest first; "" if no rows."""
    if not rows:
        return ""
    lines = [title]
    for seconds, path, failed in sorted(rows, key=lambda row: (row[0], str(row[1]))):
        lines.append(f"{seconds:6.1f} seconds{failed_mark if failed else ''}: {path}")
    return "\n".join(lines)
