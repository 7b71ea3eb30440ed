"""The local log store: events in SQLite, searched with a KQL subset, summarised by canned views.

The engine never imports this package; the composition root adds a `LogStoreSink` to the
telemetry pipeline, and the CLI and the server read through `LogStore` and the views.
"""

from flowscope.logstore.compiler import SqlFilter, compile_kql
from flowscope.logstore.dates import DateError, parse_since
from flowscope.logstore.fields import ALIASES, FIELDS
from flowscope.logstore.importer import BadLine, ImportReport, import_jsonl
from flowscope.logstore.kql import KQLError, parse
from flowscope.logstore.rows import DocumentError
from flowscope.logstore.schema import SchemaError
from flowscope.logstore.sink import LogStoreSink
from flowscope.logstore.store import STORE_FILENAME, LogStore, StoreMissingError, store_path
from flowscope.logstore.views import (
    AmbiguousJobError,
    JobTimeline,
    NodeSpan,
    NodeTypeStats,
    TimelineEvent,
    job_timeline,
    node_stats,
    resolve_job_id,
)

__all__ = [
    "ALIASES",
    "FIELDS",
    "STORE_FILENAME",
    "AmbiguousJobError",
    "BadLine",
    "DateError",
    "DocumentError",
    "ImportReport",
    "JobTimeline",
    "KQLError",
    "LogStore",
    "LogStoreSink",
    "NodeSpan",
    "NodeTypeStats",
    "SchemaError",
    "SqlFilter",
    "StoreMissingError",
    "TimelineEvent",
    "compile_kql",
    "import_jsonl",
    "job_timeline",
    "node_stats",
    "parse",
    "parse_since",
    "resolve_job_id",
    "store_path",
]
