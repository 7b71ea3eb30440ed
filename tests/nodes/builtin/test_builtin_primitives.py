import sys

import pytest


@pytest.mark.parametrize(
    ("class_type", "declaration", "value"),
    [
        ("PrimitiveString", ("STRING", {"multiline": False}), "hello"),
        ("PrimitiveStringMultiline", ("STRING", {"multiline": True}), "a\nb"),
        (
            "PrimitiveInt",
            ("INT", {"min": -sys.maxsize, "max": sys.maxsize, "control_after_generate": True}),
            -42,
        ),
        ("PrimitiveFloat", ("FLOAT", {"min": -sys.maxsize, "max": sys.maxsize}), 2.5),
        ("PrimitiveBoolean", ("BOOLEAN", {}), True),
    ],
)
def test_primitive_passes_its_widget_value_through(nodes, run, class_type, declaration, value):
    cls = nodes[class_type]
    assert cls.INPUT_TYPES() == {"required": {"value": declaration}}
    assert cls.CATEGORY == "utils/primitive"
    returns = cls.RETURN_TYPES
    assert returns == (declaration[0],)
    assert run(class_type, value=value) == (value,)


def test_int_range_is_the_signed_64_bit_range(nodes):
    options = nodes["PrimitiveInt"].INPUT_TYPES()["required"]["value"][1]
    assert options["max"] == 2**63 - 1
    assert options["min"] == -(2**63 - 1)
