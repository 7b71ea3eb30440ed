"""ModelManager: names to files, one load per file through the cache, events, clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sd_world import SDWorld, make_world

from flowscope.models.families import Family
from flowscope.models.manager import ModelNotFoundError
from flowscope.telemetry import Action

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SDWorld]:
    world = make_world(tmp_path_factory.mktemp("manager"), Family.SD1)
    yield world
    world.executor.close()


def test_checkpoint_loads_once_and_every_caller_gets_its_own_clone(world: SDWorld) -> None:
    name = world.tiny.checkpoint.name
    world.events.clear()
    model_a, clip_a, vae_a = world.models.checkpoint(name)
    model_b, clip_b, vae_b = world.models.checkpoint(name)
    loaded = world.events.of(Action.MODEL_LOADED)
    assert [e.get("model.name") for e in loaded] == [name]
    assert loaded[0].get("model.size_bytes") > 1_000_000
    assert loaded[0].get("model.device") == "cpu"
    assert world.events.of(Action.MODEL_CACHE_HIT)
    # Shared weights, separate patch lists.
    assert model_a.unet.module is model_b.unet.module
    assert model_a.unet is not model_b.unet
    assert clip_a.encoders["clip_l"] is not clip_b.encoders["clip_l"]
    assert vae_a is vae_b


def test_an_unknown_model_name_says_where_it_looked_and_what_exists(world: SDWorld) -> None:
    with pytest.raises(ModelNotFoundError) as error:
        world.models.checkpoint("missing.safetensors")
    message = str(error.value)
    assert "missing.safetensors" in message
    assert world.tiny.checkpoint.name in message
    assert str(world.directories.models / "checkpoints") in message


def test_embedding_lookup_by_bare_name_in_a_subfolder_and_never_outside(world: SDWorld) -> None:
    from safetensors.torch import save_file

    folder: Path = world.directories.models / "embeddings" / "styles"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": torch.randn(2, 32)}, str(folder / "watercolor.safetensors"))
    found = world.models.embedding("watercolor")
    assert found is not None
    (vectors,) = found.values()
    assert vectors.shape == (2, 32)
    assert world.models.embedding("styles/watercolor") is not None
    assert world.models.embedding("nothing-here") is None
    assert world.models.embedding("../checkpoints/" + world.tiny.checkpoint.stem) is None
    assert world.models.embedding("/etc/passwd") is None


def test_embedding_in_a_prompt_changes_the_encoding(world: SDWorld) -> None:
    from safetensors.torch import save_file

    folder: Path = world.directories.models / "embeddings"
    save_file({"emb_params": torch.randn(1, 32) * 5}, str(folder / "bold.safetensors"))
    _model, clip, _vae = world.models.checkpoint(world.tiny.checkpoint.name)
    plain, _ = clip.encode("a cat")
    with_embedding, _ = clip.encode("a cat embedding:bold")
    unknown, _ = clip.encode("a cat embedding:not-there")
    assert not torch.equal(plain, with_embedding)
    assert torch.equal(plain, unknown)  # ComfyUI skips unknown embeddings


def test_free_unloads_everything(world: SDWorld) -> None:
    world.models.checkpoint(world.tiny.checkpoint.name)
    world.events.clear()
    world.models.free()
    assert world.events.of(Action.MODEL_UNLOADED)
    assert not world.models.cache.entries()
