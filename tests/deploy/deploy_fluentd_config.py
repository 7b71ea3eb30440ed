"""A reader for Fluentd v1 configuration files, enough to check ours structurally (no Fluentd can
run on the project's machines): `<section arg>` … `</section>` blocks, `key value` parameters,
whole-line `#` comments and `@include`, plus the embedded Ruby our files use in values."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_OPEN = re.compile(r"^<\s*([A-Za-z_][\w]*)(?:\s+([^>]*?))?\s*>$")
_CLOSE = re.compile(r"^</\s*([A-Za-z_][\w]*)\s*>$")
_PARAM = re.compile(r"^(@?[A-Za-z_][\w.]*)(?:\s+(.*))?$")


class FluentdConfigError(ValueError):
    """The file is not Fluentd v1 configuration as this reader understands it."""


@dataclass
class Section:
    """One `<name arg>` block (the root has name "ROOT"); `where` is `file:line`."""

    name: str
    arg: str
    where: str
    params: dict[str, str] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)

    @property
    def type(self) -> str | None:
        return self.params.get("@type")

    def children(self, name: str) -> list[Section]:
        return [section for section in self.sections if section.name == name]

    def child(self, name: str) -> Section:
        (only,) = self.children(name)
        return only

    def walk(self) -> Iterator[tuple[Section, Section | None]]:
        """Every section below this one, with its parent, depth first."""
        stack: list[tuple[Section, Section | None]] = [(s, self) for s in reversed(self.sections)]
        while stack:
            section, parent = stack.pop()
            yield section, parent
            stack.extend((child, section) for child in reversed(section.sections))


def read_config(path: Path) -> Section:
    """The configuration at `path`, with `@include`s read in place (relative to the including
    file, as Fluentd resolves them)."""
    root = Section("ROOT", "", f"{path.name}:0")
    _read_into(root, path, seen=set())
    return root


def _read_into(root: Section, path: Path, seen: set[Path]) -> None:
    resolved = path.resolve()
    if resolved in seen:
        raise FluentdConfigError(f"{path}: @include cycle")
    seen.add(resolved)
    stack = [root]
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{path.name}:{number}"
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@include"):
            target = line.split(None, 1)[1].strip()
            if len(stack) != 1:
                raise FluentdConfigError(f"{where}: @include inside a section is not used here")
            _read_into(root, path.parent / _unquote(target), seen)
            continue
        if closing := _CLOSE.match(line):
            if len(stack) == 1 or stack[-1].name != closing.group(1):
                raise FluentdConfigError(f"{where}: </{closing.group(1)}> closes nothing open")
            stack.pop()
            continue
        if opening := _OPEN.match(line):
            section = Section(opening.group(1), (opening.group(2) or "").strip(), where)
            stack[-1].sections.append(section)
            stack.append(section)
            continue
        param = _PARAM.match(line)
        if param is None:
            raise FluentdConfigError(f"{where}: cannot read {raw!r}")
        key, value = param.group(1), _unquote((param.group(2) or "").strip())
        if key in stack[-1].params:
            raise FluentdConfigError(f"{where}: {key} is set twice in <{stack[-1].name}>")
        stack[-1].params[key] = value
    if len(stack) != 1:
        raise FluentdConfigError(f"{path.name}: <{stack[-1].name}> ({stack[-1].where}) not closed")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


_RUBY = re.compile(r"#\{([^}]*)\}")
_ENV_INDEX = re.compile(r"""^ENV\[['"](\w+)['"]\]$""")
_ENV_FETCH = re.compile(r"""^ENV\.fetch\(['"](\w+)['"],\s*['"]([^'"]*)['"]\)$""")


def expand_ruby(value: str, env: Mapping[str, str], hostname: str = "collector-1") -> str:
    """Evaluate the embedded Ruby our files use in double-quoted values: `ENV['X']`,
    `ENV.fetch('X', 'default')` and `Socket.gethostname`; anything else is an error, so a new
    construct gets a deliberate look."""

    def evaluate(match: re.Match[str]) -> str:
        code = match.group(1).strip()
        if code == "Socket.gethostname":
            return hostname
        if indexed := _ENV_INDEX.match(code):
            return env[indexed.group(1)]
        if fetched := _ENV_FETCH.match(code):
            return env.get(fetched.group(1), fetched.group(2))
        raise FluentdConfigError(f"embedded Ruby this reader does not evaluate: #{{{code}}}")

    return _RUBY.sub(evaluate, value)
