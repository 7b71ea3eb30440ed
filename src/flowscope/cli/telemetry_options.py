"""The telemetry flags of `flowscope run` (and later `serve`), turned into TelemetryOptions."""

from __future__ import annotations

import argparse
import ssl
from datetime import timedelta
from pathlib import Path

from flowscope.storage.directories import Directories
from flowscope.telemetry.log_inputs import LOG_INPUTS
from flowscope.telemetry.setup import (
    DEFAULT_FORWARD_SPOOL,
    DEFAULT_LOG_FILE,
    DEFAULT_LOGSTORE,
    TelemetryOptions,
)


def add_telemetry_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("telemetry")
    group.add_argument(
        "--log-file",
        metavar="PATH",
        help=f"JSON-lines event log (default BASE/{DEFAULT_LOG_FILE}); rotated by flowscope",
    )
    group.add_argument("--no-log-file", action="store_true", help="do not write the event log")
    group.add_argument("--log-stdout", action="store_true", help="also write JSON lines to stdout")
    group.add_argument(
        "--log-console",
        action="store_true",
        help="a human-readable event line per event on stderr (instead of the progress display)",
    )
    group.add_argument(
        "--log-inputs",
        choices=LOG_INPUTS,
        default="preview",
        help="how much of each node's constant inputs events carry (default preview: strings "
        "cut at 200 characters, 2 KB per node; secret-looking keys are always dropped)",
    )
    group.add_argument(
        "--log-debug-sample",
        type=float,
        default=1.0,
        metavar="RATE",
        help="keep this share of debug events such as node.progress (default 1.0)",
    )
    group.add_argument(
        "--no-logstore",
        action="store_true",
        help=f"do not index events in BASE/{DEFAULT_LOGSTORE} (used by `flowscope logs`)",
    )
    group.add_argument(
        "--logstore-retention-days",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="delete log-store events older than this (default 30)",
    )
    group.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics while running",
    )
    group.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="export traces over OTLP/HTTP (also enabled by OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    group.add_argument(
        "--forward",
        metavar="HOST:PORT",
        help="ship events to Fluentd / Fluent Bit (forward protocol, at-least-once)",
    )
    group.add_argument("--forward-shared-key", metavar="KEY", help="the <security> shared key")
    group.add_argument(
        "--forward-tls", action="store_true", help="connect to the forward input over TLS"
    )


def telemetry_options(args: argparse.Namespace, directories: Directories) -> TelemetryOptions:
    """Options from parsed flags; relative defaults are placed under the base directory."""
    log_file = None
    if not args.no_log_file:
        log_file = Path(args.log_file) if args.log_file else directories.base / DEFAULT_LOG_FILE
    forward = None
    if args.forward:
        host, sep, port = args.forward.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(
                f"--forward {args.forward!r}: expected HOST:PORT, e.g. 127.0.0.1:24224"
            )
        forward = (host, int(port))
    if not 0.0 <= args.log_debug_sample <= 1.0:
        raise ValueError(f"--log-debug-sample {args.log_debug_sample}: must be between 0 and 1")
    return TelemetryOptions(
        log_file=log_file,
        log_stdout=args.log_stdout,
        console=args.log_console,
        logstore=None if args.no_logstore else directories.base / DEFAULT_LOGSTORE,
        logstore_retention=timedelta(days=args.logstore_retention_days),
        metrics_port=args.metrics_port,
        traces_endpoint=args.otlp_endpoint,
        forward=forward,
        forward_spool=directories.base / DEFAULT_FORWARD_SPOOL,
        forward_shared_key=args.forward_shared_key,
        forward_tls=ssl.create_default_context() if args.forward_tls else None,
        debug_sample_rate=args.log_debug_sample,
    )
