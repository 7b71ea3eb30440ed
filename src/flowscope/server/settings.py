"""The server's options: what `flowscope serve` takes from the command line (ComfyUI's flags
where they apply), with the defaults of an embedded single-machine install."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flowscope.storage.directories import Directories

DEFAULT_PORT = 8188
DEFAULT_MAX_UPLOAD_MB = 100
DATABASE_FILENAME = "flowscope.db"


def default_database_url(directories: Directories) -> str:
    return f"sqlite:///{directories.base / DATABASE_FILENAME}"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_upload_size: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024  # bytes, for every request body
    # `--enable-cors-header [ORIGIN]`: None keeps the loopback origin guard instead.
    cors_origin: str | None = None
    multi_user: bool = False
    disable_metadata: bool = False
    front_end_root: Path | None = None  # None: the installed comfyui-frontend-package
    # /readyz answers 503 once this many jobs wait (a load balancer then sends work elsewhere).
    ready_max_queue: int = 10_000
    preview_size: int = 512
    default_hashing_function: str = "sha256"
    # Workers the server runs (one per device), as threads or child processes; 0 when only
    # `flowscope worker` processes started by hand run jobs.
    workers: int = 1
    extra_model_paths: tuple[Path, ...] = ()  # extra_model_paths.yaml files (ComfyUI's format)
