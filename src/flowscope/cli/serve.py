"""`flowscope serve`: the ComfyUI-compatible server with the editor, and `flowscope worker`: an
executor in its own process against the same job store (started by `serve` for each of its
workers, or next to it by hand)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowscope.cli.display import make_console
from flowscope.cli.model_options import add_model_arguments, model_arguments, model_manager
from flowscope.cli.telemetry_options import add_telemetry_arguments, telemetry_options
from flowscope.jobs.link import LINK_FD_FLAG
from flowscope.server.settings import (
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    ServerSettings,
    default_database_url,
)
from flowscope.storage.directories import Directories

if TYPE_CHECKING:
    from rich.console import Console

    from flowscope.jobs.worker_process import WorkerProcess
    from flowscope.models import ModelFolders
    from flowscope.models.manager import ModelManager
    from flowscope.nodes.registry import NodeRegistry
    from flowscope.server.runtime import ServerRuntime
    from flowscope.telemetry.setup import TelemetryOptions

EXIT_FAILED = 1
DEFAULT_WORKER_NICE = 10
ALL_INTERFACES = "0.0.0.0,::"


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """ComfyUI's flags where they apply, with the same names and defaults."""
    parser.add_argument("--output-directory", help="where SaveImage writes (default BASE/output)")
    parser.add_argument("--input-directory", help="uploads and LoadImage (default BASE/input)")
    parser.add_argument("--temp-directory", help="previews; wiped at start (default BASE/temp)")
    parser.add_argument("--user-directory", help="settings and saved workflows (default BASE/user)")
    parser.add_argument(
        "--extra-model-paths-config",
        action="append",
        default=[],
        metavar="PATH",
        help="an extra_model_paths.yaml in ComfyUI's format (repeatable)",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache-lru", type=int, metavar="N", help="keep the last N node results")
    cache.add_argument("--cache-none", action="store_true", help="cache no node results")
    cache.add_argument(
        "--cache-ram", type=float, nargs="?", const=4.0, metavar="GB", help="evict at this RAM"
    )
    parser.add_argument(
        "--disable-metadata", action="store_true", help="do not embed the workflow in PNGs"
    )
    parser.add_argument(
        "--database-url", help="the job store (default sqlite:///BASE/flowscope.db)"
    )
    add_model_arguments(parser)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        nargs="?",
        const=ALL_INTERFACES,
        default="127.0.0.1",
        metavar="HOSTS",
        help="address(es) to bind, comma-separated (default 127.0.0.1; a bare --listen "
        "binds every interface)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default 8188")
    add_server_arguments(parser)
    parser.add_argument(
        "--max-upload-size",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        metavar="MB",
        help=f"largest request body (default {DEFAULT_MAX_UPLOAD_MB})",
    )
    parser.add_argument(
        "--enable-cors-header",
        nargs="?",
        const="*",
        metavar="ORIGIN",
        help="send CORS headers for ORIGIN (default *) instead of refusing cross-origin "
        "requests to a loopback server",
    )
    parser.add_argument("--tls-keyfile", help="serve HTTPS with this key (with --tls-certfile)")
    parser.add_argument("--tls-certfile", help="serve HTTPS with this certificate")
    parser.add_argument(
        "--multi-user", action="store_true", help="per-user settings and workflows (Comfy-User)"
    )
    parser.add_argument("--front-end-root", help="serve this editor build instead of the package")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="executor workers, each a `flowscope worker` process started and stopped by the "
        "server (default 1; 0 when only workers started by hand execute)",
    )
    parser.add_argument(
        "--worker-threads",
        action="store_true",
        help="run the workers as threads of the server process instead (they then share its "
        "interpreter lock with the HTTP API)",
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=DEFAULT_WORKER_NICE,
        metavar="N",
        help="lower the worker processes' CPU priority by N, so that the API stays responsive "
        f"while jobs compute (default {DEFAULT_WORKER_NICE}; 0 for the same priority)",
    )
    parser.add_argument(
        "--ready-max-queue",
        type=int,
        default=10_000,
        metavar="N",
        help="/readyz answers 503 once N jobs wait (default 10000)",
    )
    add_telemetry_arguments(parser)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument(
        "--nice", type=int, default=0, metavar="N", help="lower this worker's CPU priority by N"
    )
    # Set by `flowscope serve` for the workers it starts: report to it over this descriptor.
    parser.add_argument(LINK_FD_FLAG, type=int, dest="link_fd", help=argparse.SUPPRESS)
    add_telemetry_arguments(parser)


