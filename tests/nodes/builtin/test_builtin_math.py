import math

import pytest

OPERATIONS = ["add", "subtract", "multiply", "divide", "modulo", "power", "min", "max"]


def test_int_math_declares_64_bit_operands_and_the_operation_combo(nodes):
    cls = nodes["IntMath"]
    required = cls.INPUT_TYPES()["required"]
    assert list(required) == ["a", "b", "operation"]
    assert required["a"][0] == "INT"
    assert required["a"][1]["min"] == -(2**63 - 1)
    assert required["a"][1]["max"] == 2**63 - 1
    assert required["operation"][0] == OPERATIONS
    assert cls.CATEGORY == "utils/math"
    assert cls.RETURN_TYPES == ("INT",)


@pytest.mark.parametrize(
    ("a", "b", "operation", "expected"),
    [
        (7, 3, "add", 10),
        (7, 3, "subtract", 4),
        (7, 3, "multiply", 21),
        (7, 2, "divide", 3),
        (-7, 2, "divide", -4),  # floor division
        (-7, 3, "modulo", 2),
        (2, 10, "power", 1024),
        (-2, 3, "power", -8),
        (7, 3, "min", 3),
        (7, 3, "max", 7),
    ],
)
def test_int_math(run, a, b, operation, expected):
    assert run("IntMath", a=a, b=b, operation=operation) == (expected,)


@pytest.mark.parametrize("operation", ["divide", "modulo"])
def test_int_math_by_zero_is_a_clear_error(run, operation):
    with pytest.raises(ValueError, match=rf"IntMath: cannot {operation} 5 by zero.*input 'b'"):
        run("IntMath", a=5, b=0, operation=operation)


def test_int_math_refuses_results_outside_64_bits_without_computing_them(run):
    with pytest.raises(ValueError, match="outside the 64-bit integer range"):
        run("IntMath", a=3, b=2**62, operation="power")
    with pytest.raises(ValueError, match="outside the 64-bit integer range"):
        run("IntMath", a=2**62, b=4, operation="multiply")
    with pytest.raises(ValueError, match="non-negative exponent"):
        run("IntMath", a=2, b=-1, operation="power")


@pytest.mark.parametrize(
    ("a", "b", "operation", "expected"),
    [
        (1.5, 2.25, "add", 3.75),
        (7.0, 2.0, "divide", 3.5),
        (-7.5, 2.0, "modulo", 0.5),
        (2.0, 0.5, "power", math.sqrt(2.0)),
        (1.5, -1.0, "min", -1.0),
    ],
)
def test_float_math(run, a, b, operation, expected):
    (result,) = run("FloatMath", a=a, b=b, operation=operation)
    assert result == pytest.approx(expected)
    assert isinstance(result, float)


def test_float_math_errors_are_clear(run):
    with pytest.raises(ValueError, match=r"FloatMath: cannot divide 1\.0 by zero"):
        run("FloatMath", a=1.0, b=0.0, operation="divide")
    with pytest.raises(ValueError, match="no finite real result"):
        run("FloatMath", a=-8.0, b=1 / 3, operation="power")
    with pytest.raises(ValueError, match="no finite"):
        run("FloatMath", a=10.0, b=1000.0, operation="power")


def test_int_to_float(nodes, run):
    assert nodes["IntToFloat"].RETURN_TYPES == ("FLOAT",)
    assert run("IntToFloat", value=3) == (3.0,)


@pytest.mark.parametrize(
    ("value", "mode", "expected"),
    [
        (2.5, "floor", 2),
        (-2.5, "floor", -3),
        (2.1, "ceil", 3),
        (2.5, "round", 3),
        (-2.5, "round", -3),
        (2.4, "round", 2),
        (-2.7, "truncate", -2),
    ],
)
def test_float_to_int(nodes, run, value, mode, expected):
    assert nodes["FloatToInt"].INPUT_TYPES()["required"]["mode"][0] == [
        "floor",
        "ceil",
        "round",
        "truncate",
    ]
    assert run("FloatToInt", value=value, mode=mode) == (expected,)


def test_float_to_int_refuses_non_finite_values(run):
    with pytest.raises(ValueError, match="cannot convert inf"):
        run("FloatToInt", value=math.inf, mode="floor")
    with pytest.raises(ValueError, match="outside the 64-bit integer range"):
        run("FloatToInt", value=1e30, mode="floor")
