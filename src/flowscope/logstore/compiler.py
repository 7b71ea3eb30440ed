"""KQL tree → a parameterized SQL condition over `events AS e`.

Only names from the field table (fields.py) and fixed SQL text reach the statement; every value,
JSON path, GLOB / LIKE pattern and FTS5 expression travels as a bound parameter. Each leaf is
two-valued where it matters: `not` wraps its operand in IFNULL so that a missing field counts as
"does not match" (`not level:error` keeps events without a level), as in Elasticsearch.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from flowscope.logstore.dates import DateError, Interval, parse_interval
from flowscope.logstore.fields import Field, Kind, Storage, UnknownFieldError, resolve
from flowscope.logstore.kql import (
    And,
    FieldRef,
    KQLError,
    Match,
    MatchAll,
    Node,
    Not,
    Or,
    Range,
    Value,
    parse,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NUMERIC_JSON = "('integer', 'real')"


@dataclass(frozen=True)
class SqlFilter:
    """A condition for `SELECT ... FROM events AS e WHERE <where>`, with its parameters."""

    where: str
    params: tuple[Any, ...]


def compile_kql(query: str, *, now_ns: int | None = None) -> SqlFilter:
    """Parse and compile `query`; `now_ns` anchors date math (`now-1d`). Raises KQLError."""
    tree = parse(query)
    compiler = _Compiler(query, time.time_ns() if now_ns is None else now_ns)
    fragment = compiler.node(tree)
    return SqlFilter(fragment.sql, fragment.params)


@dataclass(frozen=True)
class _Sql:
    """A piece of SQL and the parameters of its `?`s, in order."""

    sql: str
    params: tuple[Any, ...] = ()


def _sql(template: str, *args: Any) -> _Sql:
    """Fill `template`: each `{}` takes the next argument as a `_Sql` fragment, each `?` the
    next argument as a bound value. Keeps text and parameters in step by construction."""
    parts: list[str] = []
    params: list[Any] = []
    arguments = iter(args)
    i = 0
    while i < len(template):
        if template.startswith("{}", i):
            fragment = next(arguments)
            assert isinstance(fragment, _Sql)
            parts.append(fragment.sql)
            params.extend(fragment.params)
            i += 2
        elif template[i] == "?":
            parts.append("?")
            params.append(next(arguments))
            i += 1
        else:
            parts.append(template[i])
            i += 1
    assert next(arguments, None) is None, "unused argument"
    return _Sql("".join(parts), tuple(params))


def _join(separator: str, fragments: list[_Sql]) -> _Sql:
    if len(fragments) == 1:
        return fragments[0]
    return _Sql(
        "(" + separator.join(f.sql for f in fragments) + ")",
        tuple(p for f in fragments for p in f.params),
    )


_TRUE = _Sql("1")


class _Compiler:
    def __init__(self, query: str, now_ns: int) -> None:
        self.query = query
        self.now_ns = now_ns

    def error(self, message: str, position: int) -> KQLError:
        return KQLError(message, self.query, position)

    # -- boolean structure ---------------------------------------------------------------
    def node(self, node: Node) -> _Sql:
        if isinstance(node, MatchAll):
            return _TRUE
        if isinstance(node, Not):
            return _sql("NOT IFNULL({}, 0)", self.node(node.operand))
        if isinstance(node, And):
            return _join(" AND ", [self.node(child) for child in node.operands])
        if isinstance(node, Or):
            return _join(" OR ", [self.node(child) for child in node.operands])
        if isinstance(node, Range):
            return self.range(node)
        return self.match(node)

    def field(self, ref: FieldRef) -> Field:
        try:
            return resolve(ref.name)
        except UnknownFieldError as exc:
            raise self.error(str(exc), ref.position) from None

    @staticmethod
    def target(field: Field) -> tuple[_Sql, _Sql]:
        """The field's value as SQL, and its JSON type (for fields kept in JSON)."""
        if field.storage is Storage.COLUMN:
            return _Sql(f"e.{field.column}"), _Sql("NULL")
        doc = "c.doc" if field.storage is Storage.CONTEXT else "e.extra"
        return (
            _sql(f"json_extract({doc}, ?)", field.json_path),
            _sql(f"json_type({doc}, ?)", field.json_path),
        )

    @staticmethod
    def scoped(field: Field, condition: _Sql) -> _Sql:
        """Context fields live in their own table: match the contexts, then the events."""
        if field.storage is Storage.CONTEXT:
            return _sql("e.context_id IN (SELECT c.id FROM contexts AS c WHERE {})", condition)
        return condition

    # -- field:value and full text -------------------------------------------------------
    def match(self, node: Match) -> _Sql:
        if node.field is None:
            if any(value.is_star for value in node.values):
                return _TRUE
            return self.full_text(node.values, column=None)
        field = self.field(node.field)
        if field.full_text and not any(value.is_star for value in node.values):
            return self.full_text(node.values, column=field.column)
        return self.scoped(field, self.values(field, node.values))

    def values(self, field: Field, values: tuple[Value, ...]) -> _Sql:
        """Conditions on one field, one per value, OR-ed (exact values become one IN)."""
        target, json_type = self.target(field)
        parts: list[_Sql] = []
        exact: list[Any] = []
        for value in values:
            if value.is_star:
                parts.append(_sql("{} IS NOT NULL", target))
            elif field.kind is Kind.OBJECT:
                raise self.error(
                    f"{field.name} is an object: query one of its keys, "
                    f"e.g. {field.name}.seed:42, or {field.name}:* (it exists)",
                    value.position,
                )
            elif field.kind is Kind.ANY:
                parts.append(self.any_value(target, json_type, value))
            elif field.kind is Kind.TEXT:
                parts.append(_sql("{} LIKE ? ESCAPE '\\'", target, _like_pattern(value)))
            elif value.has_wildcard:
                if field.kind not in (Kind.KEYWORD, Kind.LOWER_KEYWORD):
                    raise self.error(
                        f"wildcards apply to keyword fields; {field.name} holds "
                        f"{field.kind.value} values",
                        value.position,
                    )
                pattern = _glob_pattern(value, lower=field.kind is Kind.LOWER_KEYWORD)
                parts.append(_sql("{} GLOB ?", target, pattern))
            elif field.kind is Kind.DATE:
                interval = self.interval(field, value)
                parts.append(
                    _sql("({} >= ? AND {} < ?)", target, interval.start_ns, target, interval.end_ns)
                )
            else:
                exact.append(self.scalar(field, value))
        if len(exact) == 1:
            parts.append(_sql("{} = ?", target, exact[0]))
        elif exact:
            marks = ", ".join("?" for _ in exact)
            parts.append(_sql(f"{{}} IN ({marks})", target, *exact))
        return _join(" OR ", parts)

    def any_value(self, target: _Sql, json_type: _Sql, value: Value) -> _Sql:
        """A key inside node.inputs / node.outputs: its JSON type decides the comparison, so
        `seed:42` matches the number 42 and the string "42", `flag:true` only booleans."""
        if value.has_wildcard:
            return _sql("({} = 'text' AND {} GLOB ?)", json_type, target, _glob_pattern(value))
        text = value.text
        options = [_sql("({} = 'text' AND {} = ?)", json_type, target, text)]
        number = _number(text)
        if number is not None and not value.quoted:
            options.append(
                _sql(f"({{}} IN {_NUMERIC_JSON} AND {{}} = ?)", json_type, target, number)
            )
        if text.lower() in ("true", "false") and not value.quoted:
            options.append(_sql("{} = ?", json_type, text.lower()))
        return _join(" OR ", options)

    def scalar(self, field: Field, value: Value) -> Any:
        text = value.text
        if field.kind is Kind.LOWER_KEYWORD:
            return text.lower()
        if field.kind in (Kind.LONG, Kind.FLOAT):
            number = _number(text)
            if number is None:
                raise self.error(
                    f"{field.name} holds numbers; {value.display()} is not a number", value.position
                )
            return number
        if field.kind is Kind.BOOLEAN:
            if text.lower() not in ("true", "false"):
                raise self.error(
                    f"{field.name} is true or false, not {value.display()}", value.position
                )
            return 1 if text.lower() == "true" else 0
        return text

    def interval(self, field: Field, value: Value) -> Interval:
        try:
            return parse_interval(value.text, self.now_ns)
        except DateError as exc:
            raise self.error(f"{field.name}: {exc}", value.position) from None

    def full_text(self, values: tuple[Value, ...], *, column: str | None) -> _Sql:
        """FTS5 over message + error.message (or one of them); any value may match. A wildcard
        that only ends a word is an FTS prefix search; others fall back to a LIKE scan."""
        fts_terms: list[str] = []
        scans: list[_Sql] = []
        for value in values:
            term = _fts_term(value)
            if term is not None:
                fts_terms.append(term)
                continue
            for name in [column] if column else ["message", "error_message"]:
                scans.append(_sql(f"e.{name} LIKE ? ESCAPE '\\'", _like_pattern(value)))
        parts = []
        if fts_terms:
            expression = " OR ".join(fts_terms)
            if column is not None:
                expression = f"{column} : ({expression})"
            parts.append(
                _sql("e.id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)", expression)
            )
        return _join(" OR ", parts + scans)

    # -- ranges --------------------------------------------------------------------------
    def range(self, node: Range) -> _Sql:
        field = self.field(node.field)
        value, op = node.value, node.operator
        target, json_type = self.target(field)
        if field.kind is Kind.DATE:
            interval = self.interval(field, value)
            # A date covers an interval: > and <= compare with its end (rounding up).
            bound = interval.start_ns if op in (">=", "<") else interval.end_ns
            sql_op = ">=" if op in (">=", ">") else "<"
            return _sql(f"{{}} {sql_op} ?", target, bound)
        if field.kind not in (Kind.LONG, Kind.FLOAT, Kind.KEYWORD, Kind.LOWER_KEYWORD, Kind.ANY):
            raise self.error(
                f"ranges apply to numbers, dates and keywords; {field.name} holds "
                f"{field.kind.value} values",
                node.field.position,
            )
        if field.kind is Kind.ANY:
            number = _number(value.text) if not value.quoted else None
            types = _NUMERIC_JSON if number is not None else "('text')"
            bound_value: Any = number if number is not None else value.text
            condition = _sql(f"({{}} IN {types} AND {{}} {op} ?)", json_type, target, bound_value)
        else:
            condition = _sql(f"{{}} {op} ?", target, self.scalar(field, value))
        return self.scoped(field, condition)


