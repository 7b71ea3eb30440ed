"""The collector configs and index templates in deploy/, checked structurally.

None of Fluent Bit, Fluentd, the OpenTelemetry Collector, Elasticsearch, OpenSearch or Kibana can
run on the project's machines (spec/telemetry.md §9), so: every file parses; every plugin key is
in a table taken from that project's documentation (deploy_*_keys.py); no Fluentd v0.12 syntax is
left; the tail paths match what flowscope's real JSON-lines sink writes, rotations included; and
the documents a real engine run writes fit the index templates.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_documents import ENVIRONMENT, LOG_FILE, WrittenLog
from deploy_fluent_bit_keys import fluent_bit_problems
from deploy_fluentd_config import Section, expand_ruby, read_config
from deploy_fluentd_keys import fluentd_problems
from deploy_mappings import dynamic_type, field_of, fits, leaf_fields
from deploy_otel_keys import component_type, otel_problems

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FLUENT_BIT = DEPLOY / "fluent-bit"
FLUENTD = DEPLOY / "fluentd"
OTEL = DEPLOY / "otel-collector" / "otel-collector.yaml"
ELASTIC = DEPLOY / "elasticsearch"
README = DEPLOY / "README.md"

FLUENT_BIT_CONFIGS = sorted(FLUENT_BIT.glob("fluent-bit*.yaml"))
FLUENTD_CONFIGS = [FLUENTD / "fluent.conf", FLUENTD / "fluent-forward.conf"]
DATA_STREAM = f"logs-flowscope-{ENVIRONMENT}"
# A Forward input keeps the sender's tag; deploy/README.md asks senders for flowscope.<anything>.
FORWARD_SENDER_TAG = "flowscope.jobs"

# spec/telemetry.md §1: every field and the type the spec gives it (sensible types where the
# spec leaves them open). WHOLE is `flattened` in Elasticsearch and `flat_object` in OpenSearch.
WHOLE = "whole object"
SPEC_FIELDS = {
    "@timestamp": "date",
    "log.level": "keyword",
    "message": "text",
    "event.action": "keyword",
    "event.outcome": "keyword",
    "event.duration": "long",
    "event.id": "keyword",
    "event.sequence": "long",
    "service.name": "keyword",
    "service.version": "keyword",
    "service.environment": "keyword",
    "service.node.name": "keyword",
    "host.name": "keyword",
    "trace.id": "keyword",
    "span.id": "keyword",
    "user.id": "keyword",
    "job.id": "keyword",
    "workflow.id": "keyword",
    "node.id": "keyword",
    "node.type": "keyword",
    "node.title": "keyword",
    "node.duration_ms": "float",
    "node.cached": "boolean",
    "node.inputs": WHOLE,
    "node.outputs": WHOLE,
    "model.name": "keyword",
    "model.family": "keyword",
    "model.size_bytes": "long",
    "gpu.device": "keyword",
    "gpu.memory.used_bytes": "long",
    "gpu.memory.peak_bytes": "long",
    "process.memory.peak_bytes": "long",
    "error.type": "keyword",
    "error.message": "text",
    "error.stack_trace": "text",
    "sampling.rate": "float",
}


# -- reading the files ------------------------------------------------------------------------
def load_fluent_bit(path: Path) -> dict[str, Any]:
    """A Fluent Bit YAML config with its `includes` merged in (lists are appended)."""
    config: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    for include in config.get("includes") or []:
        included = yaml.safe_load((path.parent / include).read_text(encoding="utf-8"))
        for key, value in included.items():
            config[key] = [*(config.get(key) or []), *value] if isinstance(value, list) else value
    return config


def fluent_bit_entries(config: Mapping[str, Any], part: str, name: str) -> list[dict[str, Any]]:
    return [e for e in config["pipeline"].get(part) or [] if e["name"] == name]


def fluent_bit_env(value: Any, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], str(value))


def otel_env(value: str, env: Mapping[str, str]) -> str:
    def variable(match: re.Match[str]) -> str:
        return env.get(match.group(1), match.group(2) or "")

    return re.sub(r"\$\{env:(\w+)(?::-([^}]*))?\}", variable, value)


def is_on(value: Any) -> bool:
    """Fluent Bit's booleans (YAML may already have turned on/off into True/False)."""
    return value is True or str(value).lower() in ("on", "true", "yes")


