"""extra_model_paths.yaml in ComfyUI's format: sections, base_path, is_default, multi-line values,
legacy folder names, custom_nodes, and errors that name the file and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.models import (
    ExtraModelPathsError,
    ModelFolders,
    parse_extra_model_paths,
    read_extra_model_paths,
)
from flowscope.storage.directories import Directories

# ComfyUI's extra_model_paths.yaml.example, trimmed (the a111 section is its own).
COMFY_EXAMPLE = """
#Rename this to extra_model_paths.yaml and ComfyUI will load it

#config for a1111 ui
#all you have to do is change the base_path to where yours is installed
a111:
    base_path: path/to/stable-diffusion-webui/

    checkpoints: models/Stable-diffusion
    configs: models/Stable-diffusion
    vae: models/VAE
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: |
                  models/ESRGAN
                  models/RealESRGAN
                  models/SwinIR
    embeddings: embeddings
    hypernetworks: models/hypernetworks
    controlnet: models/ControlNet

#config for comfyui
comfyui:
     base_path: /srv/comfyui/
     # is_default marks these folders to be listed first
     is_default: true
     checkpoints: models/checkpoints/
     clip: models/clip/
     unet: models/unet/
     diffusion_models: |
                  models/diffusion_models
                  models/unet

#other_ui:
#    base_path: path/to/ui
#    checkpoints: models/checkpoints

