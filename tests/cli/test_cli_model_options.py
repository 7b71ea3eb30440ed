"""The model flags (`--cpu`, `--force-fp16/-fp32/-bf16`, `--allow-pickle`, `--model-budget`):
parsed into `ModelSettings` by `serve`, `worker` and `run`, and handed on unchanged to the worker
processes a server starts."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowscope.cli import _parser
from flowscope.cli.model_options import model_settings
from flowscope.cli.serve import worker_process_command
from flowscope.models.manager import ModelSettings

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
