"""The keys the OpenTelemetry Collector (contrib) components in our config accept, as nested
schemas, and a checker. The Collector refuses unknown keys ("has invalid keys"), so these
tables mirror what it decodes.

Sources (read for this table): opentelemetry-collector `config/confighttp/config.schema.yaml`,
`config/configtls/README.md`, `exporter/exporterhelper/README.md` (sending_queue, retry),
`exporter/otlphttpexporter/config.schema.yaml`, the memory_limiter and batch processor READMEs;
opentelemetry-collector-contrib `receiver/filelogreceiver/README.md`,
`pkg/stanza/docs/operators/{json_parser,copy}.md`, `pkg/stanza/docs/types/{timestamp,severity,
trace,parsers}.md`, `exporter/elasticsearchexporter/config.schema.yaml` (v0.136+; deprecated
keys such as `flush`, `num_workers` and `retry.max_requests` are left out on purpose) and
`extension/storage/filestorage/config.go`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A schema is a dict of key -> schema, where None means "any value" and FREE means "a map whose
# keys are the user's" (headers, attributes).
Schema = Mapping[str, Any]
FREE: Schema = {"*": None}


def _keys(*names: str) -> dict[str, Any]:
    return dict.fromkeys(names)


TLS_CLIENT = _keys(
    "insecure", "curve_preferences", "cert_file", "cert_pem", "key_file", "key_pem", "ca_file",
    "ca_pem", "include_system_ca_certs_pool", "insecure_skip_verify", "min_version",
    "max_version", "cipher_suites", "reload_interval", "tpm", "server_name_override",
)  # fmt: skip
TLS_SERVER = _keys(
    "curve_preferences", "cert_file", "cert_pem", "key_file", "key_pem", "ca_file", "ca_pem",
    "include_system_ca_certs_pool", "min_version", "max_version", "cipher_suites",
    "reload_interval", "tpm", "client_ca_file", "client_ca_file_reload",
)  # fmt: skip

HTTP_CLIENT = {
    **_keys(
        "endpoint", "proxy_url", "read_buffer_size", "write_buffer_size", "timeout", "auth",
        "compression", "compression_params", "max_idle_conns", "max_idle_conns_per_host",
        "max_conns_per_host", "idle_conn_timeout", "disable_keep_alives",
        "http2_read_idle_timeout", "http2_ping_timeout", "cookies", "middlewares",
        "force_attempt_http2",
    ),
    "tls": TLS_CLIENT,
    "headers": FREE,
}  # fmt: skip

HTTP_SERVER = {
    **_keys(
        "endpoint", "cors", "include_metadata", "auth", "max_request_body_size",
        "compression_algorithms", "read_timeout", "read_header_timeout", "write_timeout",
        "idle_timeout", "response_headers", "keep_alives_enabled", "middlewares",
        "traces_url_path", "metrics_url_path", "logs_url_path",
    ),
    "tls": TLS_SERVER,
}  # fmt: skip
GRPC_SERVER = {
    **_keys(
        "endpoint", "transport", "max_recv_msg_size_mib", "max_concurrent_streams",
        "read_buffer_size", "write_buffer_size", "keepalive", "include_metadata", "auth",
    ),
    "tls": TLS_SERVER,
}  # fmt: skip

SENDING_QUEUE = {
    **_keys(
        "enabled", "num_consumers", "wait_for_result", "block_on_overflow", "sizer",
        "queue_size", "storage",
    ),
    "batch": _keys("flush_timeout", "min_size", "max_size", "sizer"),
}  # fmt: skip
BACKOFF = _keys(
    "enabled", "initial_interval", "randomization_factor", "multiplier", "max_interval",
    "max_elapsed_time",
)  # fmt: skip

_FIELD = _keys("parse_from")
OPERATORS: Mapping[str, Schema] = {
    "json_parser": {
        **_keys("type", "id", "output", "parse_from", "parse_to", "on_error", "if", "body"),
        "timestamp": _keys("parse_from", "layout_type", "layout", "location"),
        "severity": _keys("parse_from", "preset", "mapping", "overwrite_text"),
        "trace": {"trace_id": _FIELD, "span_id": _FIELD, "trace_flags": _FIELD},
        "scope_name": _FIELD,
    },
    "copy": _keys("type", "id", "output", "from", "to", "on_error", "if"),
}

RECEIVERS: Mapping[str, Schema] = {
    "filelog": {
        **_keys(
            "include", "exclude", "start_at", "multiline", "force_flush_period", "encoding",
            "preserve_leading_whitespaces", "preserve_trailing_whitespaces",
            "include_file_name", "include_file_path", "include_file_name_resolved",
            "include_file_path_resolved", "poll_interval", "fingerprint_size", "max_log_size",
            "max_concurrent_files", "max_batches", "delete_after_read", "storage", "header",
        ),
        "attributes": FREE,
        "resource": FREE,
        "retry_on_failure": _keys(
            "enabled", "initial_interval", "max_interval", "max_elapsed_time"
        ),
        "operators": OPERATORS,  # a list, each item checked by its `type`
    },
    "otlp": {"protocols": {"grpc": GRPC_SERVER, "http": HTTP_SERVER}},
}  # fmt: skip

PROCESSORS: Mapping[str, Schema] = {
    "memory_limiter": _keys(
        "check_interval", "limit_mib", "spike_limit_mib", "limit_percentage",
        "spike_limit_percentage",
    ),
    "batch": _keys(
        "timeout", "send_batch_size", "send_batch_max_size", "metadata_keys",
        "metadata_cardinality_limit",
    ),
}  # fmt: skip

EXPORTERS: Mapping[str, Schema] = {
    "elasticsearch": {
        **HTTP_CLIENT,
        **_keys(
            "cloudid", "endpoints", "include_source_on_error", "logs_index", "metrics_index",
            "traces_index", "pipeline", "metadata_keys", "api_key", "user", "password",
        ),
        "discover": _keys("interval", "on_start"),
        "logs_dynamic_id": _keys("enabled"),
        "logs_dynamic_pipeline": _keys("enabled"),
        "logstash_format": _keys("date_format", "enabled", "prefix_separator"),
        "mapping": _keys("allowed_modes", "mode"),
        "retry": _keys(
            "enabled", "initial_interval", "max_interval", "max_retries", "retry_on_status"
        ),
        "sending_queue": SENDING_QUEUE,
    },
    "otlphttp": {
        **HTTP_CLIENT,
        **_keys(
            "encoding", "logs_endpoint", "metrics_endpoint", "traces_endpoint", "profiles_endpoint"
        ),
        "retry_on_failure": BACKOFF,
        "sending_queue": SENDING_QUEUE,
    },
}  # fmt: skip

EXTENSIONS: Mapping[str, Schema] = {
    "file_storage": {
        **_keys("directory", "timeout", "fsync"),
        "compaction": _keys(
            "on_start", "on_rebound", "directory", "rebound_needed_threshold_mib",
            "rebound_trigger_threshold_mib", "max_transaction_size", "check_interval",
        ),
    },
}  # fmt: skip

COMPONENTS: Mapping[str, Mapping[str, Schema]] = {
    "receivers": RECEIVERS,
    "processors": PROCESSORS,
    "exporters": EXPORTERS,
    "extensions": EXTENSIONS,
}
TOP_LEVEL = frozenset({*COMPONENTS, "connectors", "service"})
PIPELINE = frozenset({"receivers", "processors", "exporters"})


def component_type(component_id: str) -> str:
    """`filelog/flowscope` -> `filelog` (the part before the optional `/name`)."""
    return component_id.split("/", 1)[0]


def otel_problems(config: Mapping[str, Any]) -> list[str]:
    """Every key in a Collector configuration that its component would not accept."""
    problems = [f"unknown top-level key {key!r}" for key in config if key not in TOP_LEVEL]
    for kind, tables in COMPONENTS.items():
        for component_id, settings in (config.get(kind) or {}).items():
            schema = tables.get(component_type(component_id))
            if schema is None:
                problems.append(f"{kind}.{component_id}: no table for this component type")
                continue
            problems += _check(f"{kind}.{component_id}", settings or {}, schema)
    service = config.get("service") or {}
    problems += [
        f"service: unknown key {key!r}"
        for key in service
        if key not in {"extensions", "pipelines", "telemetry"}
    ]
    for name, pipeline in (service.get("pipelines") or {}).items():
        problems += [
            f"service.pipelines.{name}: unknown key {key!r}"
            for key in pipeline
            if key not in PIPELINE
        ]
    return problems


def _check(where: str, value: Any, schema: Schema) -> list[str]:
    if schema is FREE or not isinstance(value, Mapping):
        return []
    problems = []
    for key, item in value.items():
        if key not in schema:
            problems.append(f"{where}: unknown key {key!r}")
        elif schema[key] is OPERATORS:
            problems += _check_operators(f"{where}.{key}", item)
        elif schema[key] is not None:
            problems += _check(f"{where}.{key}", item, schema[key])
    return problems


def _check_operators(where: str, operators: Any) -> list[str]:
    problems = []
    for index, operator in enumerate(operators or []):
        kind = operator.get("type")
        schema = OPERATORS.get(kind)
        if schema is None:
            problems.append(f"{where}[{index}]: no table for operator type {kind!r}")
        else:
            problems += _check(f"{where}[{index}] ({kind})", operator, schema)
    return problems
