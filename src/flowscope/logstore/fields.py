"""The fields the log store knows: where each ECS field lives (a typed column, the row's JSON,
or the shared service/host context) and what kind of values it holds. This table is the
whitelist the KQL compiler works from: nothing else ever reaches SQL as a name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    KEYWORD = "keyword"  # exact, case-sensitive
    LOWER_KEYWORD = "lowercase keyword"  # a closed lowercase vocabulary: matched case-insensitively
    TEXT = "text"  # words: full-text (FTS5) for message and error.message, substring otherwise
    LONG = "long"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DATE = "date"
    OBJECT = "object"  # node.inputs / node.outputs: query their keys, not the object
    ANY = "any"  # a key inside an object: a string, a number or a boolean


class Storage(Enum):
    COLUMN = "column"  # a typed column of `events`
    EXTRA = "extra"  # a key of the row's JSON (`events.extra`)
    CONTEXT = "context"  # a key of the shared service/host JSON (`contexts.doc`)


@dataclass(frozen=True)
class Field:
    name: str  # the ECS name, e.g. `workflow.id`
    kind: Kind
    storage: Storage
    column: str = ""  # for COLUMN: the column name; for FTS-backed TEXT: the FTS column too
    json_path: str = ""  # for EXTRA / CONTEXT: the JSON path inside the document

    @property
    def full_text(self) -> bool:
        return self.kind is Kind.TEXT and self.storage is Storage.COLUMN


def _column(name: str, column: str, kind: Kind) -> Field:
    return Field(name, kind, Storage.COLUMN, column=column)


# The hot fields: typed, indexed where queries need it (see schema.py).
COLUMN_FIELDS: tuple[Field, ...] = (
    _column("@timestamp", "time_ns", Kind.DATE),
    _column("log.level", "level", Kind.LOWER_KEYWORD),
    _column("event.action", "action", Kind.LOWER_KEYWORD),
    _column("event.outcome", "outcome", Kind.LOWER_KEYWORD),
    _column("event.id", "event_id", Kind.KEYWORD),
    _column("event.sequence", "sequence", Kind.LONG),
    _column("event.duration", "duration_ns", Kind.LONG),
    _column("job.id", "job_id", Kind.KEYWORD),
    _column("workflow.id", "workflow_id", Kind.KEYWORD),
    _column("user.id", "user_id", Kind.KEYWORD),
    _column("trace.id", "trace_id", Kind.KEYWORD),
    _column("node.id", "node_id", Kind.KEYWORD),
    _column("node.type", "node_type", Kind.KEYWORD),
    _column("node.duration_ms", "duration_ms", Kind.FLOAT),
    _column("node.cached", "cached", Kind.BOOLEAN),
    _column("message", "message", Kind.TEXT),
    _column("error.type", "error_type", Kind.KEYWORD),
    _column("error.message", "error_message", Kind.TEXT),
)

# Known fields kept in the row's JSON (spec/telemetry.md §1 and the engine's events).
_EXTRA: dict[str, Kind] = {
    "span.id": Kind.KEYWORD,
    "transaction.id": Kind.KEYWORD,
    "node.title": Kind.KEYWORD,
    "node.inputs": Kind.OBJECT,
    "node.outputs": Kind.OBJECT,
    "node.expanded_count": Kind.LONG,
    "node.progress.value": Kind.FLOAT,
    "node.progress.max": Kind.FLOAT,
    "job.nodes_total": Kind.LONG,
    "job.nodes_cached": Kind.LONG,
    "error.code": Kind.KEYWORD,
    "error.stack_trace": Kind.TEXT,
    "model.name": Kind.KEYWORD,
    "model.family": Kind.KEYWORD,
    "model.size_bytes": Kind.LONG,
    "gpu.device": Kind.KEYWORD,
    "gpu.memory.used_bytes": Kind.LONG,
    "gpu.memory.peak_bytes": Kind.LONG,
    "process.memory.peak_bytes": Kind.LONG,
    "sampling.rate": Kind.FLOAT,
    "telemetry.sink": Kind.KEYWORD,
    "telemetry.dropped": Kind.LONG,
    # The server: one http.request event per request, and the job store's queue events.
    "http.request.method": Kind.KEYWORD,
    "url.path": Kind.KEYWORD,
    "http.response.status_code": Kind.LONG,
    "client.address": Kind.KEYWORD,
    "job.priority": Kind.FLOAT,
    "worker.id": Kind.KEYWORD,
}

# The same for every event of one process: stored once per distinct combination.
_CONTEXT: tuple[str, ...] = (
    "service.name",
    "service.version",
    "service.environment",
    "service.node.name",
    "host.name",
)
CONTEXT_PREFIXES = ("service.", "host.")

# Objects whose keys are data (a node's input names), kept nested rather than flattened.
OBJECT_FIELDS = tuple(name for name, kind in _EXTRA.items() if kind is Kind.OBJECT)

# The seed examples' flat names (spec §1).
ALIASES: dict[str, str] = {
    "workflow_id": "workflow.id",
    "level": "log.level",
    "node": "node.type",
    "duration_ms": "node.duration_ms",
    "user_id": "user.id",
}

_SEGMENT = re.compile(r"[A-Za-z0-9_]{1,64}")
MAX_SUBKEY_DEPTH = 4


def _json_path(*keys: str) -> str:
    # Keys are quoted so that dots inside a key (`node.inputs`) are not path separators;
    # every key has passed the segment whitelist or comes from the tables above.
    return "$" + "".join(f'."{key}"' for key in keys)


FIELDS: dict[str, Field] = {field.name: field for field in COLUMN_FIELDS}
FIELDS.update(
    {
        name: Field(name, kind, Storage.EXTRA, json_path=_json_path(name))
        for name, kind in _EXTRA.items()
    }
)
FIELDS.update(
    {
        name: Field(name, Kind.KEYWORD, Storage.CONTEXT, json_path=_json_path(name))
        for name in _CONTEXT
    }
)


class UnknownFieldError(LookupError):
    """Raised by `resolve` with a message that names the known fields."""


def resolve(name: str) -> Field:
    """The field a query names: an ECS name, an alias, or a key under an object field
    (`node.inputs.seed`, `node.outputs.0`)."""
    canonical = ALIASES.get(name, name)
    field = FIELDS.get(canonical)
    if field is not None:
        return field
    for parent in OBJECT_FIELDS:
        if canonical.startswith(parent + "."):
            keys = canonical[len(parent) + 1 :].split(".")
            if len(keys) <= MAX_SUBKEY_DEPTH and all(_SEGMENT.fullmatch(key) for key in keys):
                return Field(
                    canonical, Kind.ANY, Storage.EXTRA, json_path=_json_path(parent, *keys)
                )
            raise UnknownFieldError(
                f"{name!r}: keys under {parent} are up to {MAX_SUBKEY_DEPTH} dot-separated "
                "names of letters, digits and _"
            )
    raise UnknownFieldError(unknown_field_message(name))


def unknown_field_message(name: str) -> str:
    import difflib

    candidates = [*FIELDS, *ALIASES]
    close = difflib.get_close_matches(name, candidates, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown field {name!r}{hint}; known fields: {known_fields_text()}"


def known_fields_text() -> str:
    reverse = {target: alias for alias, target in ALIASES.items()}
    names = []
    for field in FIELDS.values():
        alias = reverse.get(field.name)
        label = f"{field.name} ({alias})" if alias else field.name
        names.append(label + (".<key>" if field.kind is Kind.OBJECT else ""))
    return ", ".join(names)
