"""The editor's files: the frontend build (comfyui-frontend-package or `--front-end-root`), the
custom node packs' web folders, locales and example workflows, and the workflow templates."""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import os
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from flowscope.server.context import ServerContext
from flowscope.storage.directories import PathEscapeError, safe_join

FRONTEND_PACKAGE = "comfyui_frontend_package"
FRONTEND_DISTRIBUTION = "comfyui-frontend-package"
TEMPLATES_PACKAGE = "comfyui_workflow_templates"
TEMPLATES_DISTRIBUTION = "comfyui-workflow-templates"
# ComfyUI's patterns for a pack's example workflow folders (example_workflows, examples, ...).
TEMPLATE_DIR_PATTERNS = ("*example*", "*workflow*")
# locales/<lang>/main.json is merged whole; these land under their own key (nodeDefs, ...).
EXTRA_LOCALE_FILES = ("nodeDefs.json", "commands.json", "settings.json")
SUBGRAPHS_DIR = "subgraphs"  # a pack's reusable subgraphs (blueprints), offered in the editor
SUBGRAPH_SOURCE = "custom_node"
_NOT_FOUND = Response(status_code=404)


def static_root(front_end_root: Path | None) -> Path:
    """The folder holding the editor's index.html; a clear error when there is none."""
    if front_end_root is not None:
        root = Path(os.path.abspath(front_end_root))
        if not (root / "index.html").is_file():
            raise FileNotFoundError(
                f"--front-end-root {front_end_root}: no index.html there; point it at a built "
                "ComfyUI frontend (the folder holding index.html and assets/)"
            )
        return root
    spec = importlib.util.find_spec(FRONTEND_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the ComfyUI editor is not installed: `pip install {FRONTEND_DISTRIBUTION}` "
            "(a flowscope dependency), or pass --front-end-root DIR"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (root / "index.html").is_file():
        raise FileNotFoundError(
            f"{FRONTEND_DISTRIBUTION} is installed without its static files ({root}); "
            f"reinstall it, or pass --front-end-root DIR"
        )
    return root


def frontend_version() -> str | None:
    """The installed comfyui-frontend-package's version, or None."""
    return _distribution_version(FRONTEND_DISTRIBUTION)


def templates_version() -> str | None:
    return _distribution_version(TEMPLATES_DISTRIBUTION)


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def templates_root() -> Path | None:
    """The `templates/` folder of comfyui-workflow-templates, when an installed version has one."""
    if importlib.util.find_spec(TEMPLATES_PACKAGE) is None:
        return None
    try:
        root = importlib.resources.files(TEMPLATES_PACKAGE) / "templates"
    except (ImportError, TypeError):
        return None  # a namespace package or a broken install: no templates
    path = Path(str(root))
    return path if path.is_dir() else None


# --- what the editor asks about custom node packs ---------------------------------------------


def extension_scripts(static: Path | None, web_directories: Mapping[str, Path]) -> list[str]:
    """GET /extensions: the build's own `extensions/**.js`, then every pack's web folder's."""
    scripts: list[str] = []
    if static is not None:
        extensions = static / "extensions"
        scripts.extend("/extensions/" + relative for relative in _scripts_under(extensions))
    for name, folder in web_directories.items():
        prefix = f"/extensions/{urllib.parse.quote(name)}/"
        scripts.extend(prefix + relative for relative in _scripts_under(folder))
    return scripts


def _scripts_under(folder: Path) -> list[str]:
    pattern = os.path.join(glob.escape(str(folder)), "**", "*.js")
    found = glob.glob(pattern, recursive=True)
    return sorted(os.path.relpath(path, folder).replace(os.sep, "/") for path in found)


def pack_folders(custom_node_folders: Iterable[Path]) -> Iterator[Path]:
    """Every pack folder of the custom node folders, sorted per folder."""
    for folder in custom_node_folders:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            path = folder / name
            if path.is_dir() and name != "__pycache__":
                yield path


def template_folders(pack: Path) -> list[Path]:
    found = {
        os.path.normpath(path)
        for pattern in TEMPLATE_DIR_PATTERNS
        for path in glob.glob(os.path.join(glob.escape(str(pack)), pattern))
        if os.path.isdir(path)
    }
    return [Path(path) for path in sorted(found)]


def workflow_templates(custom_node_folders: Iterable[Path]) -> dict[str, list[str]]:
    """GET /workflow_templates: {pack: [workflow names]}; packs without examples are left out."""
    templates: dict[str, list[str]] = {}
    for pack in pack_folders(custom_node_folders):
        names = {
            Path(path).stem
            for folder in template_folders(pack)
            for path in glob.glob(os.path.join(glob.escape(str(folder)), "*.json"))
        }
        if names:
            templates.setdefault(pack.name, [])
            templates[pack.name].extend(sorted(names - set(templates[pack.name])))
    return templates


def translations(custom_node_folders: Iterable[Path]) -> dict[str, Any]:
    """GET /i18n: every pack's `locales/<lang>/` merged into {lang: {...}}, later packs winning."""
    merged: dict[str, Any] = {}
    for pack in pack_folders(custom_node_folders):
        locales = pack / "locales"
        if not locales.is_dir():
            continue
        for lang_dir in sorted(p for p in locales.iterdir() if p.is_dir()):
            found = _json_object(lang_dir / "main.json")
            for file_name in EXTRA_LOCALE_FILES:
                extra = _json_object(lang_dir / file_name)
                if extra:
                    found[file_name.removesuffix(".json")] = extra
            if found:
                merged[lang_dir.name] = _merge(merged.get(lang_dir.name, {}), found)
    return merged


def _json_object(path: Path) -> dict[str, Any]:
    # A pack's broken locale file must not take the editor's translations down with it.
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


@dataclass(frozen=True, slots=True)
class PackSubgraph:
    """A reusable subgraph a pack ships in `subgraphs/*.json` (the editor's blueprints)."""

    id: str  # a hash of where the file is: the same across restarts
    name: str
    path: str  # `<pack>/subgraphs/<file>.json`
    pack: str
    file: Path

    def entry(self) -> dict[str, Any]:
        """The `/global_subgraphs` entry (without the file's contents)."""
        info = {"node_pack": self.pack}
        return {"source": SUBGRAPH_SOURCE, "name": self.name, "path": self.path, "info": info}


def pack_subgraphs(custom_node_folders: Iterable[Path]) -> dict[str, PackSubgraph]:
    """Every pack's `subgraphs/*.json`, by id."""
    found: dict[str, PackSubgraph] = {}
    for pack in pack_folders(custom_node_folders):
        for file in sorted((pack / SUBGRAPHS_DIR).glob("*.json")):
            path = f"{pack.name}/{SUBGRAPHS_DIR}/{file.name}"
            subgraph_id = hashlib.sha256(f"{SUBGRAPH_SOURCE}{path}".encode()).hexdigest()
            found[subgraph_id] = PackSubgraph(subgraph_id, file.stem, path, pack.name, file)
    return found


def find_pack_file(custom_node_folders: Sequence[Path], pack: str, relative: str) -> Path | None:
    """A pack's example workflow file (`/api/workflow_templates/<pack>/<file>`), or None."""
    for folder in custom_node_folders:
        try:
            pack_dir = safe_join(folder, pack)
        except PathEscapeError:
            return None
        if pack_dir == Path(os.path.realpath(folder)) or not pack_dir.is_dir():
            continue
        for templates in template_folders(pack_dir):
            try:
                candidate = safe_join(templates, relative)
            except PathEscapeError:
                return None
            if candidate.is_file():
                return candidate
    return None


# --- mounting ---------------------------------------------------------------------------------


def mount(app: FastAPI, ctx: ServerContext) -> None:
    """The editor at `/`, pack web folders at `/extensions/<pack>/`, example workflows and the
    template library. Call last: the static root answers every path no route took."""
    static = static_root(ctx.settings.front_end_root)
    index = static / "index.html"
    folders = ctx.model_folders
    custom_node_folders = folders.custom_node_folders
    web_directories = ctx.registry.web_directories

    def editor() -> FileResponse:
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    def extension_file(pack: str, path: str) -> Response:
        web_directory = web_directories.get(pack)
        try:
            if web_directory is not None:
                found = safe_join(web_directory, path)
            else:  # the build's own scripts: /extensions/core/...
                found = safe_join(static / "extensions", pack, path)
        except PathEscapeError:
            return _NOT_FOUND
        return FileResponse(found) if found.is_file() else _NOT_FOUND

    def pack_workflow(pack: str, path: str) -> Response:
        found = find_pack_file(custom_node_folders, pack, path)
        return FileResponse(found) if found is not None else _NOT_FOUND

    get_or_head = ["GET", "HEAD"]
    app.add_api_route("/", editor, methods=get_or_head, include_in_schema=False)
    app.add_api_route(
        "/extensions/{pack}/{path:path}",
        extension_file,
        methods=get_or_head,
        include_in_schema=False,
    )
    app.add_api_route(
        "/api/workflow_templates/{pack}/{path:path}",
        pack_workflow,
        methods=get_or_head,
        include_in_schema=False,
    )
    templates = templates_root()
    if templates is not None:
        app.mount("/templates", StaticFiles(directory=templates), name="templates")
    else:
        # Without comfyui-workflow-templates the editor's template browser is simply empty.
        for path, empty in (("/templates/index.json", []), ("/templates/index_logo.json", {})):
            app.add_api_route(
                path,
                _constant_json(empty),
                methods=get_or_head,
                include_in_schema=False,
            )
    app.mount("/", StaticFiles(directory=static, html=True), name="frontend")


def _constant_json(value: Any) -> Callable[[], JSONResponse]:
    def answer() -> JSONResponse:
        return JSONResponse(value)

    return answer
