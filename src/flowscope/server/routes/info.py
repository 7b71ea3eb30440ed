"""What the editor asks about this server (spec §4.1): node definitions (`/object_info`), system
stats, features, model folders and their files, custom packs' scripts, locales, example
workflows and subgraphs."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import threading
from io import BytesIO
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from flowscope import __version__
from flowscope.models import ModelFolders, UnknownFolderError
from flowscope.nodes.registry import NodeRegistry
from flowscope.server import frontend
from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError
from flowscope.storage.directories import PathEscapeError

# The ComfyUI release whose HTTP API and node protocol this server matches (spec snapshot).
COMFYUI_VERSION = "0.3.64"
METADATA_MAX_BYTES = 1024 * 1024  # as ComfyUI: a larger safetensors header is not metadata
PREVIEW_HEADER_MAX_BYTES = 8 * 1024 * 1024  # cover images are embedded in the header
PREVIEW_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


def router(ctx: ServerContext) -> APIRouter:
    routes = APIRouter(tags=["info"])
    folders = ctx.model_folders
    object_info = ObjectInfoCache(ctx.registry, folders, ctx.directories.input)
    try:
        static: Path | None = frontend.static_root(ctx.settings.front_end_root)
    except FileNotFoundError:
        static = None  # no editor installed: the API still answers
    translations: dict[str, Any] | None = None

    @routes.get("/object_info")
    def get_object_info() -> Response:
        return Response(object_info.body(), media_type="application/json")

    @routes.get("/object_info/{node_class}")
    def get_node_info(node_class: str) -> dict[str, Any]:
        try:
            info = ctx.registry.node_info(node_class)
        except Exception as exc:  # a broken custom node: say which, not a bare 500
            raise ApiError(
                500,
                f"node {node_class!r} cannot describe itself: {type(exc).__name__}: {exc}",
                type="node_definition_error",
                details="the node pack's INPUT_TYPES (or another class attribute) raised",
            ) from exc
        return {node_class: info} if info is not None else {}

    @routes.get("/system_stats")
    def get_system_stats() -> dict[str, Any]:
        return system_stats()

    @routes.get("/features")
    async def get_features() -> dict[str, Any]:
        return {
            "supports_preview_metadata": True,
            "max_upload_size": ctx.settings.max_upload_size,
        }

    @routes.get("/embeddings")
    def get_embeddings() -> list[str]:
        return [os.path.splitext(name)[0] for name in folders.filenames("embeddings")]

    @routes.get("/extensions")
    def get_extensions() -> list[str]:
        return frontend.extension_scripts(static, ctx.registry.web_directories)

    @routes.get("/models")
    async def get_model_folders() -> list[str]:
        return folders.names()

    @routes.get("/models/{folder}")
    def get_models(folder: str) -> list[str]:
        try:
            return folders.filenames(folder)
        except UnknownFolderError as exc:
            raise ApiError(404, str(exc), type="not_found") from exc

    @routes.get("/experiment/models")
    async def get_experiment_folders() -> list[dict[str, Any]]:
        return [
            {"name": name, "folders": [str(path) for path in folders.paths(name)]}
            for name in folders.model_names()
        ]

    @routes.get("/experiment/models/{folder}")
    def get_experiment_models(folder: str) -> list[dict[str, Any]]:
        try:
            files = folders.files(folder)
        except UnknownFolderError as exc:
            raise ApiError(404, str(exc), type="not_found") from exc
        return [
            {
                "name": file.name,
                "pathIndex": file.path_index,
                "modified": file.modified,
                "created": file.created,
                "size": file.size,
            }
            for file in files
        ]

    @routes.get("/experiment/models/preview/{folder}/{path_index}/{filename:path}")
    def get_model_preview(folder: str, path_index: int, filename: str) -> Response:
        try:
            model = folders.path_in(folder, path_index, filename)
        except (UnknownFolderError, IndexError, PathEscapeError) as exc:
            raise ApiError(404, str(exc), type="not_found") from exc
        image = model_preview_webp(model)
        if image is None:
            raise ApiError(404, f"no preview image for {filename!r}", type="not_found")
        return Response(image, media_type="image/webp")

    @routes.get("/view_metadata/{folder}")
    def get_view_metadata(folder: str, filename: str = "") -> dict[str, Any]:
        if not filename.endswith(".safetensors"):
            raise ApiError(404, "metadata is read from .safetensors files only", type="not_found")
        try:
            path = folders.full_path(folder, filename)
        except (UnknownFolderError, PathEscapeError) as exc:
            raise ApiError(404, str(exc), type="not_found") from exc
        header = safetensors_header(path, METADATA_MAX_BYTES) if path is not None else None
        metadata = header.get("__metadata__") if header is not None else None
        if not isinstance(metadata, dict):
            raise ApiError(404, f"{filename!r} has no safetensors metadata", type="not_found")
        return metadata

    @routes.get("/i18n")
    def get_i18n() -> dict[str, Any]:
        nonlocal translations
        if translations is None:  # packs do not change while the server runs
            translations = frontend.translations(folders.custom_node_folders)
        return translations

    @routes.get("/workflow_templates")
    def get_workflow_templates() -> dict[str, list[str]]:
        return frontend.workflow_templates(folders.custom_node_folders)

    @routes.get("/global_subgraphs")
    def get_global_subgraphs() -> dict[str, dict[str, Any]]:
        subgraphs = frontend.pack_subgraphs(folders.custom_node_folders)
        return {subgraph_id: subgraph.entry() for subgraph_id, subgraph in subgraphs.items()}

    @routes.get("/global_subgraphs/{subgraph_id}")
    def get_global_subgraph(subgraph_id: str) -> dict[str, Any]:
        subgraph = frontend.pack_subgraphs(folders.custom_node_folders).get(subgraph_id)
        if subgraph is None:
            raise ApiError(404, f"no subgraph {subgraph_id!r}", type="not_found")
        try:
            data = subgraph.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ApiError(404, f"subgraph {subgraph.path} cannot be read: {exc}") from exc
        return {**subgraph.entry(), "data": data}

    return routes


class ObjectInfoCache:
    """`/object_info` as JSON bytes, rebuilt only when what it shows can have changed.

    It is ~500 KB for a large install and the editor loads it on every page load. Combo inputs
    list model files and input images, so the key covers the registry, the model folders'
    listings and the input folder, besides the registry.
    """

    def __init__(self, registry: NodeRegistry, folders: ModelFolders, input_dir: Path) -> None:
        self._registry = registry
        self._folders = folders
        self._input_dir = input_dir
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._body = b""
        self.builds = 0

    def body(self) -> bytes:
        with self._lock:
            key = self._current_key()
            if key != self._key:
                info, _errors = self._registry.object_info()
                # default=str: one custom node's odd widget option must not fail the whole list.
                self._body = json.dumps(info, separators=(",", ":"), default=str).encode()
                self._key = key
                self.builds += 1
            return self._body

    def _current_key(self) -> tuple[Any, ...]:
        nodes = tuple((entry.class_type, id(entry.cls)) for entry in self._registry)
        try:
            inputs = os.stat(self._input_dir).st_mtime_ns
        except OSError:
            inputs = None
        return nodes, self._folders.fingerprint(), inputs


# --- system stats -----------------------------------------------------------------------------


def system_stats() -> dict[str, Any]:
    ram_total, ram_free = memory()
    torch_version, devices = _torch_devices(ram_total, ram_free)
    return {
        "system": {
            "os": os.name,
            "ram_total": ram_total,
            "ram_free": ram_free,
            "comfyui_version": COMFYUI_VERSION,
            "flowscope_version": __version__,
            "required_frontend_version": frontend.frontend_version(),
            "installed_templates_version": frontend.templates_version(),
            "required_templates_version": frontend.templates_version(),
            "python_version": sys.version,
            "pytorch_version": torch_version,
            "embedded_python": False,
            "argv": sys.argv,
        },
        "devices": devices,
    }


def memory() -> tuple[int, int]:
    """(total, available) RAM in bytes, from /proc/meminfo where there is one."""
    try:
        fields: dict[str, int] = {}
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                name, _, rest = line.partition(":")
                fields[name] = int(rest.split()[0]) * 1024  # the values are in kB
        return fields["MemTotal"], fields.get("MemAvailable", fields["MemFree"])
    except (OSError, KeyError, ValueError, IndexError):
        page = os.sysconf("SC_PAGE_SIZE")
        return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")


def _torch_devices(ram_total: int, ram_free: int) -> tuple[str, list[dict[str, Any]]]:
    cpu = {
        "name": "cpu",
        "type": "cpu",
        "index": None,
        "vram_total": ram_total,
        "vram_free": ram_free,
        "torch_vram_total": ram_total,
        "torch_vram_free": ram_free,
    }
    if "torch" not in sys.modules and not _may_have_gpu():
        # The editor asks on every page load: a server whose jobs run in a worker process
        # would otherwise load torch (~1.5 s, hundreds of MB) only to say "cpu".
        return _installed_version("torch"), [cpu]
    import torch

    if torch.cuda.is_available():
        devices = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            reserved = torch.cuda.memory_reserved(index)
            allocated = torch.cuda.memory_allocated(index)
            devices.append(
                {
                    "name": f"cuda:{index} {torch.cuda.get_device_name(index)}",
                    "type": "cuda",
                    "index": index,
                    "vram_total": total,
                    "vram_free": free,
                    "torch_vram_total": reserved,
                    "torch_vram_free": reserved - allocated,
                }
            )
        return str(torch.__version__), devices
    return str(torch.__version__), [cpu]


def _may_have_gpu() -> bool:
    """An NVIDIA driver is loaded, or this is a Mac (MPS): only torch can say more."""
    return sys.platform == "darwin" or os.path.exists("/proc/driver/nvidia")


def _installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


# --- model files ------------------------------------------------------------------------------


def safetensors_header(path: Path, max_bytes: int) -> dict[str, Any] | None:
    """A safetensors file's JSON header (8-byte little-endian length, then JSON), reading only
    the header; None if the file is not one or its header is larger than `max_bytes`."""
    try:
        with path.open("rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                return None
            length = int.from_bytes(prefix, "little")
            if length > max_bytes:
                return None
            raw = file.read(length)
    except OSError:
        return None
    if len(raw) < length:
        return None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def model_preview_webp(model: Path) -> bytes | None:
    """The model's preview as WEBP: a sidecar image (`model.png`, `model.preview.jpg`, ...) or
    the first of the safetensors header's `ssmd_cover_images`; None if it has neither."""
    from PIL import Image, UnidentifiedImageError

    source: Path | BytesIO | None = _sidecar_image(model)
    if source is None:
        source = _cover_image(model)
    if source is None:
        return None
    try:
        with Image.open(source) as image:
            out = BytesIO()
            image.save(out, format="WEBP")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return out.getvalue()


def _sidecar_image(model: Path) -> Path | None:
    stem = model.name[: -len(model.suffix)] if model.suffix else model.name
    for base in (stem, stem + ".preview"):
        for suffix in PREVIEW_SUFFIXES:
            candidate = model.with_name(base + suffix)
            if candidate.is_file():
                return candidate
    return None


def _cover_image(model: Path) -> BytesIO | None:
    import base64
    import binascii

    if model.suffix != ".safetensors" or not model.is_file():
        return None
    header = safetensors_header(model, PREVIEW_HEADER_MAX_BYTES)
    metadata = header.get("__metadata__") if header is not None else None
    covers = metadata.get("ssmd_cover_images") if isinstance(metadata, dict) else None
    if not isinstance(covers, str):
        return None
    try:
        images = json.loads(covers)
        return BytesIO(base64.b64decode(images[0], validate=True))
    except (ValueError, binascii.Error, IndexError, KeyError, TypeError):
        return None
