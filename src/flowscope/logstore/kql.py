"""A subset of the Kibana Query Language (KQL), parsed into a small tree.

    query   := or (EOF)            an empty query matches everything
    or      := and ("or" and)*     keywords are case-insensitive; `and` binds tighter
    and     := not ("and" not)*
    not     := "not" not | primary
    primary := "(" or ")"
             | FIELD ":" values    field:value, field:"phrase", field:(a or b), field:*
             | FIELD RANGE value   field >= 10, @timestamp < now-1d
             | words | "phrase"    full-text search
    values  := "(" vor ")" | words | "phrase"   with vor/vand/vnot the same shape as or/and/not

Unquoted values may contain `*` wildcards; several unquoted words in a row match any of them
(KQL's terms query); quote a phrase. Special characters `\\():<>"*{}` are escaped with a
backslash. Every error is a `KQLError` that points at the offending position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

MAX_QUERY_LENGTH = 4096
MAX_DEPTH = 64  # nested parentheses and `not`s: a query, not a stress test
MAX_TERMS = 256  # leaf conditions: keeps the SQL far below SQLite's expression limits

_SPECIAL = set('\\():<>"{}')
_ESCAPES = {"t": "\t", "r": "\r", "n": "\n"}


class KQLError(ValueError):
    """A query that cannot be parsed or compiled. `str()` shows the query with a caret under
    `position`."""

    def __init__(self, message: str, query: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.query = query
        self.position = max(0, min(position, len(query)))

    def __str__(self) -> str:
        shown = "".join(" " if ch.isspace() else ch for ch in self.query)
        return f"{self.message}\n  {shown}\n  {' ' * self.position}^"


# -- the tree ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Value:
    """One value as written: literal pieces, with None where an unescaped `*` stood."""

    pieces: tuple[str | None, ...]
    quoted: bool
    position: int

    @property
    def text(self) -> str:
        """The literal text (wildcards left out)."""
        return "".join(piece for piece in self.pieces if piece is not None)

    @property
    def has_wildcard(self) -> bool:
        return None in self.pieces

    @property
    def is_star(self) -> bool:
        """Only wildcards: `field:*` (the field exists) or a bare `*` (everything)."""
        return bool(self.pieces) and all(piece is None for piece in self.pieces)

    def display(self) -> str:
        body = "".join("*" if piece is None else piece for piece in self.pieces)
        return f'"{body}"' if self.quoted else body


@dataclass(frozen=True)
class FieldRef:
    name: str
    position: int


@dataclass(frozen=True)
class Match:
    """`field:value(s)`; `field` None is a full-text search. Several values match any."""

    field: FieldRef | None
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Range:
    field: FieldRef
    operator: str  # one of < <= > >=
    value: Value


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class MatchAll:
    pass


Node = Match | Range | Not | And | Or | MatchAll
_Primary = Callable[[], Node]


# -- tokens ------------------------------------------------------------------------------
class T(Enum):
    LPAREN = "'('"
    RPAREN = "')'"
    COLON = "':'"
    RANGE = "a range operator"
    STRING = "a quoted phrase"
    WORD = "a word"
    AND = "'and'"
    OR = "'or'"
    NOT = "'not'"
    EOF = "the end of the query"


@dataclass(frozen=True)
class Token:
    kind: T
    position: int
    text: str = ""  # RANGE: the operator; WORD: the raw text
    value: Value | None = None  # WORD and STRING


def _lex(query: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            tokens.append(Token(T.LPAREN, i))
            i += 1
        elif ch == ")":
            tokens.append(Token(T.RPAREN, i))
            i += 1
        elif ch == ":":
            tokens.append(Token(T.COLON, i))
            i += 1
        elif ch in "<>":
            op = ch + "=" if query.startswith("=", i + 1) else ch
            tokens.append(Token(T.RANGE, i, op))
            i += len(op)
        elif ch in "{}":
            raise KQLError(
                "nested field queries with { } are not supported; "
                "use parentheses and full field names",
                query,
                i,
            )
        elif ch == '"':
            i = _lex_string(query, i, tokens)
        else:
            i = _lex_word(query, i, tokens)
    tokens.append(Token(T.EOF, n))
    return tokens


def _lex_string(query: str, start: int, tokens: list[Token]) -> int:
    chars: list[str] = []
    i = start + 1
    while i < len(query):
        ch = query[i]
        if ch == '"':
            value = Value(("".join(chars),), quoted=True, position=start)
            tokens.append(Token(T.STRING, start, query[start : i + 1], value))
            return i + 1
        if ch == "\\":
            if i + 1 >= len(query):
                break
            escaped = query[i + 1]
            chars.append(_ESCAPES.get(escaped, escaped))
            i += 2
            continue
        chars.append(ch)
        i += 1
    raise KQLError('this quote is never closed; add a closing "', query, start)


def _lex_word(query: str, start: int, tokens: list[Token]) -> int:
    pieces: list[str | None] = []
    current: list[str] = []
    escaped_any = False
    i = start
    while i < len(query):
        ch = query[i]
        if ch.isspace() or (ch in _SPECIAL and ch != "\\"):
            break
        if ch == "\\":
            if i + 1 >= len(query):
                raise KQLError("a backslash must be followed by the character it escapes", query, i)
            escaped = query[i + 1]
            current.append(_ESCAPES.get(escaped, escaped))
            escaped_any = True
            i += 2
            continue
        if ch == "*":
            if current:
                pieces.append("".join(current))
                current = []
            if not pieces or pieces[-1] is not None:  # `**` is one wildcard
                pieces.append(None)
        else:
            current.append(ch)
        i += 1
    if current:
        pieces.append("".join(current))
    raw = query[start:i]
    keyword = {"and": T.AND, "or": T.OR, "not": T.NOT}.get(raw.lower())
    if keyword is not None and not escaped_any:
        tokens.append(Token(keyword, start, raw))
    else:
        tokens.append(Token(T.WORD, start, raw, Value(tuple(pieces), quoted=False, position=start)))
    return i


# -- parser ------------------------------------------------------------------------------
def parse(query: str) -> Node:
    """The query's tree; raises `KQLError` pointing at the first problem."""
    if len(query) > MAX_QUERY_LENGTH:
        raise KQLError(
            f"the query is {len(query)} characters long; the limit is {MAX_QUERY_LENGTH}",
            query[:80],
            80,
        )
    for index, ch in enumerate(query):
        if "\ud800" <= ch <= "\udfff" or ch == "\x00":
            raise KQLError("this character cannot appear in a query", query, index)
    return _Parser(query, _lex(query)).parse()


