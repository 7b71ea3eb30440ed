"""The KQL parser and compiler: the tree, errors that point at the position, and (property
tests) that no input raises anything but KQLError or yields SQL that SQLite rejects."""

from __future__ import annotations

import string
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logstore_samples import sample_documents

from flowscope.logstore import KQLError, LogStore, compile_kql, parse
from flowscope.logstore.kql import And, FieldRef, Match, MatchAll, Not, Or, Range, Value


def word(text: str, position: int) -> Value:
    return Value((text,), quoted=False, position=position)


def test_precedence_and_case_insensitive_keywords() -> None:
    tree = parse("a OR b And c")
    assert tree == Or(
        (
            Match(None, (word("a", 0),)),
            And((Match(None, (word("b", 5),)), Match(None, (word("c", 11),)))),
        )
    )


def test_field_values_desugar_to_matches_on_the_field() -> None:
    tree = parse("node:(KSampler or not VAEDecode)")
    field = FieldRef("node", 0)
    assert tree == Or(
        (Match(field, (word("KSampler", 6),)), Not(Match(field, (word("VAEDecode", 22),))))
    )


def test_words_phrases_wildcards_and_escapes() -> None:
    assert parse("node:KSampler VAEDecode") == Match(
        FieldRef("node", 0), (word("KSampler", 5), word("VAEDecode", 14))
    )
    assert parse('message:"a (b) : c"') == Match(
        FieldRef("message", 0), (Value(("a (b) : c",), quoted=True, position=8),)
    )
    wildcard = parse("node:K*er**")
    assert isinstance(wildcard, Match)
    assert wildcard.values[0].pieces == ("K", None, "er", None)
    escaped = parse(r"error.type:a\:b\*\ c")
    assert isinstance(escaped, Match)
    assert escaped.values[0].pieces == ("a:b* c",)
    assert parse(r"\and") == Match(None, (Value(("and",), quoted=False, position=0),))
    assert parse('"say \\"hi\\""') == Match(None, (Value(('say "hi"',), True, 0),))


def test_ranges_empty_query_and_not() -> None:
    assert parse("duration_ms >= 5") == Range(FieldRef("duration_ms", 0), ">=", word("5", 15))
    assert parse("@timestamp<now-1d") == Range(FieldRef("@timestamp", 0), "<", word("now-1d", 11))
    assert parse("   ") == MatchAll()
    assert parse("not not x") == Not(Not(Match(None, (word("x", 8),))))


ERRORS = [
    ("level:", 6, "expected a value after 'level:'"),
    ("level:error and", 15, "expected a field, a value or '('"),
    ("and level:error", 0, "'and' needs an expression on each side"),
    ("(level:error or node:x", 22, "missing ')' to close the '(' at position 0"),
    ("level:error)", 11, "this ')' has no matching '('"),
    ("level:error node:KSampler", 12, "expected 'and' or 'or' here"),
    ('level:"error', 6, "this quote is never closed"),
    ("@timestamp > 2026-11-23T09:30", 26, "quote values that contain ':'"),
    ("leve:error", 0, "unknown field 'leve' (did you mean 'level'?)"),
    ("foo.bar:1", 0, "unknown field 'foo.bar'"),
    (
        "level:error and duration_ms:fast",
        28,
        "node.duration_ms holds numbers; fast is not a number",
    ),
    ("node.cached:maybe", 12, "node.cached is true or false"),
    ("duration_ms:1*", 12, "wildcards apply to keyword fields"),
    ("node.inputs:42", 12, "node.inputs is an object"),
    ("message > x", 0, "ranges apply to numbers, dates and keywords"),
    ("@timestamp >= yesterday", 14, "'yesterday' is not a date"),
    ("@timestamp >= now-1x", 14, "cannot read date math"),
    ('@timestamp:"2026-13-01"', 11, "is not a date"),
    ("duration_ms > 5*", 14, "a range value cannot contain a wildcard"),
    ("duration_ms > 5 6", 16, "a range takes one value"),
    ("level:not error", 6, "put 'not' before the field"),
    ("node:{a}", 5, "nested field queries"),
    ("()", 1, "empty parentheses"),
    ('"level":error', 0, "field names are written without quotes"),
    ("node.inputs.a.b.c.d.e:1", 0, "keys under node.inputs are up to 4"),
    ("x\\", 1, "a backslash must be followed"),
    ("a\ud800", 1, "this character cannot appear"),
    ("(" * 70 + "a" + ")" * 70, 64, "nests deeper than 64 levels"),
]