def is_off(value: Any) -> bool:
    return value is False or str(value).lower() in ("off", "false", "no")


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def es_mappings() -> dict[str, Any]:
    component = load_json(ELASTIC / "component-template-mappings.json")
    mappings: dict[str, Any] = component["template"]["mappings"]
    return mappings


def opensearch_mappings() -> dict[str, Any]:
    template = load_json(ELASTIC / "opensearch" / "index-template.json")
    mappings: dict[str, Any] = template["template"]["mappings"]
    return mappings


TEMPLATES = {"elasticsearch": es_mappings, "opensearch": opensearch_mappings}


def written_paths(log: WrittenLog) -> set[str]:
    return {str(path) for path in log.files}


def matched_by(pattern: str, excludes: Sequence[str] = ()) -> set[str]:
    return {
        path
        for path in glob.glob(pattern)
        if not any(fnmatch.fnmatch(path, exclude) for exclude in excludes)
    }


# -- Fluent Bit -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", FLUENT_BIT_CONFIGS, ids=lambda p: p.name)
def test_fluent_bit_configs_use_only_keys_fluent_bit_accepts(path: Path) -> None:
    config = load_fluent_bit(path)
    assert config["pipeline"]["inputs"] and config["pipeline"]["outputs"]
    assert fluent_bit_problems(config) == []


def test_fluent_bit_key_check_reports_unknown_keys_and_plugins() -> None:
    config = {
        "service": {"flush": 1, "storage.paht": "/tmp"},
        "pipeline": {
            "inputs": [{"name": "tail", "path": "/x", "Path_Keys": "file"}],
            "outputs": [{"name": "elasticsearch", "match": "*"}],
        },
    }
    assert fluent_bit_problems(config) == [
        "service: unknown key 'storage.paht'",
        "inputs[0] (tail): unknown key 'Path_Keys'",
        "outputs[0] (elasticsearch): no table for plugin 'elasticsearch'",
    ]


def test_fluent_bit_tail_reads_the_log_and_its_rotations(written_log: WrittenLog) -> None:
    assert len(written_log.files) >= 3, "the run should rotate the log at least twice"
    env = {"FLOWSCOPE_BASE": str(written_log.base)}
    timestamps = [document["@timestamp"] for document in written_log.documents]
    tails = 0
    for path in FLUENT_BIT_CONFIGS:
        config = load_fluent_bit(path)
        parsers = {parser["name"]: parser for parser in config.get("parsers") or []}
        for tail in fluent_bit_entries(config, "inputs", "tail"):
            tails += 1
            pattern = fluent_bit_env(tail["path"], env)
            excludes = [f"*{part.strip().lstrip('*')}" for part in tail["exclude_path"].split(",")]
            assert matched_by(pattern, excludes) == written_paths(written_log), path.name
            assert tail["db"] and tail["storage.type"] == "filesystem"
            assert is_on(tail["read_from_head"])
            parser = parsers[tail["parser"]]
            assert parser["format"] == "json" and parser["time_key"] == "@timestamp"
            python_format = parser["time_format"].replace("%L", "%f")
            for timestamp in timestamps:
                datetime.strptime(timestamp, python_format)
    assert tails == 3


