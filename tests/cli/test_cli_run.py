from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from flowscope.cli import main

DEMO = Path(__file__).parents[2] / "examples" / "demo.json"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(tmp_path: Path, document: Any) -> str:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(document))
    return str(path)


def test_demo_runs_and_reports_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "run", str(DEMO), "--base-directory", str(tmp_path))
    assert code == 0, err
    assert "#7 text: 42" in out
    saved = tmp_path / "output" / "demo" / "flowscope_00001_.png"
    assert f"#4 output: {saved}" in out
    with Image.open(saved) as image:
        assert image.size == (512, 384)
        assert json.loads(image.text["prompt"])["4"]["class_type"] == "SaveImage"
    # The timing table names every node and its status.
    for node_type in ("EmptyImage", "ImageInvert", "ImageScaleBy", "SaveImage", "PreviewAny"):
        assert node_type in err
    assert "succeeded" in err


def test_repeat_shows_cached_nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "run", str(DEMO), "--base-directory", str(tmp_path), "--repeat", "2", "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert {n["status"] for n in result["nodes"]} == {"cached"}
    assert result["outputs"]["7"] == {"text": ["42"]}


def test_set_overrides_by_id_and_title(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys,
        "run",
        str(DEMO),
        "--base-directory",
        str(tmp_path),
        "--set",
        "6.b=10",
        "--set",
        "Save Image.filename_prefix=runs/%width%x%height%",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["outputs"]["7"] == {"text": ["50"]}
    assert result["outputs"]["4"]["images"][0] == {
        "filename": "512x384_00001_.png",
        "subfolder": "runs",
        "type": "output",
    }


def test_unknown_override_node_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys, "run", str(DEMO), "--base-directory", str(tmp_path), "--set", "99.value=1"
    )
    assert code == 2
    assert "no node with id or title '99'" in err


def test_invalid_workflow_exits_2_naming_node_and_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 99999, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    code, _, err = run_cli(
        capsys, "run", write(tmp_path, prompt), "--base-directory", str(tmp_path)
    )
    assert code == 2
    assert "#1" in err and "EmptyImage" in err
    assert "bigger than max" in err and "width" in err


