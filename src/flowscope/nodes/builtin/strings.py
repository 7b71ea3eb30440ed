"""String nodes (ComfyUI's `utils/string`): concatenate, slice, measure, search and rewrite text."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

CATEGORY = "utils/string"


def _text(**options: Any) -> tuple[str, dict[str, Any]]:
    """A STRING input declared as ComfyUI's V3 schema presents it (`multiline` always present)."""
    multiline = options.pop("multiline", False)
    return ("STRING", {**options, "multiline": multiline})


def _combo(options: list[str]) -> tuple[str, dict[str, Any]]:
    """A new-style combo input, as ComfyUI's V3 schema presents it."""
    return ("COMBO", {"multiselect": False, "options": options})


def _regex_flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    flags = 0
    if case_insensitive:
        flags |= re.IGNORECASE
    if multiline:
        flags |= re.MULTILINE
    if dotall:
        flags |= re.DOTALL
    return flags


def _compile(node: str, pattern: str, flags: int) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ValueError(
            f"{node}: regex_pattern {pattern!r} is not a valid regular expression: {exc}"
        ) from exc


class StringConcatenate:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "string_a": _text(multiline=True),
                "string_b": _text(multiline=True),
                "delimiter": _text(default=""),
            }
        }

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, string_a: str, string_b: str, delimiter: str) -> tuple[str]:
        return (delimiter.join((string_a, string_b)),)


class StringSubstring:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "string": _text(multiline=True),
                "start": ("INT", {}),
                "end": ("INT", {}),
            }
        }

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, string: str, start: int, end: int) -> tuple[str]:
        # Python slice semantics: negative indexes count from the end.
        return (string[start:end],)


class StringLength:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"string": _text(multiline=True)}}

    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("length",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, string: str) -> tuple[int]:
        return (len(string),)


class CaseConverter:
    MODES: ClassVar[dict[str, Callable[[str], str]]] = {
        "UPPERCASE": str.upper,
        "lowercase": str.lower,
        "Capitalize": str.capitalize,
        "Title Case": str.title,
    }

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"string": _text(multiline=True), "mode": _combo(list(cls.MODES))}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, string: str, mode: str) -> tuple[str]:
        convert = self.MODES.get(mode)
        return (convert(string) if convert is not None else string,)


class StringTrim:
    MODES: ClassVar[dict[str, Callable[[str], str]]] = {
        "Both": str.strip,
        "Left": str.lstrip,
        "Right": str.rstrip,
    }

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"string": _text(multiline=True), "mode": _combo(list(cls.MODES))}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, string: str, mode: str) -> tuple[str]:
        trim = self.MODES.get(mode)
        return (trim(string) if trim is not None else string,)


class StringReplace:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "string": _text(multiline=True),
                "find": _text(multiline=True),
                "replace": _text(multiline=True),
            }
        }

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, string: str, find: str, replace: str) -> tuple[str]:
        return (string.replace(find, replace),)


class StringContains:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "string": _text(multiline=True),
                "substring": _text(multiline=True),
                "case_sensitive": ("BOOLEAN", {"default": True}),
            }
        }

    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("contains",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, string: str, substring: str, case_sensitive: bool) -> tuple[bool]:
        if case_sensitive:
            return (substring in string,)
        return (substring.lower() in string.lower(),)


class StringCompare:
    MODES = ("Starts With", "Ends With", "Equal")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "string_a": _text(multiline=True),
                "string_b": _text(multiline=True),
                "mode": _combo(list(cls.MODES)),
                "case_sensitive": ("BOOLEAN", {"default": True}),
            }
        }

    RETURN_TYPES = ("BOOLEAN",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, string_a: str, string_b: str, mode: str, case_sensitive: bool) -> tuple[bool]:
        a, b = (string_a, string_b) if case_sensitive else (string_a.lower(), string_b.lower())
        if mode == "Equal":
            return (a == b,)
        if mode == "Starts With":
            return (a.startswith(b),)
        if mode == "Ends With":
            return (a.endswith(b),)
        raise ValueError(
            f"StringCompare: unknown mode {mode!r}; expected one of {', '.join(self.MODES)}"
        )