empty_section:
"""


def entries(text: str, source: Path) -> list[tuple[str, str, bool]]:
    return [
        (e.folder, str(e.path), e.is_default) for e in parse_extra_model_paths(text, source=source)
    ]


def test_comfyuis_example_file(tmp_path: Path) -> None:
    source = tmp_path / "conf" / "extra_model_paths.yaml"
    webui = tmp_path / "conf" / "path" / "to" / "stable-diffusion-webui"
    found = entries(COMFY_EXAMPLE, source)
    assert found == [
        ("checkpoints", f"{webui}/models/Stable-diffusion", False),
        ("configs", f"{webui}/models/Stable-diffusion", False),
        ("vae", f"{webui}/models/VAE", False),
        ("loras", f"{webui}/models/Lora", False),
        ("loras", f"{webui}/models/LyCORIS", False),
        ("upscale_models", f"{webui}/models/ESRGAN", False),
        ("upscale_models", f"{webui}/models/RealESRGAN", False),
        ("upscale_models", f"{webui}/models/SwinIR", False),
        ("embeddings", f"{webui}/embeddings", False),
        ("hypernetworks", f"{webui}/models/hypernetworks", False),
        ("controlnet", f"{webui}/models/ControlNet", False),
        ("checkpoints", "/srv/comfyui/models/checkpoints", True),
        ("text_encoders", "/srv/comfyui/models/clip", True),  # legacy names map to the new ones
        ("diffusion_models", "/srv/comfyui/models/unet", True),
        ("diffusion_models", "/srv/comfyui/models/diffusion_models", True),
        ("diffusion_models", "/srv/comfyui/models/unet", True),
    ]


def test_without_base_path_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    source = tmp_path / "conf" / "paths.yaml"
    text = "mine:\n  loras: ../shared/loras\n  vae: /abs/vae\n"
    assert entries(text, source) == [
        ("loras", str(tmp_path / "shared" / "loras"), False),
        ("vae", "/abs/vae", False),
    ]


def test_home_and_variables_are_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELS_ROOT", "/data/models")
    text = (
        "a:\n  base_path: ~/comfy\n  vae: vae\n"
        "b:\n  base_path: $MODELS_ROOT\n  loras: ${MODELS_ROOT}/x\n"
    )
    assert entries(text, tmp_path / "c.yaml") == [
        ("vae", str(tmp_path / "home" / "comfy" / "vae"), False),
        ("loras", "/data/models/x", False),  # an absolute entry ignores base_path
    ]


def test_lists_are_accepted_as_well_as_multi_line_strings(tmp_path: Path) -> None:
    text = "a:\n  base_path: /m\n  loras:\n    - one\n    - two\n"
    assert [p for _f, p, _d in entries(text, tmp_path / "c.yaml")] == ["/m/one", "/m/two"]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "a:\n", "a: {}\n"])
def test_empty_configs_add_nothing(tmp_path: Path, text: str) -> None:
    assert entries(text, tmp_path / "c.yaml") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "expected sections of folder names"),
        ("a: [1, 2]\n", "section 'a': expected a mapping"),
        ("a:\n  is_default: yes please\n", "is_default must be true or false"),
        ("a:\n  loras: 3\n", "key 'loras': expected a path or paths, not a int"),
        ("a:\n  loras: [x, 3]\n", "key 'loras': expected a path, not a int"),
        ("a:\n  base_path: [x]\n", "base_path must be a path"),
        ("a: [\n", "is not valid YAML"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    source = tmp_path / "bad.yaml"
    with pytest.raises(ExtraModelPathsError, match=message) as raised:
        parse_extra_model_paths(text, source=source)
    assert str(source) in str(raised.value)


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExtraModelPathsError, match=r"cannot read .*missing\.yaml"):
        read_extra_model_paths(tmp_path / "missing.yaml")


def test_the_base_directorys_config_and_extra_configs_apply_in_order(tmp_path: Path) -> None:
    directories = Directories.under(tmp_path / "base")
    directories.ensure()
    (directories.base / "extra_model_paths.yaml").write_text(
        textwrap.dedent(
            """
            shared:
              base_path: /shared
              checkpoints: ckpt
              custom_nodes: packs
            """
        )
    )
    later = tmp_path / "later.yaml"
    later.write_text("first:\n  is_default: true\n  checkpoints: /fast/ckpt\n")
    found = ModelFolders.from_directories(directories, [later])
    assert found.paths("checkpoints") == [
        Path("/fast/ckpt"),
        directories.models / "checkpoints",
        Path("/shared/ckpt"),
    ]
    assert found.extra_custom_node_folders == [Path("/shared/packs")]


FOLDER = st.sampled_from(["checkpoints", "loras", "vae", "clip", "unet", "my_folder"])
# Plain folder names; YAML 1.1 reads a bare `no`, `on` or `null` as a bool or nothing (in ComfyUI
# too), so a config would have to quote those.
YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "null"}
PART = st.from_regex(r"[a-z][a-z0-9_-]{0,7}", fullmatch=True).filter(lambda p: p not in YAML_WORDS)


@settings(max_examples=100)
@given(
    sections=st.lists(
        st.tuples(
            st.booleans(),
            st.dictionaries(FOLDER, st.lists(PART, min_size=1, max_size=3), max_size=4),
        ),
        max_size=3,
    ),
    multi_line=st.booleans(),
)
def test_written_configs_read_back(
    sections: list[tuple[bool, dict[str, list[str]]]], multi_line: bool
) -> None:
    legacy = {"clip": "text_encoders", "unet": "diffusion_models"}
    lines: list[str] = []
    expected: list[tuple[str, str, bool]] = []
    for index, (is_default, folders) in enumerate(sections):
        lines += [f"section{index}:", f"  base_path: /base{index}"]
        lines.append(f"  is_default: {'true' if is_default else 'false'}")
        for folder, parts in folders.items():
            if multi_line:  # ComfyUI's style: a `|` block, one path per line
                lines += [f"  {folder}: |", *(f"      {part}" for part in parts)]
            else:
                lines += [f"  {folder}:", *(f"    - {part}" for part in parts)]
            canonical = legacy.get(folder, folder)
            expected += [(canonical, f"/base{index}/{part}", is_default) for part in parts]
    assert entries("\n".join(lines) + "\n", Path("/conf/c.yaml")) == expected