def _number(text: str) -> int | float | None:
    if _NUMBER.fullmatch(text) is None:
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        value = int(text)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    number = float(text)
    if number in (float("inf"), float("-inf")):
        return None
    return number


def _fts_phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _fts_term(value: Value) -> str | None:
    if value.quoted or not value.has_wildcard:
        return _fts_phrase(value.text)
    pieces = value.pieces
    if len(pieces) == 2 and pieces[0] is not None and pieces[1] is None:
        return _fts_phrase(pieces[0]) + " *"
    return None


def _like_pattern(value: Value) -> str:
    """A substring LIKE pattern (escape character `\\`, case-insensitive for ASCII): text
    fields match words anywhere in the text; `*` → `%`."""
    body = "".join(
        "%" if piece is None else re.sub(r"([\\%_])", r"\\\1", piece) for piece in value.pieces
    )
    return f"%{body}%"


def _glob_pattern(value: Value, *, lower: bool = False) -> str:
    """A case-sensitive GLOB pattern: `*` is the only wildcard; literal `*?[` are bracketed."""
    out: list[str] = []
    for piece in value.pieces:
        if piece is None:
            out.append("*")
            continue
        text = piece.lower() if lower else piece
        out.append(re.sub(r"([*?\[])", r"[\1]", text))
    return "".join(out)
