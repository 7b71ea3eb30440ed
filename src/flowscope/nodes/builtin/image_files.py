"""Image file nodes: LoadImage reads from the input folder; SaveImage / PreviewImage write PNGs.

The node classes here are unbound bases. `builtin_nodes()` makes subclasses that carry the
`Directories` (and the metadata switch) as class attributes, so no node reaches for a global.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import random
import re
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from flowscope.nodes.builtin.images import as_image_batch
from flowscope.storage.directories import (
    Directories,
    FileType,
    PathEscapeError,
    safe_join,
    split_annotated_name,
)

if TYPE_CHECKING:
    # Imported where used: the server lists these nodes without loading torch (~1.5 s).
    import numpy as np
    import torch

# Multi-frame formats whose extra frames are not animation (MPO: the second eye of a 3D photo).
SINGLE_FRAME_FORMATS = frozenset({"MPO"})

# ComfyUI's mask for an image without alpha: a 64x64 "nothing masked" placeholder.
NO_ALPHA_MASK_SIZE = 64

BATCH_NUM = "%batch_num%"
OUTSIDE_OUTPUT = "Saving image outside the output folder is not allowed"


def _bound_directories(cls: type) -> Directories:
    directories = getattr(cls, "directories", None)
    if not isinstance(directories, Directories):
        raise TypeError(
            f"{cls.__name__} is not bound to a data directory; take it from "
            "flowscope.nodes.builtin.builtin_nodes(directories)"
        )
    return directories


# --- listing input files ---------------------------------------------------------------------


def content_type(file_name: str) -> str | None:
    """The MIME top-level type of a file name ("image", "video", ...), from its extension."""
    mime_type, _ = mimetypes.guess_type(file_name, strict=False)
    if mime_type is None:
        # Some platforms' MIME tables lack webp; ComfyUI treats it as an image everywhere.
        return "image" if file_name.lower().endswith(".webp") else None
    return mime_type.split("/")[0]


def image_file_names(folder: Path) -> list[str]:
    """Image files directly inside `folder` (not in subfolders), sorted, as LoadImage lists them."""
    if not folder.is_dir():
        return []
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.is_file() and content_type(entry.name) == "image"
    )


# --- decoding --------------------------------------------------------------------------------


def _frame_rgb(frame: Image.Image) -> np.ndarray:
    import numpy as np

    rgb: np.ndarray
    if frame.mode.startswith("I"):
        # 16-bit greyscale ("I", "I;16", ...): scale the full range to 0..1, grey to RGB.
        grey = np.clip(np.asarray(frame, dtype=np.float32) / 65535.0, 0.0, 1.0)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    else:
        rgb = np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0
    return rgb


def _frame_alpha(frame: Image.Image) -> np.ndarray | None:
    import numpy as np

    if "A" in frame.getbands():
        alpha_band = frame.getchannel("A")
    elif frame.mode == "P" and "transparency" in frame.info:
        alpha_band = frame.convert("RGBA").getchannel("A")
    else:
        return None
    alpha: np.ndarray = np.asarray(alpha_band, dtype=np.float32) / 255.0
    return alpha


def decode_image(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """An image file as (IMAGE [F,H,W,3], MASK [F,H,W]); animation frames become the batch.

    Frames whose size differs from the first are skipped. The mask is 1 - alpha; an image with
    no alpha at all gets ComfyUI's 64x64 zero mask per frame.
    """
    import numpy as np
    import torch

    try:
        opened = Image.open(path)
    except UnidentifiedImageError as exc:
        raise ValueError(f"{path.name} is not an image file Pillow can read") from exc
    rgbs: list[np.ndarray] = []
    alphas: list[np.ndarray | None] = []
    with opened:
        try:
            for raw_frame in ImageSequence.Iterator(opened):
                frame = ImageOps.exif_transpose(raw_frame)
                if rgbs and frame.size != (rgbs[0].shape[1], rgbs[0].shape[0]):
                    continue
                rgbs.append(_frame_rgb(frame))
                alphas.append(_frame_alpha(frame))
                if opened.format in SINGLE_FRAME_FORMATS:
                    break
        except OSError as exc:
            raise ValueError(f"{path.name} is damaged or truncated ({exc})") from exc
    height, width = rgbs[0].shape[:2]
    masks: list[np.ndarray]
    if all(alpha is None for alpha in alphas):
        masks = [np.zeros((NO_ALPHA_MASK_SIZE,) * 2, dtype=np.float32) for _ in alphas]
    else:
        # Some frames with alpha, some without: frames without are fully visible.
        masks = [
            1.0 - alpha if alpha is not None else np.zeros((height, width), dtype=np.float32)
            for alpha in alphas
        ]
    return torch.from_numpy(np.stack(rgbs)), torch.from_numpy(np.stack(masks))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LoadImage:
    directories: ClassVar[Directories]

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        files = image_file_names(_bound_directories(cls).input)
        return {"required": {"image": (files, {"image_upload": True})}}

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def image_path(cls, image: str) -> Path:
        """The file an `image` value names (`x.png`, `sub/x.png`, `x.png [output]`)."""
        try:
            return _bound_directories(cls).resolve_annotated(image)
        except PathEscapeError as exc:
            kind = split_annotated_name(image)[1]
            raise ValueError(
                f"LoadImage: image {image!r} points outside the {kind} folder, which is not "
                "allowed; choose a file from the list or upload the image"
            ) from exc

    def load_image(self, image: str) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.image_path(image)
        if not path.is_file():
            raise ValueError(
                f"LoadImage: image file {image!r} does not exist; upload it or pick another"
            )
        try:
            return decode_image(path)
        except ValueError as exc:
            raise ValueError(f"LoadImage: cannot load image {image!r}: {exc}") from exc

    @classmethod
    def IS_CHANGED(cls, image: str) -> str:
        return file_sha256(cls.image_path(image))

    @classmethod
    def VALIDATE_INPUTS(cls, image: str | None) -> bool | str:
        if image is None:  # linked: the value is only known at run time
            return True
        try:
            path = cls.image_path(image)
        except ValueError:
            kind = split_annotated_name(image)[1]
            return f"Invalid image file: {image} (the path leaves the {kind} folder)"
        if not path.is_file():
            return f"Invalid image file: {image}"
        return True


# --- saving ----------------------------------------------------------------------------------


def expand_prefix_variables(prefix: str, width: int, height: int) -> str:
    """Replace ComfyUI's server-side `%width%`, `%height%` and local-time variables."""
    if "%" not in prefix:
        return prefix
    now = time.localtime()
    values = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.tm_year),
        "%month%": f"{now.tm_mon:02}",
        "%day%": f"{now.tm_mday:02}",
        "%hour%": f"{now.tm_hour:02}",
        "%minute%": f"{now.tm_min:02}",
        "%second%": f"{now.tm_sec:02}",
    }
    for variable, value in values.items():
        prefix = prefix.replace(variable, value)
    return prefix


