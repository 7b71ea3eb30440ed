"""Custom node pack loading: real pack folders and files written under tmp_path."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowscope.nodes.loader import (
    PackLoadResult,
    PrestartupResult,
    format_import_times,
    format_prestartup_times,
    load_custom_node_packs,
    run_prestartup_scripts,
    sys_modules_key,
)
from flowscope.nodes.registry import NodeRegistry


def node_class(name: str, result: int = 1) -> str:
    return f"""
class {name}:
    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{}}}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self):
        return ({result},)
"""


def simple_pack(*class_types: str, result: int = 1) -> str:
    classes = "".join(node_class(name, result) for name in class_types)
    mappings = ", ".join(f'"{name}": {name}' for name in class_types)
    return classes + f"\nNODE_CLASS_MAPPINGS = {{{mappings}}}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def forget_pack_modules(tmp_path: Path) -> Iterator[None]:
    """Packs are keyed in sys.modules by their (per-test) path; drop those this test added."""
    before = set(sys.modules)
    yield
    prefix = os.path.abspath(tmp_path).replace(".", "_x_")
    for key in set(sys.modules) - before:
        if key.startswith(prefix):
            del sys.modules[key]


@pytest.fixture
def custom_nodes(tmp_path: Path) -> Path:
    folder = tmp_path / "custom_nodes"
    folder.mkdir()
    return folder


@pytest.fixture
def registry() -> NodeRegistry:
    return NodeRegistry()


def node_info(registry: NodeRegistry, class_type: str) -> dict[str, Any]:
    info = registry.node_info(class_type)
    assert info is not None, f"{class_type} is not registered"
    return info


def by_name(results: list[PackLoadResult]) -> dict[str, PackLoadResult]:
    return {result.path.name: result for result in results}


def test_package_with_relative_import_of_a_sibling_module(
    custom_nodes: Path, registry: NodeRegistry
) -> None:
    write(custom_nodes / "my_pack" / "nodes.py", node_class("Hello", result=7))
    write(
        custom_nodes / "my_pack" / "__init__.py",
        """
        from .nodes import Hello

        NODE_CLASS_MAPPINGS = {"Hello": Hello}
        NODE_DISPLAY_NAME_MAPPINGS = {"Hello": "Hello there"}
        """,
    )

    [result] = load_custom_node_packs(registry, [custom_nodes])

    assert result.error is None and result.skipped_reason is None
    assert result.path == custom_nodes / "my_pack"
    assert result.nodes == ["Hello"]
    cls = registry.get("Hello")
    assert cls is not None and cls().run() == (7,)
    assert node_info(registry, "Hello")["display_name"] == "Hello there"
    package = sys.modules[sys_modules_key(custom_nodes / "my_pack")]
    assert sys.modules[f"{package.__name__}.nodes"].Hello is cls


def test_python_module_is_custom_nodes_dot_pack_name(
    custom_nodes: Path, registry: NodeRegistry
) -> None:
    write(custom_nodes / "ComfyUI-Fancy" / "__init__.py", simple_pack("FancyNode"))
    write(custom_nodes / "single_file.py", simple_pack("SingleNode"))

    results = load_custom_node_packs(registry, [custom_nodes])

    assert [r.module_name for r in results] == [
        "custom_nodes.ComfyUI-Fancy",
        "custom_nodes.single_file",
    ]
    assert node_info(registry, "FancyNode")["python_module"] == "custom_nodes.ComfyUI-Fancy"
    assert node_info(registry, "SingleNode")["python_module"] == "custom_nodes.single_file"
    assert all(not entry.builtin for entry in registry)


def test_single_py_file_is_imported_as_a_module(custom_nodes: Path, registry: NodeRegistry) -> None:
    write(custom_nodes / "one_file.py", simple_pack("OneFileNode"))

    [result] = load_custom_node_packs(registry, [custom_nodes])

    assert result.path == custom_nodes / "one_file.py"
    assert result.nodes == ["OneFileNode"]
    assert sys_modules_key(custom_nodes / "one_file.py") in sys.modules


def test_sys_modules_key_is_the_path_with_dots_replaced(tmp_path: Path) -> None:
    pack = tmp_path / "v1.2" / "my.pack"
    pack.mkdir(parents=True)
    assert sys_modules_key(pack) == os.path.abspath(pack).replace(".", "_x_")
    assert "." not in sys_modules_key(pack)


def test_disabled_pycache_and_non_python_entries_are_skipped(
    custom_nodes: Path, registry: NodeRegistry
) -> None:
    write(custom_nodes / "old_pack.disabled" / "__init__.py", simple_pack("DisabledDir"))
    write(custom_nodes / "old_file.py.disabled", simple_pack("DisabledFile"))
    write(custom_nodes / "__pycache__" / "__init__.py", simple_pack("CacheNode"))
    write(custom_nodes / "README.md", "not a pack")
    write(custom_nodes / "requirements.txt", "torch")
    write(custom_nodes / "kept.py", simple_pack("KeptNode"))

    results = load_custom_node_packs(registry, [custom_nodes])

    assert [r.path.name for r in results] == ["kept.py"]
    assert [entry.class_type for entry in registry] == ["KeptNode"]


def test_directory_without_init_is_skipped_with_a_reason(
    custom_nodes: Path, registry: NodeRegistry
) -> None:
    write(custom_nodes / "just_data" / "notes.py", simple_pack("NotAPack"))

    [result] = load_custom_node_packs(registry, [custom_nodes])

    assert result.skipped_reason == "no __init__.py"
    assert not result.failed and not result.loaded
    assert len(registry) == 0


def test_packs_load_in_sorted_order_across_folders_in_order(
    tmp_path: Path, registry: NodeRegistry
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for name in ("c_pack", "a_pack", "b_pack"):
        write(first / name / "__init__.py", simple_pack(f"{name}_node"))
    write(second / "0_pack.py", simple_pack("zero_node"))

    results = load_custom_node_packs(registry, [first, second])

    assert [r.path.name for r in results] == ["a_pack", "b_pack", "c_pack", "0_pack.py"]


def test_missing_folder_has_no_packs(tmp_path: Path, registry: NodeRegistry) -> None:
    assert load_custom_node_packs(registry, [tmp_path / "nowhere"]) == []
    assert run_prestartup_scripts([tmp_path / "nowhere"]) == []


def test_import_error_keeps_the_traceback_and_other_packs_still_load(
    custom_nodes: Path, registry: NodeRegistry
) -> None:
    broken = write(
        custom_nodes / "a_broken" / "__init__.py",
        simple_pack("HalfRegistered") + "\nraise RuntimeError('boom from the pack')\n",
    )
    write(custom_nodes / "b_good" / "__init__.py", simple_pack("GoodNode"))

    results = by_name(load_custom_node_packs(registry, [custom_nodes]))

    failed = results["a_broken"]
    assert failed.failed and not failed.loaded
    assert failed.error is not None
    assert failed.error.startswith("Traceback (most recent call last):")
    assert str(broken) in failed.error
    assert failed.error.rstrip().endswith("RuntimeError: boom from the pack")
    # The traceback starts at the pack's code, not at the loader or importlib.
    assert "loader.py" not in failed.error and "<frozen" not in failed.error
    assert failed.nodes == []
    # Nothing of the failed pack stays behind: no nodes, no half-initialised module.
    assert "HalfRegistered" not in registry
    assert sys_modules_key(custom_nodes / "a_broken") not in sys.modules
    assert results["b_good"].nodes == ["GoodNode"] and "GoodNode" in registry


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def broken(:\n", "SyntaxError"),
        ("import flowscope_no_such_module_xyz\n", "ModuleNotFoundError"),
        ("from . import missing_sibling\n", "ImportError"),
        ("raise SystemExit(3)\n", "SystemExit: 3"),
    ],
)
def test_any_import_failure_is_caught(
    custom_nodes: Path, registry: NodeRegistry, source: str, expected: str
) -> None:
    write(custom_nodes / "bad_pack" / "__init__.py", source)
    write(custom_nodes / "good_pack.py", simple_pack("StillLoads"))

    results = by_name(load_custom_node_packs(registry, [custom_nodes]))

    assert results["bad_pack"].error is not None and expected in results["bad_pack"].error
    assert "StillLoads" in registry


def test_syntax_error_names_the_file_and_line(custom_nodes: Path, registry: NodeRegistry) -> None:
    bad = write(custom_nodes / "bad_syntax.py", "x = 1\ndef broken(:\n")

    [result] = load_custom_node_packs(registry, [custom_nodes])

    assert result.error is not None
    assert f'File "{bad}", line 2' in result.error


def test_input_types_is_not_called_at_import(custom_nodes: Path, registry: NodeRegistry) -> None:
    write(
        custom_nodes / "lazy_error.py",
        """
        class RaisesLater:
            @classmethod
            def INPUT_TYPES(cls):
                raise RuntimeError("only when asked")

            RETURN_TYPES = ()
            FUNCTION = "run"

        NODE_CLASS_MAPPINGS = {"RaisesLater": RaisesLater}
        """,
    )

    [result] = load_custom_node_packs(registry, [custom_nodes])

    assert result.loaded and result.nodes == ["RaisesLater"]


def test_pack_cannot_override_a_builtin(custom_nodes: Path, registry: NodeRegistry) -> None:
    class CoreNode:
        pass

    registry.register_mappings({"CoreNode": CoreNode}, python_module="nodes", builtin=True)
    write(custom_nodes / "hijack.py", simple_pack("CoreNode", "OwnNode"))

    [result] = load_custom_node_packs(registry, [custom_nodes])

    assert result.ignored_builtins == ["CoreNode"]
    assert result.nodes == ["OwnNode"]
    assert registry.get("CoreNode") is CoreNode
    entry = registry.entry("CoreNode")
    assert entry is not None and entry.builtin and entry.python_module == "nodes"


def test_later_pack_wins_between_packs(tmp_path: Path, registry: NodeRegistry) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write(first / "a_pack" / "__init__.py", simple_pack("Shared", result=1))
    write(first / "b_pack" / "__init__.py", simple_pack("Shared", result=2))
    write(second / "c_pack.py", simple_pack("Shared", result=3))

    a, b, c = load_custom_node_packs(registry, [first, second])

    assert a.replaced == [] and b.replaced == ["Shared"] and c.replaced == ["Shared"]
    cls = registry.get("Shared")
    assert cls is not None and cls().run() == (3,)
    assert node_info(registry, "Shared")["python_module"] == "custom_nodes.c_pack"


def test_web_directory_is_recorded_relative_to_the_pack(
    custom_nodes: Path, registry: NodeRegistry
) -> None:
    (custom_nodes / "with_js" / "js").mkdir(parents=True)
    write(
        custom_nodes / "with_js" / "__init__.py",
        simple_pack("JsNode") + '\nWEB_DIRECTORY = "./js"\n',
    )
    write(
        custom_nodes / "missing_js" / "__init__.py",
        simple_pack("NoJsNode") + '\nWEB_DIRECTORY = "./nope"\n',
    )

    results = by_name(load_custom_node_packs(registry, [custom_nodes]))

    assert registry.web_directories == {"with_js": custom_nodes / "with_js" / "js"}
    assert results["with_js"].web_directory == custom_nodes / "with_js" / "js"
    assert results["missing_js"].web_directory is None and results["missing_js"].loaded


def test_pyproject_tool_comfy_web_is_recorded_under_the_project_name(
    custom_nodes: Path, registry: NodeRegistry
) -> None:
    pack = custom_nodes / "ComfyUI-Widgets"
    (pack / "web").mkdir(parents=True)
    write(pack / "__init__.py", simple_pack("WidgetNode"))
    write(
        pack / "pyproject.toml",
        """
        [project]
        name = "comfyui-widgets"

        [tool.comfy]
        web = "web"
        """,
    )
    write(custom_nodes / "bad_toml" / "__init__.py", simple_pack("BadTomlNode"))
    write(custom_nodes / "bad_toml" / "pyproject.toml", "[tool.comfy\n")

    results = by_name(load_custom_node_packs(registry, [custom_nodes]))

    assert registry.web_directories == {"comfyui-widgets": pack / "web"}
    assert results["ComfyUI-Widgets"].web_directory == pack / "web"
    # A broken pyproject.toml is packaging metadata: the pack still loads.
    assert results["bad_toml"].loaded


def test_module_without_node_class_mappings_is_skipped(
    custom_nodes: Path, registry: NodeRegistry
) -> None:
    (custom_nodes / "js_only" / "web").mkdir(parents=True)
    write(custom_nodes / "js_only" / "__init__.py", 'WEB_DIRECTORY = "web"\n')
    write(custom_nodes / "helpers.py", "def helper():\n    return 1\n")

    results = by_name(load_custom_node_packs(registry, [custom_nodes]))

    assert results["helpers.py"].skipped_reason == "no NODE_CLASS_MAPPINGS"
    assert not results["helpers.py"].failed and not results["helpers.py"].loaded
    # A frontend-only pack still gets its web directory served, as in ComfyUI.
    assert results["js_only"].skipped_reason == "no NODE_CLASS_MAPPINGS"
    assert registry.web_directories == {"js_only": custom_nodes / "js_only" / "web"}
    assert len(registry) == 0


def test_unusable_node_class_mappings_fail_the_pack_with_a_message(
    custom_nodes: Path, registry: NodeRegistry
) -> None:
    write(custom_nodes / "as_list.py", "NODE_CLASS_MAPPINGS = ['Node']\n")
    write(
        custom_nodes / "not_a_class.py",
        simple_pack("RealNode") + "\nNODE_CLASS_MAPPINGS['Fake'] = lambda: None\n",
    )

    results = by_name(load_custom_node_packs(registry, [custom_nodes]))

    assert results["as_list.py"].error == (
        f"{custom_nodes / 'as_list.py'}: NODE_CLASS_MAPPINGS is a list, not a dict"
    )
    error = results["not_a_class.py"].error
    assert error is not None and error.endswith("not a class: Fake")
    assert "RealNode" not in registry


def test_import_times_table_format() -> None:
    results = [
        PackLoadResult(Path("/cn/slow"), "custom_nodes.slow", 12.34, nodes=["A"]),
        PackLoadResult(Path("/cn/broken"), "custom_nodes.broken", 0.26, error="Traceback ..."),
        PackLoadResult(Path("/cn/fast.py"), "custom_nodes.fast", 0.01, nodes=["B"]),
        PackLoadResult(
            Path("/cn/empty"), "custom_nodes.empty", 0.0, skipped_reason="no NODE_CLASS_MAPPINGS"
        ),
    ]

    assert format_import_times(results) == (
        "Import times for custom nodes:\n"
        "   0.0 seconds (IMPORT FAILED): /cn/empty\n"
        "   0.0 seconds: /cn/fast.py\n"
        "   0.3 seconds (IMPORT FAILED): /cn/broken\n"
        "  12.3 seconds: /cn/slow"
    )
    assert format_import_times([]) == ""


def test_import_times_come_from_real_loads(custom_nodes: Path, registry: NodeRegistry) -> None:
    write(custom_nodes / "timed.py", simple_pack("TimedNode"))

    results = load_custom_node_packs(registry, [custom_nodes])

    assert 0.0 < results[0].seconds < 5.0
    assert format_import_times(results).splitlines()[1] == (
        f"   0.0 seconds: {custom_nodes / 'timed.py'}"
    )


def test_prestartup_scripts_run_and_failures_are_reported(custom_nodes: Path) -> None:
    write(
        custom_nodes / "a_ok" / "prestartup_script.py",
        """
        from pathlib import Path

        (Path(__file__).parent / "ran.txt").write_text("yes")
        """,
    )
    write(custom_nodes / "b_fails" / "prestartup_script.py", "raise ValueError('no GPU here')\n")
    write(custom_nodes / "c_without_script" / "__init__.py", simple_pack("Unused"))
    write(custom_nodes / "d_off.disabled" / "prestartup_script.py", "raise SystemExit(1)\n")
    write(custom_nodes / "prestartup_script.py", "raise SystemExit(1)\n")

    results = run_prestartup_scripts([custom_nodes])

    assert [r.path for r in results] == [custom_nodes / "a_ok", custom_nodes / "b_fails"]
    ok, failed = results
    assert (custom_nodes / "a_ok" / "ran.txt").read_text() == "yes"
    assert not ok.failed and ok.script == custom_nodes / "a_ok" / "prestartup_script.py"
    assert failed.failed and failed.error is not None
    assert "ValueError: no GPU here" in failed.error and "Traceback" in failed.error


def test_prestartup_times_table_format() -> None:
    results = [
        PrestartupResult(Path("/cn/b"), Path("/cn/b/prestartup_script.py"), 1.06, "Traceback"),
        PrestartupResult(Path("/cn/a"), Path("/cn/a/prestartup_script.py"), 0.04),
    ]

    assert format_prestartup_times(results) == (
        "Prestartup times for custom nodes:\n"
        "   0.0 seconds: /cn/a\n"
        "   1.1 seconds (PRESTARTUP FAILED): /cn/b"
    )
    assert format_prestartup_times([]) == ""
