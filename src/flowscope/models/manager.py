"""Loading models by their folder name for the node pack: resolves names through the model
folders, loads each file once through the memory-budget cache, and places it on the device.

Torch and the model code are imported by the methods that load (or place) a model: building the
node catalog and listing model files never pay for them (~1.5 s).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flowscope.models.folders import ModelFolders
from flowscope.storage.directories import PathEscapeError

if TYPE_CHECKING:
    import torch

    from flowscope.models.cache import ModelCache
    from flowscope.models.components import (
        ControlNet,
        DiffusionModel,
        ImageAutoencoder,
        Placement,
        TextEncoder,
    )
    from flowscope.models.families import CheckpointFamily
    from flowscope.telemetry.bus import EventBus

T = TypeVar("T")

EMBEDDING_EXTENSIONS = (".safetensors", ".pt", ".bin")


class ModelNotFoundError(FileNotFoundError):
    """A model name that is not in its folder; the message lists where we looked."""


@dataclass(frozen=True)
class ModelSettings:
    """How models are loaded: `--cpu`, the memory budget, and whether `.ckpt` pickles load."""

    force_cpu: bool = False
    allow_pickle: bool = False
    budget_bytes: int | None = None  # None: a share of the device's memory
    dtype: str | None = None  # "fp32" | "fp16" | "bf16"; None: the device's default


@dataclass
class _Checkpoint:
    model: DiffusionModel
    clip: TextEncoder
    vae: ImageAutoencoder


class ModelManager:
    """The one place node code gets models from. Thread-safe; a bus can be attached later
    (the node catalog is built before the server's event bus)."""

    def __init__(self, folders: ModelFolders, settings: ModelSettings | None = None) -> None:
        self.folders = folders
        self.settings = settings or ModelSettings()
        self._placement: Placement | None = None
        self._cache: ModelCache | None = None
        self._bus: EventBus | None = None
        self._lock = threading.Lock()

    def attach_bus(self, bus: EventBus) -> None:
        self._bus = bus
        if self._cache is not None:
            self._cache.bus = bus

    @property
    def placement(self) -> Placement:
        # Chosen on first use, so building the catalog never touches a GPU.
        from flowscope.models.components import Placement
        from flowscope.models.devices import choose_device, compute_dtype

        with self._lock:
            if self._placement is None:
                device = choose_device(force_cpu=self.settings.force_cpu)
                self._placement = Placement(
                    device, compute_dtype(device, prefer=self.settings.dtype)
                )
            return self._placement

    @property
    def cache(self) -> ModelCache:
        from flowscope.models.cache import ModelCache
        from flowscope.models.devices import default_budget_bytes

        placement = self.placement
        with self._lock:
            if self._cache is None:
                budget = self.settings.budget_bytes or default_budget_bytes(placement.device)
                self._cache = ModelCache(budget, bus=self._bus)
            return self._cache

    def path(self, folder: str, name: str) -> Path:
        path = self.folders.full_path(folder, name)
        if path is None:
            places = ", ".join(str(p) for p in self.folders.paths(folder)) or "(none)"
            raise ModelNotFoundError(
                f"model {name!r} is not in the {folder!r} folder (looked in {places}); put the "
                f"file there or pick one of: {', '.join(self.folders.filenames(folder)) or '—'}"
            )
        return path

    def _cached(
        self, folder: str, name: str, kind: str, load: Callable[[Path], T], **extra: Any
    ) -> T:
        path = self.path(folder, name)
        stat = path.stat()
        key = (kind, str(path), stat.st_size, stat.st_mtime_ns, *extra.values())
        return self.cache.get_or_load(
            key, lambda: load(path), name=name, kind=kind, family=extra.get("family")
        )

    # -- loaders ------------------------------------------------------------------------
    def checkpoint(self, name: str) -> tuple[DiffusionModel, TextEncoder, ImageAutoencoder]:
        loaded = self._cached("checkpoints", name, "checkpoint", self._load_checkpoint)
        return loaded.model.clone(), loaded.clip.clone(), loaded.vae

    def _load_checkpoint(self, path: Path) -> _Checkpoint:
        from flowscope.models.checkpoint import load_checkpoint
        from flowscope.models.components import DiffusionModel, ImageAutoencoder, TextEncoder
        from flowscope.models.patching import PatchedModule
        from flowscope.models.text.tokenizer import ClipTokenizer

        placement = self.placement
        loaded = load_checkpoint(
            path, allow_pickle=self.settings.allow_pickle, dtype=placement.dtype
        )
        unet = _placed(loaded.unet, placement)
        family = loaded.family
        model = DiffusionModel(
            path.name, family, PatchedModule(unet), loaded.alphas_cumprod, placement
        )
        encoders = {
            name: PatchedModule(_placed(module, placement))
            for name, module in loaded.text_encoders.items()
        }
        clip = TextEncoder(
            path.name,
            family,
            encoders,
            ClipTokenizer.shipped(),
            placement,
            embeddings=self.embedding,
        )
        vae = ImageAutoencoder(
            path.name,
            _placed(loaded.vae, placement),
            placement,
        )
        return _Checkpoint(model, clip, vae)

    def vae(self, name: str) -> ImageAutoencoder:
        return self._cached("vae", name, "vae", self._load_vae)

    def _load_vae(self, path: Path) -> ImageAutoencoder:
        from flowscope.models.checkpoint import load_vae
        from flowscope.models.components import ImageAutoencoder

        placement = self.placement
        # The scaling factor belongs to the MODEL's latent space, not to the VAE node's value.
        vae, _scaling = load_vae(
            path, allow_pickle=self.settings.allow_pickle, dtype=placement.dtype
        )
        return ImageAutoencoder(path.name, _placed(vae, placement), placement)

    def lora(self, name: str, family: CheckpointFamily) -> Any:
        from flowscope.models.lora import read_lora

        def load(path: Path) -> Any:
            return read_lora(path, family, allow_pickle=self.settings.allow_pickle)

        return self._cached("loras", name, "lora", load, family=family.family.value)

    def controlnet(self, name: str) -> ControlNet:
        return self._cached("controlnet", name, "controlnet", self._load_controlnet)

    def _load_controlnet(self, path: Path) -> ControlNet:
        from flowscope.models.components import ControlNet
        from flowscope.models.controlnet_files import load_controlnet

        placement = self.placement
        loaded = load_controlnet(
            path, allow_pickle=self.settings.allow_pickle, dtype=placement.dtype
        )
        return ControlNet(path.name, loaded.family, _placed(loaded.model, placement), placement)

    def embedding(self, name: str) -> dict[str, torch.Tensor] | None:
        """A textual-inversion embedding by name, or None when there is none (ComfyUI skips
        unknown embeddings). The extension is optional, and a bare name also matches a file of
        that name in any subfolder; names that leave the folder match nothing."""
        from flowscope.models.text.embeddings import read_embedding

        found = self._embedding_path(name)
        if found is None:
            return None
        stat = found.stat()
        key = ("embedding", str(found), stat.st_size, stat.st_mtime_ns)
        return self.cache.get_or_load(
            key,
            lambda: read_embedding(found, allow_pickle=self.settings.allow_pickle),
            name=name,
            kind="embedding",
        )

    def _embedding_path(self, name: str) -> Path | None:
        candidates = [name, *(name + ext for ext in EMBEDDING_EXTENSIONS)]
        for candidate in candidates:
            try:
                path = self.folders.full_path("embeddings", candidate)
            except PathEscapeError:
                return None
            if path is not None:
                return path
        wanted = {Path(candidate).name for candidate in candidates}
        for filename in self.folders.filenames("embeddings"):
            if Path(filename).name in wanted:
                return self.folders.full_path("embeddings", filename)
        return None

    def free(self) -> None:
        """Unload everything (`POST /free` with `unload_models`)."""
        if self._cache is not None:
            self._cache.free_all()


def _placed(module: Any, placement: Placement) -> Any:
    """A loaded module on the compute device, in inference mode (diffusers' classes are
    untyped, hence Any)."""
    return module.to(placement.device).eval()