def next_counter(folder: Path, filename: str) -> int:
    """One more than the highest counter among `{filename}_{counter}...` files in `folder`.

    As in ComfyUI: the text after `{filename}_` up to the next `_` is the counter (a
    non-number counts as 0). Unlike ComfyUI, `%batch_num%` in the name matches any batch
    number, so a batched prefix continues its count instead of overwriting file 00001.
    """
    name = r"\d+".join(re.escape(part) for part in filename.split(BATCH_NUM))
    pattern = re.compile(name + r"_([^_]*)")
    highest = 0
    for entry in os.listdir(folder):
        match = pattern.match(entry)
        if match is None:
            continue
        try:
            highest = max(highest, int(match.group(1)))
        except ValueError:
            continue
    return highest + 1


@dataclass(frozen=True, slots=True)
class SaveTarget:
    folder: Path
    filename: str
    counter: int
    # Relative to the type's folder with "/" separators, "" for the folder itself (the `ui` form).
    subfolder: str


def save_target(root: Path, filename_prefix: str, width: int, height: int) -> SaveTarget:
    """Where a batch saved with `filename_prefix` goes, as `folder_paths.get_save_image_path`."""
    prefix = os.path.normpath(expand_prefix_variables(filename_prefix, width, height))
    subfolder, filename = os.path.split(prefix)
    if filename in ("", ".", ".."):
        raise ValueError(
            f"filename_prefix {filename_prefix!r} has no file name part; "
            "end it with a name such as 'ComfyUI'"
        )
    root = Path(os.path.abspath(root))
    folder = Path(os.path.normpath(os.path.join(root, subfolder)))
    outside = os.path.commonpath((root, folder)) != str(root)
    if not outside:
        try:
            folder = safe_join(root, subfolder)  # also refuses symlinks that lead out
        except PathEscapeError:
            outside = True
    if outside:
        raise ValueError(
            f"{OUTSIDE_OUTPUT}: filename_prefix {filename_prefix!r} resolves to "
            f"{os.path.realpath(folder)}, which is not inside {root}; use a relative prefix "
            "such as 'sample/ComfyUI'"
        )
    folder.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(folder, os.path.realpath(root))
    return SaveTarget(
        folder=folder,
        filename=filename,
        counter=next_counter(folder, filename),
        subfolder="" if relative == "." else relative.replace(os.sep, "/"),
    )


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """One [H,W,C] IMAGE in 0..1 as an 8-bit PIL image (values truncated, as ComfyUI does)."""
    import numpy as np

    pixels = np.clip(255.0 * image.detach().cpu().float().numpy(), 0, 255).astype(np.uint8)
    channels = pixels.shape[-1]
    if not 1 <= channels <= 4:
        raise ValueError(f"cannot save an image with {channels} channels; expected 1 to 4")
    # Pillow picks L, LA, RGB or RGBA from the array shape.
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)