def worker_process_command(args: argparse.Namespace, database_url: str) -> list[str]:
    """The `flowscope worker` command line for a worker process of the server `args` describe:
    the same folders, store, node packs and cache."""
    command = [sys.executable, "-m", "flowscope.cli", "worker"]
    command += ["--base-directory", str(args.base_directory), "--database-url", database_url]
    for flag, value in (
        ("--input-directory", args.input_directory),
        ("--output-directory", args.output_directory),
        ("--temp-directory", args.temp_directory),
        ("--user-directory", args.user_directory),
    ):
        if value is not None:
            command += [flag, str(value)]
    for path in args.extra_model_paths_config:
        command += ["--extra-model-paths-config", str(path)]
    if args.cache_none:
        command.append("--cache-none")
    elif args.cache_lru is not None:
        command += ["--cache-lru", str(args.cache_lru)]
    elif args.cache_ram is not None:
        command += ["--cache-ram", str(args.cache_ram)]
    if args.disable_metadata:
        command.append("--disable-metadata")
    command += model_arguments(args)
    command += ["--log-inputs", args.log_inputs, "--nice", str(args.worker_nice)]
    return command


def cache_spec(args: argparse.Namespace) -> str:
    if args.cache_none:
        return "none"
    if args.cache_lru is not None:
        return f"lru {args.cache_lru}"
    if args.cache_ram is not None:
        return f"ram {args.cache_ram}"
    return "classic"


def _directories(args: argparse.Namespace) -> Directories:
    return Directories.under(
        args.base_directory,
        input=args.input_directory,
        output=args.output_directory,
        temp=args.temp_directory,
        user=args.user_directory,
    )


def serve_command(args: argparse.Namespace) -> int:
    console = make_console(stderr=True)
    if bool(args.tls_keyfile) != bool(args.tls_certfile):
        console.print("[bold red]error:[/] --tls-keyfile and --tls-certfile go together")
        return EXIT_FAILED
    directories = _directories(args)
    settings = ServerSettings(
        host=args.listen,
        port=args.port,
        max_upload_size=int(args.max_upload_size * 1024 * 1024),
        cors_origin=args.enable_cors_header,
        multi_user=args.multi_user,
        disable_metadata=args.disable_metadata,
        front_end_root=Path(args.front_end_root) if args.front_end_root else None,
        ready_max_queue=args.ready_max_queue,
        workers=args.workers,
        extra_model_paths=tuple(Path(p) for p in args.extra_model_paths_config),
    )
    try:
        sockets = _bind(settings.host, settings.port)
    except OSError as exc:
        console.print(
            f"[bold red]error:[/] cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc}; is another server running there? (use --port)"
        )
        return EXIT_FAILED
    processes: list[WorkerProcess] = []
    try:
        options = telemetry_options(args, directories)
        # ComfyUI's temp folder holds previews of the last session only: emptied before a
        # worker can write one.
        shutil.rmtree(directories.temp, ignore_errors=True)
        directories.ensure()
        if not args.worker_threads:
            # First: the workers load their node packs while this process loads its own.
            processes = _spawn_worker_processes(args, directories, settings.workers)
        runtime = _build_runtime(args, console, settings, directories, options, processes)
    except (OSError, ValueError) as exc:
        for process in processes:
            process.stop(0.0, interrupt=True)
        for sock in sockets:
            sock.close()
        console.print(f"[bold red]error:[/] {exc}")
        return EXIT_FAILED
    import uvicorn

    from flowscope.engine.gc_tuning import tune_collector

    tune_collector()
    if runtime.recovered:
        console.print(f"recovered {len(runtime.recovered)} job(s) left running by a stopped server")
    scheme = "https" if args.tls_certfile else "http"
    from flowscope.server.http_protocol import JoinedWritesHttpToolsProtocol

    config = uvicorn.Config(
        runtime.app,
        http=JoinedWritesHttpToolsProtocol,
        log_level="warning",
        access_log=False,  # every request is an http.request event instead
        proxy_headers=False,  # X-Forwarded-* is trusted only behind a configured proxy
        ssl_keyfile=args.tls_keyfile,
        ssl_certfile=args.tls_certfile,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        console.print(f"flowscope is serving on {scheme}://{shown}:{port}", highlight=False)
    # uvicorn handles SIGTERM / SIGINT while it serves, then restores the previous handlers and
    # re-raises the signal; with Python's default handlers that would kill the process before
    # the workers stop and telemetry is flushed. These handlers make the re-raise harmless.
    stopping: list[int] = []
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, lambda signum, _frame: stopping.append(signum))
    try:
        server.run(sockets=sockets)
    finally:
        # uvicorn has stopped on SIGTERM / SIGINT: finish (or interrupt) the running job, flush
        # the event log and the log store.
        runtime.stop()
    return 0