def test_failing_node_exits_1_naming_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}},
        "2": {"class_type": "IntMath", "inputs": {"a": ["1", 0], "b": 0, "operation": "divide"}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    code, _, err = run_cli(
        capsys, "run", write(tmp_path, prompt), "--base-directory", str(tmp_path)
    )
    assert code == 1
    assert "Node #2 (IntMath) failed" in err


def test_malformed_json_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"1": {"class_type": ')
    code, _, err = run_cli(capsys, "run", str(path), "--base-directory", str(tmp_path))
    assert code == 2
    assert "not valid JSON" in err


def test_custom_node_pack_is_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = tmp_path / "custom_nodes" / "cli_shout_pack"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(
        "class Shout:\n"
        "    @classmethod\n"
        "    def INPUT_TYPES(cls):\n"
        "        return {'required': {'text': ('STRING', {'default': 'hi'})}}\n"
        "    RETURN_TYPES = ('STRING',)\n"
        "    FUNCTION = 'run'\n"
        "    def run(self, text):\n"
        "        return (text.upper() + '!',)\n"
        "NODE_CLASS_MAPPINGS = {'Shout': Shout}\n"
    )
    prompt = {
        "1": {"class_type": "Shout", "inputs": {"text": "hello"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    code, out, err = run_cli(
        capsys, "run", write(tmp_path, prompt), "--base-directory", str(tmp_path)
    )
    assert code == 0, err
    assert "#2 text: HELLO!" in out
    assert "Import times for custom nodes:" in err

    code, out, _ = run_cli(capsys, "nodes", "--json", "--base-directory", str(tmp_path))
    info = json.loads(out)
    assert info["Shout"]["python_module"] == "custom_nodes.cli_shout_pack"
    assert info["SaveImage"]["output_node"] is True


def test_nodes_table_lists_builtins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "nodes", "--base-directory", str(tmp_path))
    assert code == 0
    for node_type in ("EmptyImage", "LoadImage", "PreviewAny", "PrimitiveInt", "IntMath"):
        assert node_type in out


def test_ui_workflow_runs_without_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow_file = DEMO.with_name("demo-ui.json")
    code, out, err = run_cli(
        capsys, "run", str(workflow_file), "--base-directory", str(tmp_path), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["outputs"]["8"] == {"text": ["42"]}
    saved = tmp_path / "output" / "ui-demo" / "flowscope_00001_.png"
    with Image.open(saved) as image:
        assert image.size == (256, 192)  # the ImageScaleBy node is bypassed in the workflow
        embedded = json.loads(image.text["workflow"])
    assert embedded["id"] == json.loads(workflow_file.read_text())["id"]


def test_large_jobs_show_the_slowest_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt: dict[str, Any] = {"0": {"class_type": "PrimitiveInt", "inputs": {"value": 0}}}
    for i in range(1, 40):
        prompt[str(i)] = {
            "class_type": "IntMath",
            "inputs": {"a": [str(i - 1), 0], "b": 1, "operation": "add"},
        }
    prompt["out"] = {"class_type": "PreviewAny", "inputs": {"source": ["39", 0]}}
    path = write(tmp_path, prompt)
    code, out, err = run_cli(capsys, "run", path, "--base-directory", str(tmp_path))
    assert code == 0
    assert "#out text: 39" in out
    assert "11 faster nodes not shown" in err
    code, _, err = run_cli(capsys, "run", path, "--base-directory", str(tmp_path), "--all-nodes")
    assert code == 0
    assert "not shown" not in err
    assert all(f"│ {i:>4} │" in err for i in (1, 20, 39))


def test_broken_pack_is_reported_and_others_still_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packs = tmp_path / "custom_nodes"
    (packs / "cli_broken_pack").mkdir(parents=True)
    (packs / "cli_broken_pack" / "__init__.py").write_text("import not_a_real_module_xyz\n")
    (packs / "cli_ok_pack").mkdir()
    (packs / "cli_ok_pack" / "prestartup_script.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('ran').write_text('yes')\n"
    )
    (packs / "cli_ok_pack" / "__init__.py").write_text(
        "class Seven:\n"
        "    @classmethod\n"
        "    def INPUT_TYPES(cls):\n"
        "        return {'required': {}}\n"
        "    RETURN_TYPES = ('INT',)\n"
        "    FUNCTION = 'run'\n"
        "    def run(self):\n"
        "        return (7,)\n"
        "NODE_CLASS_MAPPINGS = {'Seven': Seven}\n"
    )
    prompt = {
        "1": {"class_type": "Seven", "inputs": {}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    code, out, err = run_cli(
        capsys, "run", write(tmp_path, prompt), "--base-directory", str(tmp_path)
    )
    assert code == 0, err
    assert "#2 text: 7" in out
    assert (packs / "cli_ok_pack" / "ran").read_text() == "yes"
    assert "Prestartup times for custom nodes:" in err
    assert "(IMPORT FAILED)" in err
    assert "Cannot import" in err and "not_a_real_module_xyz" in err


def test_run_writes_the_event_log_and_the_log_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "run", str(DEMO), "--base-directory", str(tmp_path), "--json")
    assert code == 0, err
    job_id = json.loads(out)["job_id"]
    lines = (tmp_path / "logs" / "events.jsonl").read_text().splitlines()
    documents = [json.loads(line) for line in lines]
    assert {d["job.id"] for d in documents} == {job_id}
    assert documents[0]["event.action"] == "job.started"
    assert documents[-1]["event.action"] == "job.succeeded"
    assert len({d["event.id"] for d in documents}) == len(documents)
    assert all(d["service.name"] == "flowscope" for d in documents)

    code, out, _ = run_cli(
        capsys, "logs", f"job.id:{job_id} and event.action:node.succeeded", "--json",
        "--base-directory", str(tmp_path),
    )  # fmt: skip
    assert code == 0
    found = [json.loads(line) for line in out.splitlines()]  # JSON lines, newest first
    assert {row["node.type"] for row in found} >= {"EmptyImage", "SaveImage", "PreviewAny"}


def test_telemetry_outputs_can_be_switched_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys, "run", str(DEMO), "--base-directory", str(tmp_path), "--quiet",
        "--no-log-file", "--no-logstore",
    )  # fmt: skip
    assert code == 0, err
    assert not (tmp_path / "logs").exists()
    assert not (tmp_path / "logstore.db").exists()


def test_bad_forward_address_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys, "run", str(DEMO), "--base-directory", str(tmp_path), "--forward", "nohost"
    )
    assert code == 2
    assert "expected HOST:PORT" in err
