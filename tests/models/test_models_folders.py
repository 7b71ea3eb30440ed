"""ModelFolders: ComfyUI's folder table, legacy names, listing with subfolders and per-folder
extensions, the mtime-checked cache, and resolving names without leaving the folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope.models import ModelFolders, UnknownFolderError, folders
from flowscope.storage.directories import Directories, PathEscapeError

# GET /models in ComfyUI (spec §4.1), in order.
COMFY_FOLDERS = [
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
]


def touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def model_folders(base: Path) -> ModelFolders:
    directories = Directories.under(base)
    directories.ensure()
    return ModelFolders.from_directories(directories)


def test_the_folder_table_is_comfyuis(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    models = tmp_path / "models"
    assert found.names() == COMFY_FOLDERS
    assert found.paths("checkpoints") == [models / "checkpoints"]
    assert found.paths("custom_nodes") == [tmp_path / "custom_nodes"]
    assert found.paths("controlnet") == [models / "controlnet", models / "t2i_adapter"]
    assert found.model_names() == [n for n in COMFY_FOLDERS if n not in ("configs", "custom_nodes")]
    assert found.extensions("checkpoints") == {
        ".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"
    }  # fmt: skip
    assert found.extensions("configs") == {".yaml"}
    assert found.as_dict()["vae"] == [str(models / "vae")]


def test_legacy_names_are_the_new_folders(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    models = tmp_path / "models"
    assert found.paths("clip") == found.paths("text_encoders")
    assert found.paths("text_encoders") == [models / "text_encoders", models / "clip"]
    assert found.paths("unet") == [models / "unet", models / "diffusion_models"]
    touch(models / "clip" / "t5.safetensors")
    touch(models / "unet" / "flux.sft")
    assert found.filenames("text_encoders") == ["t5.safetensors"]
    assert found.filenames("clip") == ["t5.safetensors"]
    assert found.filenames("diffusion_models") == ["flux.sft"]
    assert "unet" in found and "clip" in found and "nonsense" not in found


def test_listing_is_recursive_sorted_and_filtered_by_extension(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    loras = tmp_path / "models" / "loras"
    for name in ("b.safetensors", "a.PT", "sd15/style/c.ckpt", "sd15/d.bin", "notes.txt"):
        touch(loras / name)
    touch(loras / ".hidden.safetensors")
    touch(loras / ".cache" / "blob.safetensors")
    touch(loras / ".git" / "objects" / "x.pt")
    assert found.filenames("loras") == ["a.PT", "b.safetensors", "sd15/d.bin", "sd15/style/c.ckpt"]
    touch(tmp_path / "models" / "configs" / "v1.yaml")
    touch(tmp_path / "models" / "configs" / "v1.safetensors")
    assert found.filenames("configs") == ["v1.yaml"]
    touch(tmp_path / "models" / "classifiers" / "model")
    touch(tmp_path / "models" / "classifiers" / "model.bin")
    assert found.filenames("classifiers") == ["model"]


def test_names_repeated_across_roots_are_listed_once_files_per_root(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    models = tmp_path / "models"
    touch(models / "controlnet" / "canny.safetensors", b"12345")
    touch(models / "t2i_adapter" / "canny.safetensors", b"123")
    touch(models / "t2i_adapter" / "depth.pth")
    assert found.filenames("controlnet") == ["canny.safetensors", "depth.pth"]
    files = sorted((f.name, f.path_index, f.size) for f in found.files("controlnet"))
    assert files == [("canny.safetensors", 0, 5), ("canny.safetensors", 1, 3), ("depth.pth", 1, 1)]
    entry = next(f for f in found.files("controlnet") if f.path_index == 0)
    assert entry.modified == os.stat(models / "controlnet" / "canny.safetensors").st_mtime


def test_diffusers_lists_model_folders(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    diffusers = tmp_path / "models" / "diffusers"
    touch(diffusers / "sd-turbo" / "model_index.json", b"{}")
    touch(diffusers / "sd-turbo" / "unet" / "diffusion_pytorch_model.safetensors")
    touch(diffusers / "org" / "tiny" / "model_index.json", b"{}")
    touch(diffusers / "not-a-model" / "weights.safetensors")
    assert found.filenames("diffusers") == ["org/tiny", "sd-turbo"]
    assert found.full_path("diffusers", "org/tiny") == diffusers / "org" / "tiny"
    assert found.full_path("diffusers", "not-a-model") is None


def test_unknown_folders_are_an_error_that_names_the_known_ones(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    with pytest.raises(UnknownFolderError, match=r"no model folder 'lora'.*loras"):
        found.filenames("lora")
    with pytest.raises(UnknownFolderError):
        found.full_path("lora", "x.safetensors")


def test_added_paths_go_last_or_first_and_new_names_list_every_file(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    extra, preferred = tmp_path / "extra", tmp_path / "preferred"
    found.add_path("checkpoints", extra)
    found.add_path("checkpoints", preferred, is_default=True)
    found.add_path("checkpoints", extra)  # twice: once
    assert found.paths("checkpoints") == [preferred, tmp_path / "models" / "checkpoints", extra]
    found.add_path("ipadapter", tmp_path / "ipadapter")
    touch(tmp_path / "ipadapter" / "a.bin")
    touch(tmp_path / "ipadapter" / "readme.md")
    assert found.names()[-1] == "ipadapter"
    assert found.filenames("ipadapter") == ["a.bin", "readme.md"]


def test_listings_are_cached_until_a_folder_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = model_folders(tmp_path)
    checkpoints = tmp_path / "models" / "checkpoints"
    touch(checkpoints / "sub" / "a.safetensors")
    # An old mtime on every folder, so any later change is visible at any clock resolution.
    for folder in (checkpoints, checkpoints / "sub"):
        os.utime(folder, (1_000_000, 1_000_000))
    walks: list[str] = []
    real_walk = folders._walk
    monkeypatch.setattr(folders, "_walk", lambda root: (walks.append(root), real_walk(root))[1])

    assert found.filenames("checkpoints") == ["sub/a.safetensors"]
    assert found.filenames("checkpoints") == ["sub/a.safetensors"]
    assert walks == [str(checkpoints)]
    before = found.fingerprint()
    assert found.fingerprint() == before
    assert walks.count(str(checkpoints)) == 1

    touch(checkpoints / "sub" / "b.safetensors")  # changes only the subfolder's mtime
    assert found.filenames("checkpoints") == ["sub/a.safetensors", "sub/b.safetensors"]
    assert walks.count(str(checkpoints)) == 2
    assert found.fingerprint() != before


def test_a_missing_root_keeps_the_fingerprint_until_it_appears(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    assert not (tmp_path / "models" / "t2i_adapter").exists()
    before = found.fingerprint()
    assert found.fingerprint() == before
    touch(tmp_path / "models" / "t2i_adapter" / "sketch.pth")
    assert found.fingerprint() != before
    assert found.filenames("controlnet") == ["sketch.pth"]


def test_full_path_takes_the_first_root_that_has_the_file(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    models = tmp_path / "models"
    touch(models / "t2i_adapter" / "sub" / "a.safetensors")
    assert found.full_path("controlnet", "sub/a.safetensors") == (
        models / "t2i_adapter" / "sub" / "a.safetensors"
    )
    touch(models / "controlnet" / "sub" / "a.safetensors")
    assert found.full_path("controlnet", "sub/a.safetensors") == (
        models / "controlnet" / "sub" / "a.safetensors"
    )
    # Names saved by ComfyUI on Windows use backslashes.
    assert found.full_path("controlnet", "sub\\a.safetensors") is not None
    assert found.full_path("controlnet", "missing.safetensors") is None
    assert found.full_path("controlnet", "sub") is None  # a folder is not a model file


@pytest.mark.parametrize(
    "name", ["../x.safetensors", "sub/../../x.safetensors", "/etc/passwd", "..\\x.pt", "", "a\0b"]
)
def test_full_path_refuses_names_that_leave_the_folder(tmp_path: Path, name: str) -> None:
    found = model_folders(tmp_path)
    touch(tmp_path / "models" / "x.safetensors")
    with pytest.raises(PathEscapeError):
        found.full_path("checkpoints", name)


def test_links_placed_inside_a_root_are_followed(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    library = touch(tmp_path / "library" / "big.safetensors").parent
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "shared").symlink_to(library, target_is_directory=True)
    (tmp_path / "models" / "checkpoints" / "loop").symlink_to(
        tmp_path / "models" / "checkpoints", target_is_directory=True
    )
    assert found.filenames("checkpoints") == ["shared/big.safetensors"]
    resolved = found.full_path("checkpoints", "shared/big.safetensors")
    assert resolved == tmp_path / "models" / "checkpoints" / "shared" / "big.safetensors"


def test_path_in_picks_a_root_by_index(tmp_path: Path) -> None:
    found = model_folders(tmp_path)
    assert found.path_in("controlnet", 1, "a/b.pt") == tmp_path / "models/t2i_adapter/a/b.pt"
    with pytest.raises(IndexError):
        found.path_in("controlnet", 2, "b.pt")
    with pytest.raises(PathEscapeError):
        found.path_in("controlnet", 0, "../../secret")


def test_custom_node_folders_from_directories(tmp_path: Path) -> None:
    directories = Directories.under(tmp_path / "base")
    directories.ensure()
    config = tmp_path / "extra.yaml"
    config.write_text("mine:\n  custom_nodes: /opt/packs\n  loras: /opt/loras\n")
    found = ModelFolders.from_directories(directories, [config])
    assert found.custom_node_folders == [directories.custom_nodes, Path("/opt/packs")]
    assert found.extra_custom_node_folders == [Path("/opt/packs")]
    assert found.paths("loras")[-1] == Path("/opt/loras")


SEGMENT = st.text(alphabet="ab.\\/:\0 ~", min_size=0, max_size=12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=SEGMENT)
def test_full_path_never_leaves_its_roots(tmp_path: Path, name: str) -> None:
    found = model_folders(tmp_path / "base")
    touch(tmp_path / "base" / "models" / "a" / "a.pt")  # a sibling folder, outside the roots
    touch(tmp_path / "secret.pt")
    touch(tmp_path / "base" / "models" / "loras" / "a" / "b.pt")
    touch(tmp_path / "base" / "models" / "loras" / "a.b")
    roots = found.paths("loras")
    try:
        resolved = found.full_path("loras", name)
    except PathEscapeError:
        return
    if resolved is None:
        return
    normalized = Path(os.path.normpath(resolved))
    assert normalized == resolved
    assert any(root in resolved.parents for root in roots), resolved
    assert resolved.is_file()


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(
        st.text(alphabet="abc-_ .", min_size=1, max_size=6).filter(
            lambda s: s not in (".", "..") and s.strip() == s and not s.startswith(".")
        ),
        min_size=1,
        max_size=4,
    )
)
def test_every_listed_name_resolves_to_its_file(tmp_path: Path, parts: list[str]) -> None:
    found = model_folders(tmp_path / "base")
    file = touch(tmp_path / "base" / "models" / "vae" / Path(*parts[:-1]) / (parts[-1] + ".pt"))
    names = found.filenames("vae")
    name = "/".join([*parts[:-1], parts[-1] + ".pt"])
    assert name in names
    for listed in names:
        resolved = found.full_path("vae", listed)
        assert resolved is not None and resolved.is_file()
    assert found.full_path("vae", name) == file
