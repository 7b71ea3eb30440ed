"""Number nodes (flowscope's own, `utils/math`): integer and float arithmetic and conversions."""

from __future__ import annotations

import math
from typing import Any

from flowscope.nodes.builtin.primitives import INT64_MAX

CATEGORY = "utils/math"

OPERATIONS = ["add", "subtract", "multiply", "divide", "modulo", "power", "min", "max"]
ROUNDING_MODES = ["floor", "ceil", "round", "truncate"]


def _check_operation(node: str, operation: str) -> None:
    if operation not in OPERATIONS:
        raise ValueError(
            f"{node}: unknown operation {operation!r}; expected one of {', '.join(OPERATIONS)}"
        )


def _check_int_range(node: str, result: int, what: str) -> int:
    if not -INT64_MAX <= result <= INT64_MAX:
        raise ValueError(
            f"{node}: {what} is outside the 64-bit integer range (±{INT64_MAX}); "
            "use smaller inputs or FloatMath"
        )
    return result


def _int_power(a: int, b: int) -> int:
    if b < 0:
        raise ValueError(
            f"IntMath: power needs a non-negative exponent, but input 'b' is {b}; "
            "use FloatMath for fractional results"
        )
    # Refuse before computing: a huge exponent would take minutes and gigabytes.
    if abs(a) > 1 and (abs(a).bit_length() - 1) * b > 63:
        raise ValueError(
            f"IntMath: {a} power {b} is outside the 64-bit integer range (±{INT64_MAX}); "
            "use smaller inputs or FloatMath"
        )
    return int(a**b)


def int_math(a: int, b: int, operation: str) -> int:
    """`a <operation> b` on integers; divide is floor division, modulo takes the sign of b."""
    _check_operation("IntMath", operation)
    if operation in ("divide", "modulo") and b == 0:
        raise ValueError(
            f"IntMath: cannot {operation} {a} by zero; set input 'b' to a non-zero value"
        )
    if operation == "add":
        result = a + b
    elif operation == "subtract":
        result = a - b
    elif operation == "multiply":
        result = a * b
    elif operation == "divide":
        result = a // b
    elif operation == "modulo":
        result = a % b
    elif operation == "power":
        result = _int_power(a, b)
    elif operation == "min":
        result = min(a, b)
    else:
        result = max(a, b)
    return _check_int_range("IntMath", result, f"{a} {operation} {b} = {result}")


def float_math(a: float, b: float, operation: str) -> float:
    """`a <operation> b` on floats; divide is true division."""
    _check_operation("FloatMath", operation)
    if operation in ("divide", "modulo") and b == 0:
        raise ValueError(
            f"FloatMath: cannot {operation} {a} by zero; set input 'b' to a non-zero value"
        )
    try:
        if operation == "add":
            result: Any = a + b
        elif operation == "subtract":
            result = a - b
        elif operation == "multiply":
            result = a * b
        elif operation == "divide":
            result = a / b
        elif operation == "modulo":
            result = a % b
        elif operation == "power":
            result = a**b
        elif operation == "min":
            result = min(a, b)
        else:
            result = max(a, b)
    except (OverflowError, ZeroDivisionError) as exc:
        raise ValueError(f"FloatMath: {a} {operation} {b} has no finite result ({exc})") from exc
    # A negative base with a fractional exponent gives a complex number in Python.
    if not isinstance(result, (int, float)) or not math.isfinite(result):
        raise ValueError(f"FloatMath: {a} {operation} {b} has no finite real result")
    return float(result)


def _round_half_away(value: float) -> int:
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def float_to_int(value: float, mode: str) -> int:
    if not math.isfinite(value):
        raise ValueError(f"FloatToInt: cannot convert {value} to an integer")
    if mode == "floor":
        result = math.floor(value)
    elif mode == "ceil":
        result = math.ceil(value)
    elif mode == "round":
        result = _round_half_away(value)
    elif mode == "truncate":
        result = math.trunc(value)
    else:
        raise ValueError(
            f"FloatToInt: unknown mode {mode!r}; expected one of {', '.join(ROUNDING_MODES)}"
        )
    return _check_int_range("FloatToInt", result, f"{value} rounded ({mode}) = {result}")


def _int_input(tooltip: str) -> tuple[str, dict[str, Any]]:
    return ("INT", {"default": 0, "min": -INT64_MAX, "max": INT64_MAX, "tooltip": tooltip})


def _float_input(tooltip: str) -> tuple[str, dict[str, Any]]:
    return (
        "FLOAT",
        {"default": 0.0, "min": -INT64_MAX, "max": INT64_MAX, "step": 0.01, "tooltip": tooltip},
    )


class IntMath:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "a": _int_input("The left operand."),
                "b": _int_input("The right operand."),
                "operation": (
                    list(OPERATIONS),
                    {
                        "default": "add",
                        "tooltip": "divide rounds down (floor division); modulo takes the sign "
                        "of b; power needs b >= 0.",
                    },
                ),
            }
        }

    RETURN_TYPES = ("INT",)
    FUNCTION = "calculate"
    CATEGORY = CATEGORY
    DESCRIPTION = "Integer arithmetic: a <operation> b."

    def calculate(self, a: int, b: int, operation: str) -> tuple[int]:
        return (int_math(a, b, operation),)


class FloatMath:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "a": _float_input("The left operand."),
                "b": _float_input("The right operand."),
                "operation": (
                    list(OPERATIONS),
                    {"default": "add", "tooltip": "divide is true division."},
                ),
            }
        }

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "calculate"
    CATEGORY = CATEGORY
    DESCRIPTION = "Floating-point arithmetic: a <operation> b."

    def calculate(self, a: float, b: float, operation: str) -> tuple[float]:
        return (float_math(a, b, operation),)


class IntToFloat:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": _int_input("The integer to convert.")}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "convert"
    CATEGORY = CATEGORY
    DESCRIPTION = "Converts an INT to a FLOAT."

    def convert(self, value: int) -> tuple[float]:
        return (float(value),)


class FloatToInt:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": _float_input("The number to convert."),
                "mode": (
                    list(ROUNDING_MODES),
                    {
                        "default": "floor",
                        "tooltip": "floor rounds down, ceil rounds up, round goes to the nearest "
                        "integer (halves away from zero), truncate drops the fraction.",
                    },
                ),
            }
        }

    RETURN_TYPES = ("INT",)
    FUNCTION = "convert"
    CATEGORY = CATEGORY
    DESCRIPTION = "Converts a FLOAT to an INT with the chosen rounding."

    def convert(self, value: float, mode: str) -> tuple[int]:
        return (float_to_int(value, mode),)


NODE_CLASSES: tuple[type, ...] = (IntMath, FloatMath, IntToFloat, FloatToInt)

DISPLAY_NAMES = {
    "IntMath": "Int Math",
    "FloatMath": "Float Math",
    "IntToFloat": "Int to Float",
    "FloatToInt": "Float to Int",
}