def png_metadata(prompt: Any, extra_pnginfo: Any) -> PngInfo:
    """tEXt chunks: `prompt` (the API prompt) and one per `extra_pnginfo` key, JSON-encoded."""
    metadata = PngInfo()
    if prompt is not None:
        metadata.add_text("prompt", json.dumps(prompt))
    if extra_pnginfo is not None:
        for key, value in extra_pnginfo.items():
            metadata.add_text(key, json.dumps(value))
    return metadata


class SaveImage:
    directories: ClassVar[Directories]
    save_metadata: ClassVar[bool] = True
    # Which folder the files go to (and the `type` reported in the UI), and the zlib effort.
    file_type: ClassVar[FileType] = "output"
    compress_level: ClassVar[int] = 4

    def __init__(self) -> None:
        _bound_directories(type(self))
        self.prefix_append = ""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "ComfyUI",
                        "tooltip": "The prefix for the file to save. This may include formatting "
                        "information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to "
                        "include values from nodes.",
                    },
                ),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."

    def save_images(
        self,
        images: torch.Tensor,
        filename_prefix: str = "ComfyUI",
        prompt: Any = None,
        extra_pnginfo: Any = None,
    ) -> dict[str, Any]:
        images = as_image_batch(images, type(self).__name__, "images")
        root = _bound_directories(type(self)).for_type(self.file_type)
        target = save_target(
            root, filename_prefix + self.prefix_append, images.shape[2], images.shape[1]
        )
        metadata = png_metadata(prompt, extra_pnginfo) if self.save_metadata else None
        results: list[dict[str, str]] = []
        counter = target.counter
        for batch_number, image in enumerate(images):
            name = target.filename.replace(BATCH_NUM, str(batch_number))
            # Never overwrite: another writer may have taken this counter since the scan.
            while (target.folder / f"{name}_{counter:05}_.png").exists():
                counter += 1
            file = f"{name}_{counter:05}_.png"
            tensor_to_pil(image).save(
                target.folder / file, pnginfo=metadata, compress_level=self.compress_level
            )
            results.append(
                {"filename": file, "subfolder": target.subfolder, "type": self.file_type}
            )
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    file_type: ClassVar[FileType] = "temp"
    compress_level: ClassVar[int] = 1

    def __init__(self) -> None:
        super().__init__()
        # Per instance, so previews from different nodes never share a counter sequence.
        self.prefix_append = "_temp_" + "".join(random.choices(string.ascii_lowercase, k=5))

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {"images": ("IMAGE",)},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    DESCRIPTION = "Preview the images without saving them to the ComfyUI output directory."
