import pytest

from flowscope.nodes.builtin.strings import DISPLAY_NAMES


def test_string_nodes_use_comfyui_names_and_category(nodes):
    assert DISPLAY_NAMES["StringConcatenate"] == "Concatenate"
    assert DISPLAY_NAMES["StringLength"] == "Length"
    for class_type in DISPLAY_NAMES:
        assert nodes[class_type].CATEGORY == "utils/string"


def test_concatenate_inputs_as_comfyui_presents_them(nodes, run):
    assert nodes["StringConcatenate"].INPUT_TYPES() == {
        "required": {
            "string_a": ("STRING", {"multiline": True}),
            "string_b": ("STRING", {"multiline": True}),
            "delimiter": ("STRING", {"default": "", "multiline": False}),
        }
    }
    assert run("StringConcatenate", string_a="a", string_b="b", delimiter=", ") == ("a, b",)


def test_substring_uses_python_slices(run):
    assert run("StringSubstring", string="flowscope", start=4, end=9) == ("scope",)
    assert run("StringSubstring", string="flowscope", start=-5, end=-1) == ("scop",)


def test_length_names_its_output(nodes, run):
    assert nodes["StringLength"].RETURN_NAMES == ("length",)
    assert run("StringLength", string="héllo") == (5,)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("UPPERCASE", "HELLO WORLD"),
        ("lowercase", "hello world"),
        ("Capitalize", "Hello world"),
        ("Title Case", "Hello World"),
    ],
)
def test_case_converter(nodes, run, mode, expected):
    assert nodes["CaseConverter"].INPUT_TYPES()["required"]["mode"] == (
        "COMBO",
        {"multiselect": False, "options": ["UPPERCASE", "lowercase", "Capitalize", "Title Case"]},
    )
    assert run("CaseConverter", string="hELLO world", mode=mode) == (expected,)


@pytest.mark.parametrize(("mode", "expected"), [("Both", "x"), ("Left", "x  "), ("Right", "  x")])
def test_trim(run, mode, expected):
    assert run("StringTrim", string="  x  ", mode=mode) == (expected,)


def test_replace(run):
    assert run("StringReplace", string="a-b-c", find="-", replace="+") == ("a+b+c",)


def test_contains(nodes, run):
    assert nodes["StringContains"].RETURN_NAMES == ("contains",)
    assert run("StringContains", string="Flow", substring="flo", case_sensitive=True) == (False,)
    assert run("StringContains", string="Flow", substring="flo", case_sensitive=False) == (True,)


@pytest.mark.parametrize(
    ("mode", "expected"), [("Starts With", True), ("Ends With", False), ("Equal", False)]
)
def test_compare(run, mode, expected):
    result = run(
        "StringCompare", string_a="Flowscope", string_b="flow", mode=mode, case_sensitive=False
    )
    assert result == (expected,)


def test_regex_match_treats_a_bad_pattern_as_no_match(nodes, run):
    assert nodes["RegexMatch"].RETURN_NAMES == ("matches",)
    flags = {"case_insensitive": True, "multiline": False, "dotall": False}
    assert run("RegexMatch", string="Seed 42", regex_pattern=r"seed \d+", **flags) == (True,)
    assert run("RegexMatch", string="Seed 42", regex_pattern="(", **flags) == (False,)


@pytest.mark.parametrize(
    ("pattern", "mode", "expected"),
    [
        (r"\d+", "First Match", "1"),
        (r"\d+", "All Matches", "1\n22"),
        (r"(\w)=(\d+)", "All Matches", "a\nb"),  # like re.findall: the first group
        (r"(\w)=(\d+)", "First Group", "a"),
        (r"(\w)=(\d+)", "All Groups", "a\nb"),
        (r"x", "First Match", ""),
    ],
)
def test_regex_extract(run, pattern, mode, expected):
    result = run(
        "RegexExtract",
        string="a=1, b=22",
        regex_pattern=pattern,
        mode=mode,
        case_insensitive=False,
        multiline=False,
        dotall=False,
        group_index=1,
    )
    assert result == (expected,)


def test_regex_replace_has_optional_flags(nodes, run):
    declared = nodes["RegexReplace"].INPUT_TYPES()
    assert list(declared["optional"]) == ["case_insensitive", "multiline", "dotall", "count"]
    assert declared["optional"]["count"][1]["max"] == 100
    assert run("RegexReplace", string="a1b22", regex_pattern=r"\d+", replace="#") == ("a#b#",)
    assert run("RegexReplace", string="a1b22", regex_pattern=r"\d", replace="#", count=2) == (
        "a#b#2",
    )


def test_regex_replace_invalid_pattern_is_a_clear_error(run):
    with pytest.raises(ValueError, match="RegexReplace: regex_pattern '\\(' is not a valid"):
        run("RegexReplace", string="x", regex_pattern="(", replace="")
