"""The keys Fluent Bit (5.x, YAML configuration) accepts, per section and plugin, and a checker.

Fluent Bit refuses a configuration with an unknown plugin property, so these tables mirror what
it validates. Sources (read for this table, Fluent Bit 5.x era):
- generic input properties: `src/flb_input.c`, `flb_input_set_property`;
- generic output properties: `src/flb_output.c`, `flb_output_set_property`;
- `tail`: `plugins/in_tail/tail.c` config_map; `forward` input: `plugins/in_forward/fw.c`;
- `es`: `plugins/out_es/es_conf_prop.h`; `opensearch`: `plugins/out_opensearch/opensearch.c`;
  `forward` output: `plugins/out_forward/forward.c` config_map;
- `modify`: docs.fluentbit.io/manual/data-pipeline/filters/modify;
- service / parsers: fluent-bit-docs `administration/configuring-fluent-bit/yaml/
  service-section.md` and `pipeline/parsers/configuring-parser.md`.
Keys are case-insensitive in Fluent Bit; the tables are lower case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TOP_LEVEL = frozenset(
    {"env", "includes", "service", "parsers", "multiline_parsers", "pipeline", "plugins"}
)
PIPELINE = frozenset({"inputs", "filters", "outputs"})

SERVICE = frozenset(
    {
        "flush", "grace", "daemon", "dns.mode", "log_file", "log_level", "parsers_file",
        "plugins_file", "streams_file", "http_server", "http_listen", "http_port", "hot_reload",
        "coro_stack_size", "scheduler.cap", "scheduler.base", "json.convert_nan_to_null",
        "json.escape_unicode", "sp.convert_from_str_to_num",
        "storage.path", "storage.sync", "storage.checksum", "storage.max_chunks_up",
        "storage.backlog.mem_limit", "storage.backlog.flush_on_shutdown", "storage.metrics",
        "storage.delete_irrecoverable_chunks", "storage.keep.rejected", "storage.rejected.path",
    }
)  # fmt: skip

PARSER = frozenset(
    {
        "name", "format", "regex", "time_key", "time_format", "time_offset", "time_keep",
        "time_system_timezone", "types", "decode_field", "decode_field_as",
        "skip_empty_values", "time_strict",
    }
)  # fmt: skip

_TLS = frozenset(
    {
        "tls", "tls.verify", "tls.verify_hostname", "tls.debug", "tls.vhost", "tls.ca_path",
        "tls.ca_file", "tls.crt_file", "tls.key_file", "tls.key_passwd", "tls.min_version",
        "tls.max_version", "tls.ciphers",
    }
)  # fmt: skip

INPUT_COMMON = _TLS | {
    "name", "tag", "log_level", "log_suppress_interval", "routable", "alias", "mem_buf_limit",
    "listen", "host", "port", "ipv6", "storage.type", "threaded",
    "storage.pause_on_chunks_overlimit", "processors",
}  # fmt: skip

INPUTS: Mapping[str, frozenset[str]] = {
    "tail": frozenset(
        {
            "path", "exclude_path", "key", "read_from_head",
            "read_newly_discovered_files_from_head", "refresh_interval", "watcher_interval",
            "progress_check_interval", "progress_check_interval_nsec", "rotate_wait",
            "docker_mode", "docker_mode_flush", "docker_mode_parser", "path_key", "offset_key",
            "ignore_older", "ignore_active_older_files", "buffer_chunk_size", "buffer_max_size",
            "static_batch_size", "event_batch_size", "skip_long_lines", "exit_on_eof",
            "skip_empty_lines", "truncate_long_lines", "file_cache_advise", "inotify_watcher",
            "parser", "tag_regex", "db", "db.sync", "db.locking", "db.journal_mode",
            "db.compare_filename", "multiline", "multiline_flush", "parser_firstline",
            "multiline.parser", "unicode.encoding", "generic.encoding",
        }
    ),
    "forward": frozenset(
        {
            "tag_prefix", "shared_key", "self_hostname", "security.users", "unix_path",
            "unix_perm", "buffer_chunk_size", "buffer_max_size", "empty_shared_key",
        }
    ),
}  # fmt: skip

FILTER_COMMON = frozenset(
    {"name", "match", "match_regex", "alias", "log_level", "log_suppress_interval"}
)
FILTERS: Mapping[str, frozenset[str]] = {
    "modify": frozenset(
        {
            "set", "add", "remove", "remove_wildcard", "remove_regex", "rename", "hard_rename",
            "copy", "hard_copy", "move_to_start", "move_to_end", "condition",
        }
    ),
}  # fmt: skip

OUTPUT_COMMON = _TLS | {
    "name", "match", "match_regex", "alias", "log_level", "log_suppress_interval", "host",
    "port", "ipv6", "retry_limit", "storage.total_limit_size", "workers", "processors",
}  # fmt: skip

_SEARCH_COMMON = frozenset(
    {
        "index", "type", "suppress_type_name", "http_user", "http_passwd", "compress",
        "aws_auth", "aws_region", "aws_sts_endpoint", "aws_role_arn", "aws_external_id",
        "aws_service_name", "aws_profile", "logstash_format", "logstash_prefix",
        "logstash_prefix_separator", "logstash_prefix_key", "logstash_dateformat", "time_key",
        "time_key_format", "time_key_nanos", "include_tag_key", "tag_key", "buffer_size",
        "path", "pipeline", "generate_id", "write_operation", "id_key", "replace_dots",
        "current_time_index", "trace_output", "trace_error",
    }
)  # fmt: skip

OUTPUTS: Mapping[str, frozenset[str]] = {
    "es": _SEARCH_COMMON | {"http_api_key", "cloud_id", "cloud_auth", "upstream"},
    "opensearch": _SEARCH_COMMON,
    "forward": frozenset(
        {
            "time_as_integer", "retain_metadata_in_forward_mode", "shared_key", "self_hostname",
            "empty_shared_key", "send_options", "require_ack_response", "username", "password",
            "unix_path", "upstream", "tag", "compress", "fluentd_compat", "add_option",
        }
    ),
}  # fmt: skip

_SECTIONS: Mapping[str, tuple[frozenset[str], Mapping[str, frozenset[str]]]] = {
    "inputs": (INPUT_COMMON, INPUTS),
    "filters": (FILTER_COMMON, FILTERS),
    "outputs": (OUTPUT_COMMON, OUTPUTS),
}


def fluent_bit_problems(config: Mapping[str, Any]) -> list[str]:
    """Every key in a Fluent Bit YAML configuration that Fluent Bit would not accept."""
    problems = [f"unknown section {key!r}" for key in config if key not in TOP_LEVEL]
    problems += _unknown("service", config.get("service") or {}, SERVICE)
    for index, parser in enumerate(config.get("parsers") or []):
        problems += _unknown(f"parsers[{index}]", parser, PARSER)
    pipeline = config.get("pipeline") or {}
    problems += [f"unknown pipeline part {key!r}" for key in pipeline if key not in PIPELINE]
    for part, (common, plugins) in _SECTIONS.items():
        for index, entry in enumerate(pipeline.get(part) or []):
            name = str(entry.get("name", "")).lower()
            where = f"{part}[{index}] ({name or 'no name'})"
            if name not in plugins:
                problems.append(f"{where}: no table for plugin {name!r}")
                continue
            allowed = common | plugins[name]
            problems += _unknown(where, entry, allowed, allow_net=part != "filters")
    return problems


def _unknown(
    where: str, section: Mapping[str, Any], allowed: frozenset[str], *, allow_net: bool = False
) -> list[str]:
    problems = []
    for key in section:
        lowered = str(key).lower()
        if lowered in allowed or (allow_net and lowered.startswith("net.")):
            continue
        problems.append(f"{where}: unknown key {key!r}")
    return problems
