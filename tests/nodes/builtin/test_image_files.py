import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flowscope.nodes.builtin import builtin_nodes
from flowscope.nodes.builtin.image_files import LoadImage, SaveImage

SAVE_TOOLTIP = (
    "The prefix for the file to save. This may include formatting information such as "
    "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."
)


def solid(batch: int = 1, height: int = 3, width: int = 4, value: float = 0.5) -> torch.Tensor:
    return torch.full((batch, height, width, 3), value)


def png_text(path: Path) -> dict[str, str]:
    with Image.open(path) as image:
        image.load()
        return dict(image.text)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


# --- SaveImage -------------------------------------------------------------------------------


def test_save_image_declares_comfyui_inputs(nodes):
    cls = nodes["SaveImage"]
    assert cls.INPUT_TYPES() == {
        "required": {
            "images": ("IMAGE", {"tooltip": "The images to save."}),
            "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": SAVE_TOOLTIP}),
        },
        "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
    }
    assert cls.OUTPUT_NODE is True
    assert cls.RETURN_TYPES == ()
    assert cls.CATEGORY == "image"
    assert cls.__name__ == "SaveImage"


def test_save_image_writes_each_image_with_metadata(run, directories):
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4}}}
    workflow = {"nodes": [], "note": "ünïcode"}
    result = run(
        "SaveImage",
        images=solid(batch=2),
        filename_prefix="ComfyUI",
        prompt=prompt,
        extra_pnginfo={"workflow": workflow},
    )
    assert result == {
        "ui": {
            "images": [
                {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"},
                {"filename": "ComfyUI_00002_.png", "subfolder": "", "type": "output"},
            ]
        }
    }
    saved = directories.output / "ComfyUI_00002_.png"
    assert png_text(saved) == {"prompt": json.dumps(prompt), "workflow": json.dumps(workflow)}
    with Image.open(saved) as image:
        assert image.mode == "RGB"
        assert image.size == (4, 3)
        assert image.getpixel((0, 0)) == (127, 127, 127)  # 255 * 0.5, truncated as ComfyUI does


def test_save_image_uses_compress_level_4(run, monkeypatch):
    levels = []
    original = Image.Image.save

    def spy(self, fp, *args, **kwargs):
        levels.append(kwargs.get("compress_level"))
        return original(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", spy)
    run("SaveImage", images=solid(), filename_prefix="ComfyUI")
    run("PreviewImage", images=solid())
    assert levels == [4, 1]


def test_save_image_without_metadata_writes_no_text_chunks(directories):
    cls = builtin_nodes(directories, save_metadata=False)[0]["SaveImage"]
    cls().save_images(solid(), "plain", prompt={"1": {}}, extra_pnginfo={"workflow": {}})
    assert png_text(directories.output / "plain_00001_.png") == {}


def test_save_image_counter_continues_after_the_highest_existing_file(run, directories):
    for name in [
        "ComfyUI_00007_.png",
        "ComfyUI_00003_.png",
        "ComfyUI_notanumber_.png",
        "ComfyUIx_00050_.png",
        "Other_00090_.png",
    ]:
        (directories.output / name).write_bytes(b"")
    result = run("SaveImage", images=solid(batch=2), filename_prefix="ComfyUI")
    names = [entry["filename"] for entry in result["ui"]["images"]]
    assert names == ["ComfyUI_00008_.png", "ComfyUI_00009_.png"]


def test_save_image_prefix_may_name_subfolders(run, directories):
    result = run("SaveImage", images=solid(), filename_prefix="sample/deep/run")
    assert result["ui"]["images"] == [
        {"filename": "run_00001_.png", "subfolder": "sample/deep", "type": "output"}
    ]
    assert (directories.output / "sample" / "deep" / "run_00001_.png").is_file()
    # The counter is per folder: the same name at the top level starts again at 1.
    again = run("SaveImage", images=solid(), filename_prefix="sample/deep/run")
    assert again["ui"]["images"][0]["filename"] == "run_00002_.png"


@pytest.mark.parametrize("prefix", ["../escaped", "sample/../../escaped", "/tmp/escaped"])
def test_save_image_refuses_to_write_outside_the_output_folder(run, directories, prefix):
    with pytest.raises(ValueError, match="Saving image outside the output folder is not allowed"):
        run("SaveImage", images=solid(), filename_prefix=prefix)
    assert not list(directories.base.glob("escaped*"))


def test_save_image_refuses_a_symlink_that_leads_out(run, directories, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (directories.output / "link").symlink_to(elsewhere)
    with pytest.raises(ValueError, match="Saving image outside the output folder is not allowed"):
        run("SaveImage", images=solid(), filename_prefix="link/ComfyUI")
    assert list(elsewhere.iterdir()) == []


def test_save_image_replaces_size_and_date_variables(run, directories):
    result = run(
        "SaveImage", images=solid(height=3, width=4), filename_prefix="%width%x%height%_%year%"
    )
    year = time.localtime().tm_year
    assert result["ui"]["images"][0]["filename"] == f"4x3_{year}_00001_.png"


def test_save_image_batch_num_is_per_image_and_keeps_counting(run):
    first = run("SaveImage", images=solid(batch=2), filename_prefix="shot_%batch_num%")
    assert [e["filename"] for e in first["ui"]["images"]] == [
        "shot_0_00001_.png",
        "shot_1_00002_.png",
    ]
    second = run("SaveImage", images=solid(batch=1), filename_prefix="shot_%batch_num%")
    assert second["ui"]["images"][0]["filename"] == "shot_0_00003_.png"


def test_save_image_keeps_alpha_and_greyscale(run, directories):
    rgba = torch.zeros(1, 2, 2, 4)
    rgba[..., 3] = 1.0
    run("SaveImage", images=rgba, filename_prefix="rgba")
    grey = torch.ones(1, 2, 2, 1)
    run("SaveImage", images=grey, filename_prefix="grey")
    with Image.open(directories.output / "rgba_00001_.png") as image:
        assert image.mode == "RGBA"
    with Image.open(directories.output / "grey_00001_.png") as image:
        assert image.mode == "L"
        assert image.getpixel((1, 1)) == 255


def test_save_image_needs_a_file_name(run):
    with pytest.raises(ValueError, match="has no file name part"):
        run("SaveImage", images=solid(), filename_prefix="")


# --- PreviewImage ----------------------------------------------------------------------------


def test_preview_image_writes_temp_files_with_a_random_prefix(nodes, directories):
    cls = nodes["PreviewImage"]
    assert cls.INPUT_TYPES() == {
        "required": {"images": ("IMAGE",)},
        "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
    }
    assert cls.OUTPUT_NODE is True
    node = cls()
    first = node.save_images(solid(batch=2))["ui"]["images"]
    second = node.save_images(solid())["ui"]["images"]
    name = first[0]["filename"]
    assert name.startswith("ComfyUI_temp_")
    assert name.endswith("_00001_.png")
    letters = name[len("ComfyUI_temp_") : -len("_00001_.png")]
    assert len(letters) == 5
    assert letters.isalpha()
    assert letters.islower()
    assert first[0]["type"] == "temp"
    assert first[0]["subfolder"] == ""
    assert second[0]["filename"] == f"ComfyUI_temp_{letters}_00003_.png"
    assert (directories.temp / name).is_file()
    assert not list(directories.output.iterdir())


# --- LoadImage -------------------------------------------------------------------------------


def test_load_image_lists_top_level_image_files(nodes, directories):
    for name in ["b.png", "a.jpg", "c.webp", "notes.txt", "model.safetensors"]:
        (directories.input / name).write_bytes(b"")
    (directories.input / "sub").mkdir()
    (directories.input / "sub" / "nested.png").write_bytes(b"")
    (directories.input / "folder.png").mkdir()
    assert nodes["LoadImage"].INPUT_TYPES() == {
        "required": {"image": (["a.jpg", "b.png", "c.webp"], {"image_upload": True})}
    }
    assert nodes["LoadImage"].RETURN_TYPES == ("IMAGE", "MASK")
    assert nodes["LoadImage"].CATEGORY == "image"


def test_load_image_rgba_png_gives_rgb_and_inverted_alpha(run, directories):
    pixels = np.zeros((2, 3, 4), dtype=np.uint8)
    pixels[..., 0] = 255
    pixels[..., 3] = [[0, 255, 51], [255, 255, 255]]
    write_png(directories.input / "rgba.png", pixels)
    image, mask = run("LoadImage", image="rgba.png")
    assert image.shape == (1, 2, 3, 3)
    assert image.dtype == torch.float32
    assert torch.equal(image[0, :, :, 0], torch.ones(2, 3))
    assert mask.shape == (1, 2, 3)
    assert torch.allclose(mask[0], torch.tensor([[1.0, 0.0, 0.8], [0.0, 0.0, 0.0]]))


def test_load_image_without_alpha_gets_a_64px_zero_mask(run, directories):
    write_png(directories.input / "rgb.png", np.full((3, 5, 3), 255, dtype=np.uint8))
    image, mask = run("LoadImage", image="rgb.png")
    assert image.shape == (1, 3, 5, 3)
    assert torch.equal(image, torch.ones(1, 3, 5, 3))
    assert torch.equal(mask, torch.zeros(1, 64, 64))


def test_load_image_palette_transparency_becomes_the_mask(run, directories):
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 255, 255, 255])
    palette.putpixel((1, 0), 1)
    palette.save(directories.input / "p.png", transparency=0)
    _, mask = run("LoadImage", image="p.png")
    assert torch.equal(mask, torch.tensor([[[1.0, 0.0]]]))


def test_load_image_batches_gif_frames(run, directories):
    frames = [Image.new("RGB", (4, 2), color) for color in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(directories.input / "anim.gif", save_all=True, append_images=frames[1:])
    image, mask = run("LoadImage", image="anim.gif")
    assert image.shape == (3, 2, 4, 3)
    assert mask.shape[0] == 3
    assert [int(image[i, 0, 0].argmax()) for i in range(3)] == [0, 1, 2]


def test_load_image_skips_frames_of_another_size(run, directories):
    frames = [
        Image.new("RGB", (8, 6), (255, 0, 0)),
        Image.new("RGB", (4, 4)),
        Image.new("RGB", (8, 6)),
    ]
    frames[0].save(directories.input / "pages.tiff", save_all=True, append_images=frames[1:])
    image, mask = run("LoadImage", image="pages.tiff")
    assert image.shape == (2, 6, 8, 3)
    assert mask.shape == (2, 64, 64)


def test_load_image_takes_only_the_first_frame_of_an_mpo(run, directories):
    left, right = Image.new("RGB", (8, 6), (255, 0, 0)), Image.new("RGB", (8, 6), (0, 0, 255))
    left.save(directories.input / "stereo.mpo", format="MPO", save_all=True, append_images=[right])
    with Image.open(directories.input / "stereo.mpo") as opened:
        assert opened.n_frames == 2
    image, _ = run("LoadImage", image="stereo.mpo")
    assert image.shape[0] == 1
    assert image[0, 0, 0, 0] > 0.9


def test_load_image_applies_exif_orientation(run, directories):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.new("RGB", (8, 4)).save(directories.input / "rotated.png", exif=exif)
    image, _ = run("LoadImage", image="rotated.png")
    assert image.shape == (1, 8, 4, 3)


def test_load_image_scales_16_bit_greyscale(run, directories):
    pixels = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(directories.input / "deep.png")
    image, _ = run("LoadImage", image="deep.png")
    assert image.shape == (1, 1, 3, 3)
    assert torch.allclose(image[0, 0, :, 0], torch.tensor([0.0, 32768 / 65535, 1.0]))
    assert torch.equal(image[..., 0], image[..., 2])


def test_load_image_reads_annotated_names_and_subfolders(run, directories):
    write_png(directories.output / "made.png", np.zeros((2, 2, 3), dtype=np.uint8))
    write_png(directories.input / "sub" / "x.png", np.zeros((3, 3, 3), dtype=np.uint8))
    image, _ = run("LoadImage", image="made.png [output]")
    assert image.shape == (1, 2, 2, 3)
    image, _ = run("LoadImage", image="sub/x.png")
    assert image.shape == (1, 3, 3, 3)


@pytest.mark.parametrize("name", ["../secret.png", "../output/secret.png [input]", "/etc/x.png"])
def test_load_image_refuses_paths_outside_its_folder(nodes, run, directories, name):
    write_png(directories.base / "secret.png", np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="points outside the input folder"):
        run("LoadImage", image=name)
    verdict = nodes["LoadImage"].VALIDATE_INPUTS(image=name)
    assert isinstance(verdict, str)
    assert verdict.startswith(f"Invalid image file: {name}")


def test_load_image_validation_reports_missing_files(nodes, directories):
    write_png(directories.input / "here.png", np.zeros((1, 1, 3), dtype=np.uint8))
    cls = nodes["LoadImage"]
    assert cls.VALIDATE_INPUTS(image="here.png") is True
    assert cls.VALIDATE_INPUTS(image="gone.png") == "Invalid image file: gone.png"
    assert cls.VALIDATE_INPUTS(image=None) is True


def test_load_image_missing_file_is_a_clear_error(run):
    with pytest.raises(ValueError, match=re.escape("image file 'gone.png' does not exist")):
        run("LoadImage", image="gone.png")


def test_load_image_non_image_file_is_a_clear_error(run, directories):
    (directories.input / "fake.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=re.escape("cannot load image 'fake.png'")):
        run("LoadImage", image="fake.png")


def test_load_image_is_changed_is_the_file_hash(nodes, directories):
    path = write_png(directories.input / "x.png", np.zeros((2, 2, 3), dtype=np.uint8))
    cls = nodes["LoadImage"]
    before = cls.IS_CHANGED(image="x.png")
    assert before == hashlib.sha256(path.read_bytes()).hexdigest()
    assert cls.IS_CHANGED(image="x.png") == before
    write_png(path, np.full((2, 2, 3), 9, dtype=np.uint8))
    assert cls.IS_CHANGED(image="x.png") != before


# --- binding ---------------------------------------------------------------------------------


def test_unbound_base_classes_explain_how_to_get_bound_ones():
    with pytest.raises(TypeError, match="builtin_nodes"):
        SaveImage()
    with pytest.raises(TypeError, match="builtin_nodes"):
        LoadImage.INPUT_TYPES()


def test_load_image_truncated_file_is_a_clear_error(run, directories):
    path = write_png(directories.input / "cut.png", np.full((32, 32, 3), 7, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match="damaged or truncated"):
        run("LoadImage", image="cut.png")