def test_fluent_bit_search_outputs_write_the_data_stream_idempotently() -> None:
    outputs = 0
    for path in FLUENT_BIT_CONFIGS:
        config = load_fluent_bit(path)
        for name in ("es", "opensearch"):
            for output in fluent_bit_entries(config, "outputs", name):
                outputs += 1
                assert fluent_bit_env(output["index"], {"FLOWSCOPE_ENV": ENVIRONMENT}) == (
                    DATA_STREAM
                )
                assert output["id_key"] == "event.id"
                assert output["write_operation"] == "create"
                assert is_off(output["logstash_format"]) and is_off(output["replace_dots"])
                assert is_on(output["suppress_type_name"]) and is_on(output["time_key_nanos"])
                assert is_on(output["tls"]) and is_on(output["tls.verify"])
                assert int(output["retry_limit"]) > 0
                assert_no_duplicate_timestamp(config, output)
    assert outputs == 3


def assert_no_duplicate_timestamp(config: Mapping[str, Any], output: Mapping[str, Any]) -> None:
    """The es/opensearch outputs always add `time_key` (@timestamp) to the record: every input
    that reaches this output must have moved the record's own @timestamp out first."""
    assert output["time_key"] == "@timestamp"
    parsers = {parser["name"]: parser for parser in config.get("parsers") or []}
    removed_by_filter = [
        f["match"]
        for f in fluent_bit_entries(config, "filters", "modify")
        if f.get("remove") == "@timestamp"
    ]
    for source in config["pipeline"]["inputs"]:
        tag = source.get("tag", FORWARD_SENDER_TAG)
        if not fnmatch.fnmatch(tag, output["match"]):
            continue
        parser = parsers.get(source.get("parser", ""))
        moved_by_parser = parser is not None and is_off(parser.get("time_keep"))
        filtered = any(fnmatch.fnmatch(tag, match) for match in removed_by_filter)
        assert moved_by_parser or filtered, f"{source['name']} keeps @timestamp in the record"


def test_fluent_bit_to_fluentd_avoids_the_metadata_trap_and_waits_for_acks() -> None:
    forwards = [
        output
        for path in FLUENT_BIT_CONFIGS
        for output in fluent_bit_entries(load_fluent_bit(path), "outputs", "forward")
    ]
    assert forwards
    for output in forwards:
        assert is_off(output["retain_metadata_in_forward_mode"])
        assert output["require_ack_response"] is True
        assert is_on(output["tls"]) and is_on(output["tls.verify"]) and output["shared_key"]


def test_fluent_bit_forward_input_takes_tls_and_the_shared_key() -> None:
    config = load_fluent_bit(FLUENT_BIT / "fluent-bit-forward.yaml")
    (source,) = fluent_bit_entries(config, "inputs", "forward")
    assert source["shared_key"] == "${FORWARD_SHARED_KEY}" and source["self_hostname"]
    assert is_on(source["tls"]) and source["tls.crt_file"] and source["tls.key_file"]
    assert source["storage.type"] == "filesystem"


# -- Fluentd ----------------------------------------------------------------------------------
def directives(root: Section, name: str, plugin: str) -> list[Section]:
    return [s for s, _ in root.walk() if s.name == name and s.type == plugin]


@pytest.mark.parametrize("path", FLUENTD_CONFIGS, ids=lambda p: p.name)
def test_fluentd_configs_use_only_v1_keys_the_plugins_accept(path: Path) -> None:
    root = read_config(path)
    assert root.children("source") and root.children("match")
    assert fluentd_problems(root) == []


def test_fluentd_check_reports_v012_syntax(tmp_path: Path) -> None:
    """The seed article's style of configuration, which Fluentd v1 no longer reads as meant."""
    old = tmp_path / "td-agent.conf"
    old.write_text(
        "<source>\n  type tail\n  format json\n  path /var/log/app.log\n  tag app\n</source>\n"
        "<filter app.**>\n  @type record_transformer\n  <record>\n"
        "    service ${service_name}\n  </record>\n</filter>\n"
        "<match app.**>\n  type elasticsearch\n  buffer_type file\n"
        "  buffer_chunk_limit 8m\n  retry_limit 17\n</match>\n"
        "<match secure.**>\n  type secure_forward\n</match>\n"
    )
    problems = "\n".join(fluentd_problems(read_config(old)))
    for expected in (
        "v0.12 'type' in <source>; v1: @type",
        "v0.12 'format' in <source>",
        'v0.12 placeholder ${service_name} in service; v1: ${record["service_name"]}',
        "v0.12 'buffer_type' in <match>; v1: <buffer> @type",
        "v0.12 'buffer_chunk_limit' in <match>; v1: <buffer> chunk_limit_size",
        "v0.12 'retry_limit' in <match>; v1: <buffer> retry_max_times",
        "v0.12 plugin secure_forward; v1: forward with <transport tls> + <security>",
    ):
        assert expected in problems