@pytest.mark.parametrize(("query", "position", "message"), ERRORS)
def test_errors_point_at_the_position(query: str, position: int, message: str) -> None:
    with pytest.raises(KQLError) as caught:
        compile_kql(query)
    error = caught.value
    assert message in error.message
    assert error.position == position
    # The rendering shows the query and a caret under the position.
    lines = str(error).splitlines()
    assert lines[-1] == "  " + " " * position + "^"
    assert len(lines[-2]) == 2 + len(query)


def test_unknown_field_lists_the_known_ones() -> None:
    with pytest.raises(KQLError) as caught:
        compile_kql("nod:KSampler")
    assert "did you mean 'node'?" in caught.value.message
    for listed in ("workflow.id (workflow_id)", "log.level (level)", "node.inputs.<key>"):
        assert listed in caught.value.message


def test_limits_on_size() -> None:
    with pytest.raises(KQLError, match="the limit is 4096"):
        compile_kql("a " * 3000)
    with pytest.raises(KQLError, match="more than 256 terms"):
        compile_kql(" or ".join(f"node:n{i}" for i in range(300)))


def test_sql_is_parameterized() -> None:
    hostile = 'node:"x\'; DROP TABLE events; --" or message:"\'" or node.inputs.a_b:"\')"'
    compiled = compile_kql(hostile)
    assert "DROP" not in compiled.where
    assert "'; " not in compiled.where
    assert "x'; DROP TABLE events; --" in compiled.params


# -- property tests ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogStore]:
    with LogStore(tmp_path_factory.mktemp("kql") / "logstore.db") as store:
        store.insert(sample_documents())
        yield store


FRAGMENTS = [
    *("level", "node", "workflow_id", "duration_ms", "@timestamp", "message", "node.cached"),
    *("node.inputs.seed", "node.inputs", "service.name", "error.stack_trace", "job.id", "x.y"),
    *(":", " : ", "(", ")", " and ", " or ", " not ", "AND", "Or", "NOT", "<", "<=", ">", ">="),
    *('"', '"a b"', "*", "\\", "\\*", "{", "}", " ", "error", "KSampler", "now-1d", "now/d"),
    *(
        "2026-11-23",
        '"2026-11-23T09:30:00Z"',
        "42",
        "-1.5e3",
        "true",
        "1e999",
        "99999999999999999999",
    ),
    *("'", "%", "_", "?", "[", "]", "é", "\x00", "\t", "\n", "-", "NEAR", "AND(", '""'),
]
kql_like = st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join)
noise = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(string.punctuation))


def check(store: LogStore, query: str) -> None:
    try:
        compiled = compile_kql(query)
    except KQLError as error:
        assert 0 <= error.position <= len(query)
        str(error)
        return
    # Whatever compiles must run: no SQL error, no FTS5 syntax error, no binding error.
    store.fetch(f"SELECT count(*) FROM events AS e WHERE {compiled.where}", compiled.params)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=kql_like)
def test_kql_like_strings_compile_to_runnable_sql_or_fail_cleanly(
    probe: LogStore, query: str
) -> None:
    check(probe, query)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text() | noise)
def test_random_strings_never_raise_anything_but_kql_error(probe: LogStore, query: str) -> None:
    check(probe, query)