class _Parser:
    def __init__(self, query: str, tokens: list[Token]) -> None:
        self.query = query
        self.tokens = tokens
        self.index = 0
        self.depth = 0
        self.terms = 0

    # -- helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def current_kind(self) -> T:
        # A method, not `self.token.kind`: the type checker must not carry a narrowing of the
        # current token across calls that advance it.
        return self.tokens[self.index].kind

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def error(self, message: str, position: int | None = None) -> KQLError:
        return KQLError(message, self.query, self.token.position if position is None else position)

    def enter(self, position: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the query nests deeper than {MAX_DEPTH} levels", position)

    def leaf(self, node: Match | Range) -> Match | Range:
        self.terms += len(node.values) if isinstance(node, Match) else 1
        if self.terms > MAX_TERMS:
            raise self.error(f"the query has more than {MAX_TERMS} terms")
        return node

    def starts_field(self) -> bool:
        return self.token.kind is T.WORD and self.peek().kind in (T.COLON, T.RANGE)

    # -- grammar
    def parse(self) -> Node:
        if self.token.kind is T.EOF:
            return MatchAll()
        node = self.or_expr(self.primary)
        if self.current_kind() is not T.EOF:
            raise self.unexpected_after_expression()
        return node

    def unexpected_after_expression(self) -> KQLError:
        token = self.token
        if token.kind is T.RPAREN:
            return self.error("this ')' has no matching '('")
        if token.kind in (T.WORD, T.STRING, T.LPAREN, T.NOT):
            return self.error(
                "expected 'and' or 'or' here: KQL does not combine expressions without one"
            )
        if token.kind is T.COLON:
            return self.error("unexpected ':'; quote values that contain ':' (e.g. times)")
        return self.error(f"unexpected {token.kind.value}")

    def or_expr(self, primary: _Primary) -> Node:
        operands = [self.and_expr(primary)]
        while self.token.kind is T.OR:
            self.advance()
            operands.append(self.and_expr(primary))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self, primary: _Primary) -> Node:
        operands = [self.not_expr(primary)]
        while self.token.kind is T.AND:
            self.advance()
            operands.append(self.not_expr(primary))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def not_expr(self, primary: _Primary) -> Node:
        if self.token.kind is T.NOT:
            self.enter(self.advance().position)
            operand = self.not_expr(primary)
            self.depth -= 1
            return Not(operand)
        return primary()

    def primary(self) -> Node:
        token = self.token
        if token.kind is T.LPAREN:
            return self.group(self.primary)
        if self.starts_field():
            field = FieldRef(token.text, token.position)
            self.advance()
            if self.token.kind is T.RANGE:
                return self.range(field)
            self.advance()  # the colon
            return self.field_values(field)
        if token.kind is T.STRING and self.peek().kind is T.COLON:
            raise self.error("field names are written without quotes")
        if token.kind in (T.WORD, T.STRING):
            return self.leaf(Match(None, self.values()))
        raise self.expected("a field, a value or '('")

    def group(self, inner: _Primary) -> Node:
        opening = self.advance()
        self.enter(opening.position)
        if self.token.kind is T.RPAREN:
            raise self.error("empty parentheses")
        node = self.or_expr(inner)
        if self.current_kind() is not T.RPAREN:
            if self.current_kind() is T.EOF:
                raise self.error(f"missing ')' to close the '(' at position {opening.position}")
            raise self.unexpected_after_expression()
        self.advance()
        self.depth -= 1
        return node

    def range(self, field: FieldRef) -> Node:
        operator = self.advance().text
        token = self.token
        if token.kind not in (T.WORD, T.STRING) or token.value is None:
            raise self.expected(f"a value after '{field.name} {operator}'")
        if token.value.has_wildcard:
            raise self.error("a range value cannot contain a wildcard")
        self.advance()
        if self.token.kind is T.WORD and not self.starts_field():
            raise self.error("a range takes one value; quote it if it contains spaces")
        return self.leaf(Range(field, operator, token.value))

    def field_values(self, field: FieldRef) -> Node:
        token = self.token
        if token.kind is T.LPAREN:
            return self.group(lambda: self.value_primary(field))
        if token.kind in (T.WORD, T.STRING) and not self.starts_field():
            return self.leaf(Match(field, self.values()))
        if token.kind is T.NOT:
            raise self.error(f"put 'not' before the field: not {field.name}:...")
        if self.starts_field() and self.peek().kind is T.COLON:
            raise self.error(
                "unexpected ':' in a value; quote the value or escape the colon (\\:)",
                self.peek().position,
            )
        raise self.expected(f"a value after '{field.name}:'")

    def value_primary(self, field: FieldRef) -> Node:
        token = self.token
        if token.kind is T.LPAREN:
            return self.group(lambda: self.value_primary(field))
        if token.kind in (T.WORD, T.STRING) and not self.starts_field():
            return self.leaf(Match(field, self.values()))
        if self.starts_field():
            raise self.error(f"a field inside '{field.name}:( )'; close the parentheses first")
        raise self.expected(f"a value for {field.name}")

    def values(self) -> tuple[Value, ...]:
        """A quoted phrase, or a run of unquoted words (stopping before the next `field:`)."""
        token = self.advance()
        assert token.value is not None
        if token.kind is T.STRING:
            return (token.value,)
        values = [token.value]
        while self.token.kind is T.WORD and not self.starts_field():
            word = self.advance().value
            assert word is not None
            values.append(word)
        return tuple(values)

    def expected(self, what: str) -> KQLError:
        token = self.token
        found = token.kind.value if token.kind is not T.WORD else repr(token.text)
        if token.kind in (T.AND, T.OR):
            return self.error(f"{token.kind.value} needs an expression on each side")
        return self.error(f"expected {what}, found {found}")