def test_fluentd_tail_follows_inodes_of_the_log_and_its_rotations(
    written_log: WrittenLog,
) -> None:
    (tail,) = directives(read_config(FLUENTD / "fluent.conf"), "source", "tail")
    pattern = expand_ruby(tail.params["path"], {"FLOWSCOPE_BASE": str(written_log.base)})
    assert matched_by(pattern) == written_paths(written_log)
    assert tail.params["follow_inodes"] == "true" and tail.params["pos_file"]
    assert tail.params["read_from_head"] == "true"
    parse = tail.child("parse")
    assert parse.type == "json" and parse.params["time_key"] == "@timestamp"
    assert parse.params["keep_time_key"] == "true"  # the data stream needs @timestamp
    assert parse.params["time_format"] == "%iso8601"
    for document in written_log.documents:
        datetime.fromisoformat(document["@timestamp"])


def test_fluentd_forward_source_takes_tls_and_the_shared_key() -> None:
    (source,) = directives(read_config(FLUENTD / "fluent-forward.conf"), "source", "forward")
    transport = source.child("transport")
    assert transport.arg == "tls"
    assert transport.params["cert_path"] and transport.params["private_key_path"]
    security = source.child("security")
    assert expand_ruby(security.params["shared_key"], {"FORWARD_SHARED_KEY": "k"}) == "k"
    assert security.params["self_hostname"]


@pytest.mark.parametrize("path", FLUENTD_CONFIGS, ids=lambda p: p.name)
def test_fluentd_output_buffers_on_disk_retries_and_keeps_what_fails(path: Path) -> None:
    root = read_config(path)
    (output,) = directives(root, "match", "elasticsearch")
    assert expand_ruby(output.params["index_name"], {"FLOWSCOPE_ENV": ENVIRONMENT}) == DATA_STREAM
    assert expand_ruby(output.params["index_name"], {}) == "logs-flowscope-dev"
    assert output.params["id_key"] == "event.id" and output.params["write_operation"] == "create"
    assert output.params["scheme"] == "https" and output.params["ssl_verify"] == "true"
    buffer = output.child("buffer")
    assert buffer.type == "file" and buffer.params["path"]
    assert buffer.params["retry_type"] == "exponential_backoff"
    assert int(buffer.params["retry_max_times"]) > 0
    assert output.child("secondary").type == "secondary_file"
    (label,) = root.children("label")
    assert label.arg == "@ERROR" and directives(label, "match", "file")


def test_fluentd_version_floor_and_interop_trap_are_stated() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "Fluentd ≥ 1.16.3" in readme
    assert "retain_metadata_in_forward_mode false" in readme
    for path in FLUENTD_CONFIGS:
        assert "Fluentd >= 1.16.3" in path.read_text(encoding="utf-8")


# -- OpenTelemetry Collector ------------------------------------------------------------------
def load_otel() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(OTEL.read_text(encoding="utf-8"))
    return config


def test_otel_collector_config_uses_only_keys_the_components_accept() -> None:
    assert otel_problems(load_otel()) == []


def test_otel_key_check_reports_unknown_keys() -> None:
    config = {
        "receivers": {"filelog": {"include": ["/x"], "operators": [{"type": "json_parser"}]}},
        "exporters": {"elasticsearch": {"flush": {"bytes": 1}, "tls": {"ca": "x"}}},
        "processors": {"transform": {}},
    }
    assert sorted(otel_problems(config)) == [
        "exporters.elasticsearch.tls: unknown key 'ca'",
        "exporters.elasticsearch: unknown key 'flush'",
        "processors.transform: no table for this component type",
    ]