def _spawn_worker_processes(
    args: argparse.Namespace, directories: Directories, count: int
) -> list[WorkerProcess]:
    from flowscope.jobs.worker_process import WorkerProcess

    command = worker_process_command(args, args.database_url or default_database_url(directories))
    processes = [WorkerProcess(command) for _ in range(count)]
    try:
        for process in processes:
            process.spawn()
    except BaseException:
        for process in processes:
            process.stop(0.0, interrupt=True)
        raise
    return processes


def _build_runtime(
    args: argparse.Namespace,
    console: Console,
    settings: ServerSettings,
    directories: Directories,
    options: TelemetryOptions,
    processes: list[WorkerProcess],
) -> ServerRuntime:
    from flowscope.server.runtime import build_runtime

    registry, models, model_folders = _load_nodes(args, console, directories)
    return build_runtime(
        settings,
        directories,
        registry=registry,
        telemetry=options,
        database_url=args.database_url,
        cache=cache_spec(args),
        log_inputs=args.log_inputs,
        model_folders=model_folders,
        models=models,
        worker_processes=processes if not args.worker_threads else None,
        fresh_temp=False,
    )


def _load_nodes(
    args: argparse.Namespace, console: Console, directories: Directories
) -> tuple[NodeRegistry, ModelManager, ModelFolders]:
    """The node catalog of a server or worker, its SD pack loading through a `ModelManager`
    with the model flags and folders (extra_model_paths.yaml included) of `args`."""
    from flowscope.cli.startup import load_nodes
    from flowscope.models import ModelFolders

    extra_paths = tuple(Path(path) for path in args.extra_model_paths_config)
    folders = ModelFolders.from_directories(directories, extra_paths)
    models = model_manager(args, folders)
    registry = load_nodes(
        directories,
        console,
        save_metadata=not args.disable_metadata,
        extra_custom_node_folders=folders.extra_custom_node_folders,
        models=models,
    )
    return registry, models, folders


def _bind(hosts: str, port: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for host in (h.strip() for h in hosts.split(",") if h.strip()):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server(
                (host.strip("[]"), port), family=family, reuse_port=False, dualstack_ipv6=False
            )
            sock.set_inheritable(True)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def worker_command(args: argparse.Namespace) -> int:
    from flowscope.engine import Executor, cache_from_spec
    from flowscope.engine.gc_tuning import tune_collector
    from flowscope.jobs.leases import make_worker_id
    from flowscope.jobs.link import Stop
    from flowscope.jobs.server_link import ServerLink
    from flowscope.jobs.store import JobStore
    from flowscope.jobs.worker import Worker
    from flowscope.telemetry.bus import EventBus
    from flowscope.telemetry.setup import start_telemetry

    # A worker process of `flowscope serve` reports to it, and stops when it says so: a Ctrl-C
    # or a service manager's SIGTERM reaches the whole process group, and the server first
    # stops serving, then stops its workers.
    link = ServerLink.from_fd(args.link_fd) if args.link_fd is not None else None
    if link is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    console = make_console(stderr=True)
    console.quiet = link is not None  # the server reports start-up and node pack errors
    directories = _directories(args)
    directories.ensure()
    try:
        options = telemetry_options(args, directories)
        registry, models, _folders = _load_nodes(args, console, directories)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return EXIT_FAILED
    if args.nice:
        # Here, after start-up and before the worker's threads exist (they inherit it).
        os.nice(args.nice)
    bus = EventBus()
    # Linked: every event goes to the server, whose telemetry logs and counts it.
    telemetry = start_telemetry(bus, options) if link is None else None
    if link is not None:
        link.forward(bus)
    models.attach_bus(bus)
    store = JobStore(args.database_url or default_database_url(directories), bus=bus)
    executor = Executor(
        registry, bus=bus, cache=cache_from_spec(cache_spec(args)), log_inputs=args.log_inputs
    )
    worker = Worker(
        store,
        executor,
        registry,
        worker_id=make_worker_id(0),
        bus=bus,
        listener=link,
        unload_models=models.free,
    )
    tune_collector()
    stop = threading.Event()
    requested: list[Stop] = []

    def on_stop(request: Stop) -> None:
        requested.append(request)
        stop.set()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    if link is None:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        console.print(f"flowscope worker {worker.worker_id} is taking jobs from {store.url}")
    else:
        link.serve(worker, on_stop)
    worker.start()
    try:
        while not stop.wait(0.5) and worker.alive:
            pass
    finally:
        request = requested[0] if requested else Stop(10.0)
        worker.stop(request.timeout_s, interrupt=request.interrupt)
        if link is not None:
            link.close()
        store.close()
        if telemetry is not None:
            telemetry.close()
    return 0
