"""The parameters and sections Fluentd v1 (and the plugins our configs use) accept, the v0.12
names that must not appear, and a checker for a configuration read by `deploy_fluentd_config`.

Sources (read for this table): fluentd-docs-gitbook `input/tail.md`, `input/forward.md`,
`configuration/transport-section.md`, `configuration/parse-section.md`,
`configuration/buffer-section.md`, `output/secondary_file.md`, `output/file.md`,
`filter/record_transformer.md`; fluent-plugin-elasticsearch `README.md` (5.x) and
`lib/fluent/plugin/elasticsearch_error_handler.rb`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from deploy_fluentd_config import Section

# Parameters every plugin directive takes (configuration/plugin-common-parameters.md).
PLUGIN_COMMON = frozenset({"@type", "@id", "@label", "@log_level"})


@dataclass(frozen=True)
class Spec:
    """What one section may hold: parameters, and child sections chosen by a `Choice`."""

    params: frozenset[str]
    sections: Mapping[str, Choice] = field(default_factory=dict)
    any_params: bool = False  # e.g. <record>: its keys are the new fields


@dataclass(frozen=True)
class Choice:
    """Which spec applies to a child section: by its `@type`, by its argument, or always."""

    by: str  # "@type", "arg" or ""
    specs: Mapping[str, Spec]


def _plugin(params: set[str], sections: Mapping[str, Choice] | None = None) -> Spec:
    return Spec(PLUGIN_COMMON | params, sections or {})


PARSE_JSON = Spec(
    frozenset(
        {
            "@type", "types", "time_key", "null_value_pattern", "null_empty_string",
            "estimate_current_event", "keep_time_key", "timeout", "time_type", "time_format",
            "localtime", "utc", "timezone", "time_format_fallbacks",
            "json_parser", "stream_buffer_size",
        }
    )
)  # fmt: skip

BUFFER_FILE = Spec(
    frozenset(
        {
            "@type", "path", "path_suffix",
            "timekey", "timekey_wait", "timekey_use_utc", "timekey_zone",
            "chunk_limit_size", "chunk_limit_records", "total_limit_size",
            "chunk_full_threshold", "queued_chunks_limit_size", "compress",
            "flush_at_shutdown", "flush_mode", "flush_interval", "flush_thread_count",
            "flush_thread_interval", "flush_thread_burst_interval", "delayed_commit_timeout",
            "overflow_action",
            "retry_timeout", "retry_forever", "retry_max_times", "retry_secondary_threshold",
            "retry_type", "retry_wait", "retry_exponential_backoff_base", "retry_max_interval",
            "retry_randomize",
        }
    )
)  # fmt: skip

SECONDARY_FILE = _plugin({"directory", "basename", "append", "compress"})
FORMAT_JSON = Spec(frozenset({"@type", "json_parser", "add_newline"}))

TRANSPORT_TLS = Spec(
    frozenset(
        {
            "linger_timeout", "version", "min_version", "max_version", "ciphers", "insecure",
            "ca_path", "cert_path", "private_key_path", "private_key_passphrase",
            "client_cert_auth", "cert_verifier", "ca_cert_path", "ca_private_key_path",
            "ca_private_key_passphrase", "generate_private_key_length", "generate_cert_country",
            "generate_cert_state", "generate_cert_locality", "generate_cert_common_name",
            "generate_cert_expiration", "generate_cert_digest",
        }
    )
)  # fmt: skip

SECURITY = Spec(
    frozenset({"self_hostname", "shared_key", "user_auth", "allow_anonymous_source"}),
    {
        "user": Choice("", {"": Spec(frozenset({"username", "password"}))}),
        "client": Choice("", {"": Spec(frozenset({"host", "network", "shared_key", "users"}))}),
    },
)

IN_TAIL = _plugin(
    {
        "path", "tag", "exclude_path", "follow_inodes", "refresh_interval",
        "limit_recently_modified", "skip_refresh_on_startup", "read_from_head", "encoding",
        "from_encoding", "read_lines_limit", "read_bytes_limit_per_second", "max_line_size",
        "multiline_flush_interval", "pos_file", "pos_file_compaction_interval", "path_key",
        "rotate_wait", "enable_watch_timer", "enable_stat_watcher", "open_on_every_update",
        "emit_unmatched_lines", "ignore_repeated_permission_error", "path_timezone",
        "glob_policy", "path_delimiter",
    },
    {"parse": Choice("@type", {"json": PARSE_JSON})},
)  # fmt: skip

IN_FORWARD = _plugin(
    {
        "port", "bind", "tag", "add_tag_prefix", "resolve_hostname", "deny_keepalive",
        "send_keepalive_packet", "chunk_size_limit", "chunk_size_warn_limit",
        "skip_invalid_event", "source_address_key", "source_hostname_key",
    },
    {
        "transport": Choice("arg", {"tls": TRANSPORT_TLS}),
        "security": Choice("", {"": SECURITY}),
    },
)  # fmt: skip

RECORD_TRANSFORMER = _plugin(
    {"enable_ruby", "auto_typecast", "renew_record", "renew_time_key", "keep_keys", "remove_keys"},
    {"record": Choice("", {"": Spec(frozenset(), any_params=True)})},
)

OUT_ELASTICSEARCH = _plugin(
    {
        "host", "port", "hosts", "cloud_id", "cloud_auth", "user", "password", "path",
        "scheme", "ssl_verify", "ca_file", "client_cert", "client_key", "client_key_pass",
        "ssl_version", "ssl_max_version", "ssl_min_version", "api_key", "custom_headers",
        "index_name", "type_name", "logstash_format", "logstash_prefix",
        "logstash_prefix_separator", "logstash_dateformat", "pipeline", "time_key_format",
        "time_precision", "time_key", "time_key_exclude_timestamp", "include_timestamp",
        "utc_index", "suppress_type_name", "target_index_key", "target_type_key",
        "target_index_affinity", "template_name", "template_file", "template_overwrite",
        "customize_template", "rollover_index", "index_date_pattern", "deflector_alias",
        "application_name", "templates", "max_retry_putting_template",
        "fail_on_putting_template_retry_exceed", "fail_on_detecting_es_version_retry_exceed",
        "max_retry_get_es_version", "request_timeout", "reload_connections",
        "reload_on_failure", "resurrect_after", "reload_after", "include_tag_key", "tag_key",
        "id_key", "parent_key", "routing_key", "remove_keys", "remove_keys_on_update",
        "remove_keys_on_update_key", "retry_tag", "write_operation", "emit_error_for_missing_id",
        "time_parse_error_tag", "reconnect_on_error", "with_transporter_log", "content_type",
        "include_index_in_url", "http_backend", "http_backend_excon_nonblock",
        "prefer_oj_serializer", "compression_level", "flatten_hashes",
        "flatten_hashes_separator", "sniffer_class_name", "selector_class_name",
        "validate_client_version", "unrecoverable_error_types", "verify_es_version_at_startup",
        "default_elasticsearch_version", "log_es_400_reason", "suppress_doc_wrap",
        "ignore_exceptions", "exception_backup", "bulk_message_request_threshold", "enable_ilm",
        "ilm_policy_id", "ilm_policy", "ilm_policies", "ilm_policy_overwrite",
        "truncate_caches_interval", "use_legacy_template",
    },
    {
        "buffer": Choice("@type", {"file": BUFFER_FILE}),
        "secondary": Choice("@type", {"secondary_file": SECONDARY_FILE}),
    },
)  # fmt: skip

OUT_FILE = _plugin(
    {
        "path", "append", "add_path_suffix", "path_suffix", "compress", "recompress",
        "symlink_path", "symlink_path_use_relative",
    },
    {
        "format": Choice("@type", {"json": FORMAT_JSON}),
        "buffer": Choice("@type", {"file": BUFFER_FILE}),
    },
)  # fmt: skip

_MATCH = Choice("@type", {"elasticsearch": OUT_ELASTICSEARCH, "file": OUT_FILE})
_FILTER = Choice("@type", {"record_transformer": RECORD_TRANSFORMER})

ROOT = Spec(
    frozenset(),
    {
        "source": Choice("@type", {"tail": IN_TAIL, "forward": IN_FORWARD}),
        "filter": _FILTER,
        "match": _MATCH,
        "label": Choice("", {"": Spec(frozenset(), {"filter": _FILTER, "match": _MATCH})}),
    },
)

# v0.12 names and what replaced them in v1 (spec/telemetry.md section 9, and the docs above).
V012_RENAMES: Mapping[str, str] = {
    "type": "@type",
    "format": "a <parse> (input) or <format> (output) section",
    "buffer_type": "<buffer> @type",
    "buffer_path": "<buffer> path",
    "buffer_chunk_limit": "<buffer> chunk_limit_size",
    "buffer_queue_limit": "<buffer> total_limit_size",
    "queue_limit_length": "<buffer> total_limit_size",
    "retry_limit": "<buffer> retry_max_times",
    "disable_retry_limit": "<buffer> retry_forever",
    "max_retry_wait": "<buffer> retry_max_interval",
    "num_threads": "<buffer> flush_thread_count",
    "time_slice_format": "<buffer time> timekey",
}
V012_TYPES: Mapping[str, str] = {"secure_forward": "forward with <transport tls> + <security>"}
# `${...}` placeholders v1 still has; a bare `${key}` record field was removed after v0.12.
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_V1_PLACEHOLDER = re.compile(
    r'^(tag|time|hostname|chunk_id|tag_(parts|prefix|suffix)\[-?\d+\]|record\["[^"]+"\])$'
)


def fluentd_problems(root: Section) -> list[str]:
    """Every parameter or section Fluentd v1 would not accept, and every v0.12 leftover."""
    return _check(root, ROOT) + _v012_leftovers(root)


def _check(section: Section, spec: Spec) -> list[str]:
    problems: list[str] = []
    if not spec.any_params:
        problems += [
            f"{section.where}: <{section.name}> does not take {key!r}"
            for key in section.params
            if key not in spec.params
        ]
    for child in section.sections:
        choice = spec.sections.get(child.name)
        if choice is None:
            problems.append(f"{child.where}: <{section.name}> takes no <{child.name}> section")
            continue
        selector = {"@type": child.type or "", "arg": child.arg, "": ""}[choice.by]
        child_spec = choice.specs.get(selector)
        if child_spec is None:
            problems.append(f"{child.where}: no table for <{child.name}> {selector!r}")
            continue
        problems += _check(child, child_spec)
    return problems


def _v012_leftovers(root: Section) -> list[str]:
    problems = []
    for section, _parent in root.walk():
        for key, value in section.params.items():
            if key in V012_RENAMES:
                problems.append(
                    f"{section.where}: v0.12 {key!r} in <{section.name}>; v1: {V012_RENAMES[key]}"
                )
            for placeholder in _PLACEHOLDER.findall(value):
                if not _V1_PLACEHOLDER.match(placeholder.strip()):
                    problems.append(
                        f"{section.where}: v0.12 placeholder ${{{placeholder}}} in {key}; "
                        f'v1: ${{record["{placeholder}"]}}'
                    )
        kind = section.type or section.params.get("type")
        if kind in V012_TYPES:
            problems.append(f"{section.where}: v0.12 plugin {kind}; v1: {V012_TYPES[kind]}")
    return problems