def test_otel_pipelines_use_exactly_the_defined_components() -> None:
    config = load_otel()
    service = config["service"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipeline in service["pipelines"].values():
        for kind, names in pipeline.items():
            used[kind].update(names)
        # memory_limiter first, so it can refuse data before anything else holds it
        assert pipeline["processors"][0] == "memory_limiter"
    for kind, names in used.items():
        assert names == set(config[kind]), kind
    assert set(service["extensions"]) == set(config["extensions"])
    storages = {r["storage"] for r in config["receivers"].values() if "storage" in r}
    storages |= {e["sending_queue"]["storage"] for e in config["exporters"].values()}
    assert storages <= set(service["extensions"])
    assert {component_type(name) for name in storages} == {"file_storage"}


def test_otel_filelog_reads_the_log_into_documents_keyed_by_event_id(
    written_log: WrittenLog,
) -> None:
    config = load_otel()
    (receiver_id,) = [r for r in config["receivers"] if component_type(r) == "filelog"]
    receiver = config["receivers"][receiver_id]
    env = {"FLOWSCOPE_BASE": str(written_log.base)}
    (pattern,) = [otel_env(include, env) for include in receiver["include"]]
    excludes = [otel_env(exclude, env) for exclude in receiver["exclude"]]
    assert matched_by(pattern, excludes) == written_paths(written_log)
    assert receiver["start_at"] == "beginning" and receiver["storage"]
    parser, copy = receiver["operators"]
    assert parser["type"] == "json_parser" and parser["parse_to"] == "body"
    assert parser["timestamp"]["parse_from"] == 'body["@timestamp"]'
    layout = go_layout_regex(parser["timestamp"]["layout"])
    for document in written_log.documents:
        assert layout.fullmatch(document["@timestamp"]), document["@timestamp"]
    assert copy == {
        "type": "copy",
        "from": 'body["event.id"]',
        "to": 'attributes["elasticsearch.document_id"]',
    }
    exporter = config["exporters"]["elasticsearch"]
    assert exporter["logs_dynamic_id"] == {"enabled": True}
    assert exporter["mapping"]["mode"] == "bodymap"
    assert otel_env(exporter["logs_index"], {"FLOWSCOPE_ENV": ENVIRONMENT}) == DATA_STREAM


def test_otel_exporters_queue_on_disk_and_retry() -> None:
    exporters = load_otel()["exporters"]
    assert set(exporters) == {"elasticsearch", "otlphttp"}
    for settings in exporters.values():
        assert settings["sending_queue"]["enabled"] is True
        assert settings["sending_queue"]["storage"] == "file_storage"
    assert exporters["elasticsearch"]["retry"]["enabled"] is True
    assert exporters["otlphttp"]["retry_on_failure"]["enabled"] is True


def go_layout_regex(layout: str) -> re.Pattern[str]:
    """A Go time layout (the reference time 2006-01-02T15:04:05) as a regular expression."""
    tokens = [
        ("2006", r"\d{4}"),
        ("Z07:00", r"(?:Z|[+-]\d{2}:\d{2})"),
        ("01", r"\d{2}"),
        ("02", r"\d{2}"),
        ("15", r"\d{2}"),
        ("04", r"\d{2}"),
        ("05", r"\d{2}"),
    ]
    parts, index = [], 0
    while index < len(layout):
        if fraction := re.match(r"\.9+", layout[index:]):  # optional fractional seconds
            parts.append(rf"(?:\.\d{{1,{len(fraction.group()) - 1}}})?")
            index += len(fraction.group())
            continue
        for token, regex in tokens:
            if layout.startswith(token, index):
                parts.append(regex)
                index += len(token)
                break
        else:
            parts.append(re.escape(layout[index]))
            index += 1
    return re.compile("".join(parts))


# -- index templates --------------------------------------------------------------------------
@pytest.mark.parametrize("backend", TEMPLATES)
def test_templates_map_every_field_of_the_spec(backend: str) -> None:
    leaves = leaf_fields(TEMPLATES[backend]()["properties"])
    whole = "flattened" if backend == "elasticsearch" else "flat_object"
    for field, kind in SPEC_FIELDS.items():
        assert field in leaves, f"{backend} does not map {field}"
        assert leaves[field]["type"] == (whole if kind == WHOLE else kind), field


def test_elasticsearch_and_opensearch_map_the_same_fields_alike() -> None:
    es = leaf_fields(es_mappings()["properties"])
    opensearch = leaf_fields(opensearch_mappings()["properties"])
    assert set(es) == set(opensearch)
    for field, mapping in es.items():
        if mapping["type"] == "flattened":
            assert opensearch[field] == {"type": "flat_object"}  # flat_object takes no options
        else:
            assert opensearch[field] == mapping, field


@pytest.mark.parametrize("backend", TEMPLATES)
def test_no_field_is_both_a_value_and_an_object(backend: str) -> None:
    """Dotted keys expand into objects: `a.b` as a value and `a.b.c` as a field would make
    every document that carries both fail to index."""
    leaves = sorted(leaf_fields(TEMPLATES[backend]()["properties"]))
    for field in leaves:
        assert not [other for other in leaves if other.startswith(f"{field}.")], field


def test_templates_define_the_data_stream_the_collectors_write() -> None:
    es = load_json(ELASTIC / "index-template.json")
    opensearch = load_json(ELASTIC / "opensearch" / "index-template.json")
    for template in (es, opensearch):
        assert template["data_stream"] == {}
        assert any(fnmatch.fnmatch(DATA_STREAM, p) for p in template["index_patterns"])
        # Above the built-in `logs` template (logs-*-*, priority 100) that also matches.
        assert template["priority"] > 100
    components = {
        "logs-flowscope@settings": "component-template-settings.json",
        "logs-flowscope@mappings": "component-template-mappings.json",
    }
    assert es["composed_of"] == list(components)
    readme = README.read_text(encoding="utf-8")
    for name, file in components.items():
        assert f'_component_template/{name}" -d @elasticsearch/{file}' in readme
    assert '_index_template/logs-flowscope" -d @elasticsearch/index-template.json' in readme
    assert (
        '_index_template/logs-flowscope" -d @elasticsearch/opensearch/index-template.json' in readme
    )


def test_retention_rolls_over_and_deletes_after_30_days_on_both_backends() -> None:
    settings = load_json(ELASTIC / "component-template-settings.json")["template"]["settings"]
    assert settings["index.lifecycle.name"] == "logs-flowscope"
    phases = load_json(ELASTIC / "ilm-policy.json")["policy"]["phases"]
    assert set(phases["hot"]["actions"]["rollover"]) == {"max_age", "max_primary_shard_size"}
    assert phases["delete"] == {"min_age": "30d", "actions": {"delete": {}}}
    ism = load_json(ELASTIC / "opensearch" / "ism-policy.json")["policy"]
    states = {state["name"]: state for state in ism["states"]}
    assert ism["default_state"] == "hot" and "rollover" in states["hot"]["actions"][0]
    assert states["hot"]["transitions"] == [
        {"state_name": "delete", "conditions": {"min_index_age": "30d"}}
    ]
    assert states["delete"]["actions"] == [{"delete": {}}]
    (ism_template,) = ism["ism_template"]
    assert any(fnmatch.fnmatch(DATA_STREAM, p) for p in ism_template["index_patterns"])
    readme = README.read_text(encoding="utf-8")
    assert '_ilm/policy/logs-flowscope" -d @elasticsearch/ilm-policy.json' in readme
    assert '_ism/policies/logs-flowscope" -d @elasticsearch/opensearch/ism-policy.json' in readme


# -- the documents flowscope writes -----------------------------------------------------------
@pytest.mark.parametrize("backend", TEMPLATES)
def test_every_document_flowscope_writes_fits_the_template(
    backend: str, written_log: WrittenLog
) -> None:
    actions = {document["event.action"] for document in written_log.documents}
    assert actions >= {
        "job.started", "job.succeeded", "job.failed", "node.started", "node.succeeded",
        "node.cached", "node.failed", "node.blocked", "node.expanded", "node.progress",
        "telemetry.dropped",
    }  # fmt: skip
    leaves = leaf_fields(TEMPLATES[backend]()["properties"])
    unmapped, misfits = set(), set()
    for document in written_log.documents:
        for key, value in document.items():
            field = field_of(key, leaves)
            if field is None:
                unmapped.add(key)
            elif field == key and not fits(value, leaves[field]):
                misfits.add(f"{key}={value!r} as {leaves[field]['type']}")
    assert unmapped == set(), "map these fields explicitly (and in spec §1 if they are new)"
    assert misfits == set()


@pytest.mark.parametrize("backend", TEMPLATES)
def test_fields_the_template_does_not_name_yet_become_keywords(backend: str) -> None:
    """The decision for fields added before the template catches up: still indexed, as
    keywords, never as text or as a date guessed from the first value seen."""
    mappings = TEMPLATES[backend]()
    assert mappings["dynamic"] is True and mappings["date_detection"] is False
    assert dynamic_type("2026-11-23T09:30:00.123456Z", mappings) == "keyword"
    assert dynamic_type("KSampler", mappings) == "keyword"
    assert dynamic_type(3, mappings) == "long"
    assert dynamic_type(0.5, mappings) == "double"
    assert dynamic_type("2026-11-23T09:30:00Z", {"dynamic": True}) == "date"  # the default


def test_document_keys_are_where_the_collectors_expect_them(written_log: WrittenLog) -> None:
    """What the configs rely on: event.id for _id, @timestamp for the time, log.level for the
    OTel severity, trace.id / span.id for the OTel trace context."""
    assert written_log.files[0] == written_log.base / LOG_FILE
    ids = [document["event.id"] for document in written_log.documents]
    assert len(set(ids)) == len(ids)
    for document in written_log.documents:
        assert {"@timestamp", "log.level", "event.id"} <= set(document)
        if "job.id" in document:
            assert {"trace.id", "span.id"} <= set(document)


# -- the README -------------------------------------------------------------------------------
def code_blocks(text: str, language: str) -> Iterator[str]:
    yield from re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_queries_use_fields_the_template_maps() -> None:
    readme = README.read_text(encoding="utf-8")
    leaves = leaf_fields(es_mappings()["properties"])
    queries = [*code_blocks(readme, "kql"), *code_blocks(readme, "esql")]
    assert len(queries) >= 6  # KQL and ES|QL for each of the three questions
    fields = set()
    for query in queries:
        without_strings = re.sub(r'"[^"]*"', '""', query)
        fields |= set(re.findall(r"@timestamp|\b[a-z_]+(?:\.[a-z_]+)+\b", without_strings))
    assert {"job.id", "node.duration_ms", "user.id", "workflow.id", "log.level"} <= fields
    assert [field for field in sorted(fields) if field_of(field, leaves) is None] == []


def test_readme_documents_every_environment_variable_the_configs_use() -> None:
    used = set()
    for path in FLUENT_BIT_CONFIGS:
        used |= set(re.findall(r"\$\{(\w+)\}", path.read_text(encoding="utf-8")))
    for path in FLUENTD.glob("*.conf"):
        used |= set(re.findall(r"ENV(?:\[|\.fetch\()'(\w+)'", path.read_text(encoding="utf-8")))
    used |= set(re.findall(r"\$\{env:(\w+)", OTEL.read_text(encoding="utf-8")))
    readme = README.read_text(encoding="utf-8")
    assert {"FLOWSCOPE_BASE", "FLOWSCOPE_ENV"} <= used
    assert [name for name in sorted(used) if f"`{name}`" not in readme] == []
    assert "never run here" in readme
