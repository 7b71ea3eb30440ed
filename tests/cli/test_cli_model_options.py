"""The model flags (`--cpu`, `--force-fp16/-fp32/-bf16`, `--allow-pickle`, `--model-budget`):
parsed into `ModelSettings` by `serve`, `worker` and `run`, and handed on unchanged to the worker
processes a server starts."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowscope.cli import _parser
from flowscope.cli.display import make_console
from flowscope.cli.model_options import model_settings
from flowscope.cli.serve import _load_nodes, worker_process_command
from flowscope.models.manager import ModelSettings
from flowscope.storage.directories import Directories

GB = 1024**3


def parse(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(list(argv))


def test_defaults_leave_the_choice_to_the_device() -> None:
    for command in ("serve", "worker"):
        assert model_settings(parse(command)) == ModelSettings()
    assert model_settings(parse("run", "workflow.json")) == ModelSettings()


def test_each_flag_reaches_the_settings() -> None:
    args = parse("serve", "--cpu", "--force-fp16", "--allow-pickle", "--model-budget", "2.5")
    assert model_settings(args) == ModelSettings(
        force_cpu=True, allow_pickle=True, budget_bytes=round(2.5 * GB), dtype="fp16"
    )
    assert model_settings(parse("worker", "--force-fp32")).dtype == "fp32"
    assert model_settings(parse("run", "w.json", "--force-bf16", "--cpu")) == ModelSettings(
        force_cpu=True, dtype="bf16"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--force-fp16", "--force-fp32"), "not allowed with argument"),
        (("--model-budget", "0"), "must be more than 0 GB"),
        (("--model-budget", "-1"), "must be more than 0 GB"),
        (("--model-budget", "lots"), "not a number of GB: 'lots'"),
    ],
)
def test_bad_flags_are_refused_with_a_message(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("serve", *argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@given(
    cpu=st.booleans(),
    dtype=st.sampled_from([None, "fp16", "fp32", "bf16"]),
    pickle=st.booleans(),
    budget=st.none() | st.floats(min_value=0.001, max_value=4096, allow_nan=False),
)
def test_a_servers_worker_processes_get_the_same_settings(
    cpu: bool, dtype: str | None, pickle: bool, budget: float | None
) -> None:
    argv = ["serve", "--base-directory", "/data"]
    argv += ["--cpu"] * cpu + ["--allow-pickle"] * pickle
    if dtype is not None:
        argv.append(f"--force-{dtype}")
    if budget is not None:
        argv += ["--model-budget", repr(budget)]
    server = parse(*argv)
    command = worker_process_command(server, "sqlite:////data/flowscope.db")
    worker = parse(*command[command.index("worker") :])
    assert model_settings(worker) == model_settings(server)
    assert model_settings(server).force_cpu is cpu


def test_the_sd_pack_loads_from_extra_model_paths(tmp_path: Path) -> None:
    """The SD loaders list and resolve models from the server's folders, extra_model_paths.yaml
    included (not only from the base directory)."""
    shared = tmp_path / "shared-models" / "checkpoints"
    shared.mkdir(parents=True)
    (shared / "elsewhere.safetensors").write_bytes(b"")
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(
        f"shared:\n  base_path: {tmp_path / 'shared-models'}\n  checkpoints: checkpoints\n"
    )
    base = tmp_path / "base"
    args = parse("worker", "--base-directory", str(base), "--extra-model-paths-config", str(config))
    directories = Directories.under(base)
    directories.ensure()
    registry, models, _folders = _load_nodes(args, make_console(stderr=True), directories)
    loader = registry.get("CheckpointLoaderSimple")
    assert loader is not None
    (names, *_rest) = loader.INPUT_TYPES()["required"]["ckpt_name"]
    assert "elsewhere.safetensors" in names
    assert models.path("checkpoints", "elsewhere.safetensors") == shared / "elsewhere.safetensors"
