"""`flowscope models create-tiny` and `flowscope models detect` through the real command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from flowscope.cli import main

os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(1)


def test_create_tiny_writes_the_models_and_detect_recognises_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "create-tiny", str(tmp_path), "--family", "sdxl"]) == 0
    out = capsys.readouterr().out
    checkpoint = tmp_path / "checkpoints" / "tiny-sdxl.safetensors"
    for path in (
        checkpoint,
        tmp_path / "loras" / "tiny-sdxl-lora-kohya.safetensors",
        tmp_path / "loras" / "tiny-sdxl-lora-kohya-ldm.safetensors",
        tmp_path / "loras" / "tiny-sdxl-lora-peft.safetensors",
        tmp_path / "controlnet" / "tiny-sdxl-controlnet.safetensors",
    ):
        assert path.is_file() and str(path) in out
    assert "tiny sdxl models written in" in out

    assert main(["models", "detect", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "checkpoint" in out and "sdxl" in out and "clip_l, clip_g" in out
    controlnet = tmp_path / "controlnet" / "tiny-sdxl-controlnet.safetensors"
    assert main(["models", "detect", str(controlnet), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "controlnet" and report["family"] == "sdxl"


def test_create_tiny_defaults_to_the_base_directorys_models_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "create-tiny", "--base-directory", str(tmp_path)]) == 0
    capsys.readouterr()
    checkpoint = tmp_path / "models" / "checkpoints" / "tiny-sd1.safetensors"
    assert checkpoint.is_file()
    assert main(["models", "detect", "--json", str(checkpoint)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["family"] == "sd1" and report["prediction"] == "epsilon"
    assert report["unet_config"]["block_out_channels"] == [32, 64]


def test_detect_explains_a_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "half.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    assert main(["models", "detect", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "half.safetensors" in err and "truncated" in err
    pickle = tmp_path / "old.ckpt"
    torch.save({"a": torch.zeros(1)}, pickle)
    assert main(["models", "detect", str(pickle)]) == 1
    assert "--allow-pickle" in capsys.readouterr().err
    assert main(["models", "detect", str(pickle), "--allow-pickle"]) == 0
    assert "unknown" in capsys.readouterr().out