class RegexMatch:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "string": _text(multiline=True),
                "regex_pattern": _text(multiline=True),
                "case_insensitive": ("BOOLEAN", {"default": True}),
                "multiline": ("BOOLEAN", {"default": False}),
                "dotall": ("BOOLEAN", {"default": False}),
            }
        }

    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("matches",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(
        self, string: str, regex_pattern: str, case_insensitive: bool, multiline: bool, dotall: bool
    ) -> tuple[bool]:
        # As in ComfyUI, an invalid pattern simply does not match.
        try:
            found = re.search(
                regex_pattern, string, _regex_flags(case_insensitive, multiline, dotall)
            )
        except re.error:
            return (False,)
        return (found is not None,)


class RegexExtract:
    MODES = ("First Match", "All Matches", "First Group", "All Groups")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "string": _text(multiline=True),
                "regex_pattern": _text(multiline=True),
                "mode": _combo(list(cls.MODES)),
                "case_insensitive": ("BOOLEAN", {"default": True}),
                "multiline": ("BOOLEAN", {"default": False}),
                "dotall": ("BOOLEAN", {"default": False}),
                "group_index": ("INT", {"default": 1, "min": 0, "max": 100}),
            }
        }

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(
        self,
        *,
        string: str,
        regex_pattern: str,
        mode: str,
        case_insensitive: bool,
        multiline: bool,
        dotall: bool,
        group_index: int,
    ) -> tuple[str]:
        # As in ComfyUI, an invalid pattern extracts nothing.
        try:
            pattern = re.compile(regex_pattern, _regex_flags(case_insensitive, multiline, dotall))
        except re.error:
            return ("",)
        return (self._extract(pattern, string, mode, group_index),)

    @staticmethod
    def _extract(pattern: re.Pattern[str], string: str, mode: str, group_index: int) -> str:
        if mode == "First Match":
            match = pattern.search(string)
            return match.group(0) if match else ""
        if mode == "All Matches":
            # ComfyUI joins `re.findall` results: whole matches, or the first group if any.
            return "\n".join(
                match.group(1 if pattern.groups else 0) or "" for match in pattern.finditer(string)
            )
        if mode == "First Group":
            match = pattern.search(string)
            if match and len(match.groups()) >= group_index:
                return match.group(group_index) or ""
            return ""
        if mode == "All Groups":
            return "\n".join(
                match.group(group_index) or ""
                for match in pattern.finditer(string)
                if match.groups() and len(match.groups()) >= group_index
            )
        return ""


class RegexReplace:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "string": _text(multiline=True),
                "regex_pattern": _text(multiline=True),
                "replace": _text(multiline=True),
            },
            "optional": {
                "case_insensitive": ("BOOLEAN", {"default": True}),
                "multiline": ("BOOLEAN", {"default": False}),
                "dotall": (
                    "BOOLEAN",
                    {
                        "tooltip": "When enabled, the dot (.) character will match any character "
                        "including newline characters. When disabled, dots won't match newlines.",
                        "default": False,
                    },
                ),
                "count": (
                    "INT",
                    {
                        "tooltip": "Maximum number of replacements to make. Set to 0 to replace "
                        "all occurrences (default). Set to 1 to replace only the first match, 2 "
                        "for the first two matches, etc.",
                        "default": 0,
                        "min": 0,
                        "max": 100,
                    },
                ),
            },
        }

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY
    DESCRIPTION = "Find and replace text using regex patterns."

    def execute(
        self,
        *,
        string: str,
        regex_pattern: str,
        replace: str,
        case_insensitive: bool = True,
        multiline: bool = False,
        dotall: bool = False,
        count: int = 0,
    ) -> tuple[str]:
        pattern = _compile(
            "RegexReplace", regex_pattern, _regex_flags(case_insensitive, multiline, dotall)
        )
        try:
            return (pattern.sub(replace, string, count=count),)
        except (re.error, IndexError) as exc:
            raise ValueError(f"RegexReplace: replacement {replace!r} is not valid: {exc}") from exc


NODE_CLASSES: tuple[type, ...] = (
    StringConcatenate,
    StringSubstring,
    StringLength,
    CaseConverter,
    StringTrim,
    StringReplace,
    StringContains,
    StringCompare,
    RegexMatch,
    RegexExtract,
    RegexReplace,
)

DISPLAY_NAMES = {
    "StringConcatenate": "Concatenate",
    "StringSubstring": "Substring",
    "StringLength": "Length",
    "CaseConverter": "Case Converter",
    "StringTrim": "Trim",
    "StringReplace": "Replace",
    "StringContains": "Contains",
    "StringCompare": "Compare",
    "RegexMatch": "Regex Match",
    "RegexExtract": "Regex Extract",
    "RegexReplace": "Regex Replace",
}
