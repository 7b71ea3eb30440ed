from flowscope.nodes import protocol
from flowscope.nodes.builtin import builtin_nodes
from flowscope.nodes.registry import NodeRegistry
from flowscope.storage.directories import Directories

EXPECTED = {
    # utils/primitive
    "PrimitiveString",
    "PrimitiveStringMultiline",
    "PrimitiveInt",
    "PrimitiveFloat",
    "PrimitiveBoolean",
    # utils/math (flowscope's own)
    "IntMath",
    "FloatMath",
    "IntToFloat",
    "FloatToInt",
    # utils/string
    "StringConcatenate",
    "StringSubstring",
    "StringLength",
    "CaseConverter",
    "StringTrim",
    "StringReplace",
    "StringContains",
    "StringCompare",
    "RegexMatch",
    "RegexExtract",
    "RegexReplace",
    # utils
    "PreviewAny",
    # image
    "EmptyImage",
    "ImageScale",
    "ImageScaleBy",
    "ImageInvert",
    "ImageBatch",
    "ImageCrop",
    "RebatchImages",
    "LoadImage",
    "SaveImage",
    "PreviewImage",
    # mask
    "SolidMask",
    "InvertMask",
    "ImageToMask",
    "MaskToImage",
}


def test_pack_contents_and_class_names(directories):
    mappings, display_names = builtin_nodes(directories)
    assert set(mappings) == EXPECTED
    for class_type, cls in mappings.items():
        assert cls.__name__ == class_type
        assert callable(getattr(cls, protocol.function_name(cls)))
    assert set(display_names) <= EXPECTED
    assert display_names["LoadImage"] == "Load Image"
    assert display_names["ImageScale"] == "Upscale Image"
    assert display_names["PreviewAny"] == "Preview Any"
    assert "EmptyImage" not in display_names  # ComfyUI shows it by class name


def test_every_node_has_a_schema_the_graph_layer_reads(directories):
    registry = NodeRegistry()
    registry.register_mappings(*builtin_nodes(directories), python_module="nodes", builtin=True)
    info, errors = registry.object_info()
    assert errors == []
    assert set(info) == EXPECTED
    assert info["SaveImage"]["output_node"] is True
    assert info["RebatchImages"]["output_is_list"] == [True]
    assert registry.schema("CaseConverter").inputs["mode"].choices == (
        "UPPERCASE",
        "lowercase",
        "Capitalize",
        "Title Case",
    )
    assert registry.schema("SaveImage").hidden == {
        "prompt": "PROMPT",
        "extra_pnginfo": "EXTRA_PNGINFO",
    }


def test_each_call_binds_its_own_directories(tmp_path):
    first = builtin_nodes(Directories.under(tmp_path / "one"))[0]
    second = builtin_nodes(Directories.under(tmp_path / "two"), save_metadata=False)[0]
    assert first["SaveImage"] is not second["SaveImage"]
    assert first["SaveImage"].directories.output == tmp_path / "one" / "output"
    assert second["LoadImage"].directories.input == tmp_path / "two" / "input"
    assert first["SaveImage"].save_metadata is True
    assert second["PreviewImage"].save_metadata is False
    # Nodes without files are shared: they hold no per-instance configuration.
    assert first["EmptyImage"] is second["EmptyImage"]
