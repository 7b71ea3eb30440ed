import pytest
import torch


def test_solid_mask_inputs_and_value(nodes, run):
    assert nodes["SolidMask"].INPUT_TYPES()["required"] == {
        "value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        "width": ("INT", {"default": 512, "min": 1, "max": 16384, "step": 1}),
        "height": ("INT", {"default": 512, "min": 1, "max": 16384, "step": 1}),
    }
    (mask,) = run("SolidMask", value=0.25, width=5, height=3)
    assert mask.shape == (1, 3, 5)
    assert torch.equal(mask, torch.full((1, 3, 5), 0.25))


def test_invert_mask(run):
    mask = torch.tensor([[[0.0, 0.25], [1.0, 0.5]]]).repeat(2, 1, 1)
    (inverted,) = run("InvertMask", mask=mask)
    assert torch.equal(inverted, 1.0 - mask)


@pytest.mark.parametrize(
    ("channel", "index"), [("red", 0), ("green", 1), ("blue", 2), ("alpha", 3)]
)
def test_image_to_mask_picks_a_channel(nodes, run, channel, index):
    assert nodes["ImageToMask"].INPUT_TYPES()["required"]["channel"] == (
        ["red", "green", "blue", "alpha"],
    )
    image = torch.rand(2, 3, 4, 4)
    (mask,) = run("ImageToMask", image=image, channel=channel)
    assert torch.equal(mask, image[..., index])


def test_image_to_mask_alpha_of_an_rgb_image_is_a_clear_error(run):
    with pytest.raises(ValueError, match="has 3 channels"):
        run("ImageToMask", image=torch.zeros(1, 2, 2, 3), channel="alpha")


def test_mask_to_image_repeats_the_mask_in_rgb(run):
    mask = torch.rand(2, 3, 4)
    (image,) = run("MaskToImage", mask=mask)
    assert image.shape == (2, 3, 4, 3)
    for channel in range(3):
        assert torch.equal(image[..., channel], mask)
    image[0, 0, 0, 0] = 5.0  # a real tensor, not a view sharing memory with the mask
    assert mask.max() <= 1.0


def test_mask_to_image_accepts_a_single_hw_mask(run):
    (image,) = run("MaskToImage", mask=torch.ones(3, 4))
    assert image.shape == (1, 3, 4, 3)


def test_display_names():
    from flowscope.nodes.builtin.masks import DISPLAY_NAMES

    assert DISPLAY_NAMES == {
        "ImageToMask": "Convert Image to Mask",
        "MaskToImage": "Convert Mask to Image",
    }
