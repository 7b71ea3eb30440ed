"""Editor workflow → API prompt conversion, checked against what the editor would queue."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workflow_builders import (
    DEFINITIONS,
    convert,
    definitions,
    image_chain,
    inp,
    link_obj,
    load_fixture,
    node,
    out,
    reroute,
    subgraph,
    workflow,
)

from flowscope.graph._workflow_resolve import bypass_slot
from flowscope.graph.workflow import (
    MAX_SUBGRAPH_DEPTH,
    WorkflowError,
    is_ui_workflow,
    workflow_to_prompt,
)

# -- whole files saved by the editor -----------------------------------------------------------


def test_default_workflow_schema_04_converts_to_the_editors_api_prompt() -> None:
    prompt = convert(load_fixture("txt2img_v04.json"))

    assert prompt == {
        "3": {
            "inputs": {
                "seed": 156680208700286,
                "steps": 20,
                "cfg": 8,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
            "class_type": "KSampler",
            "_meta": {"title": "KSampler"},
        },
        "4": {
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"},
            "class_type": "CheckpointLoaderSimple",
            "_meta": {"title": "Load Checkpoint"},
        },
        "5": {
            "inputs": {"width": 512, "height": 512, "batch_size": 1},
            "class_type": "EmptyLatentImage",
            "_meta": {"title": "Empty Latent Image"},
        },
        "6": {
            "inputs": {
                "text": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
                "clip": ["4", 1],
            },
            "class_type": "CLIPTextEncode",
            "_meta": {"title": "CLIP Text Encode (Prompt)"},
        },
        "7": {
            "inputs": {"text": "text, watermark", "clip": ["4", 1]},
            "class_type": "CLIPTextEncode",
            "_meta": {"title": "CLIP Text Encode (Prompt)"},
        },
        "8": {
            "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
            "class_type": "VAEDecode",
            "_meta": {"title": "VAE Decode"},
        },
        "9": {
            "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
            "class_type": "SaveImage",
            "_meta": {"title": "Save Image"},
        },
    }
    # The UI-only control value ("randomize") never reaches the prompt.
    assert "control_after_generate" not in prompt["3"]["inputs"]
    assert "randomize" not in json.dumps(prompt)


def test_schema_1_link_objects_reroutes_primitive_and_notes() -> None:
    prompt = convert(load_fixture("reroutes_v1.json"))

    assert prompt == {
        "10": {
            "inputs": {"ckpt_name": "dreamshaper_8.safetensors"},
            "class_type": "CheckpointLoaderSimple",
            "_meta": {"title": "Load Checkpoint"},
        },
        "13": {
            "inputs": {"text": "a photo of a red fox in the snow", "clip": ["10", 1]},
            "class_type": "CLIPTextEncode",
            "_meta": {"title": "Positive"},
        },
        "14": {
            "inputs": {"text": "blurry, lowres", "clip": ["10", 1]},
            "class_type": "CLIPTextEncode",
            "_meta": {"title": "Negative"},
        },
        "15": {
            "inputs": {"width": 768, "height": 512, "batch_size": 2},
            "class_type": "EmptyLatentImage",
            "_meta": {"title": "Empty Latent Image"},
        },
        "17": {
            "inputs": {
                "seed": 42,  # from the PrimitiveNode, as a constant, not a link
                "steps": 25,
                "cfg": 6.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "denoise": 0.75,
                "model": ["10", 0],  # drawn through two native reroutes
                "positive": ["13", 0],
                "negative": ["14", 0],
                "latent_image": ["15", 0],
            },
            "class_type": "KSampler",
            "_meta": {"title": "KSampler"},
        },
        "18": {
            "inputs": {"samples": ["17", 0], "vae": ["10", 2]},
            "class_type": "VAEDecode",
            "_meta": {"title": "VAE Decode"},
        },
        "20": {
            "inputs": {"filename_prefix": "foxes/ComfyUI", "images": ["18", 0]},
            "class_type": "SaveImage",
            "_meta": {"title": "Save Image"},
        },
    }


def test_bypassed_and_muted_nodes() -> None:
    prompt = convert(load_fixture("bypass_mute_v04.json"))

    assert prompt == {
        "1": {
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
            "class_type": "EmptyImage",
            "_meta": {"title": "EmptyImage"},
        },
        # Two bypassed inverts with a reroute between them: the preview reads the source image.
        "4": {
            "inputs": {"images": ["1", 0]},
            "class_type": "PreviewImage",
            "_meta": {"title": "Preview Image"},
        },
        # Fed by a muted node: the input is removed, the node itself stays.
        "6": {
            "inputs": {"filename_prefix": "muted_branch"},
            "class_type": "SaveImage",
            "_meta": {"title": "Save Image"},
        },
        "8": {
            "inputs": {"ckpt_name": "sd15.safetensors"},
            "class_type": "CheckpointLoaderSimple",
            "_meta": {"title": "Load Checkpoint"},
        },
        # Bypassed LoRA: output 1 (CLIP) continues from input 1, output 0 (MODEL) from input 0.
        "9": {
            "inputs": {"text": "portrait photo, soft light", "clip": ["8", 1]},
            "class_type": "CLIPTextEncode",
            "_meta": {"title": "CLIP Text Encode (Prompt)"},
        },
        # Bypassed VAEEncode has no LATENT input to pass on, so latent_image is left unset.
        "10": {
            "inputs": {
                "seed": 1,
                "steps": 4,
                "cfg": 1.5,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1,
                "model": ["8", 0],
                "positive": ["9", 0],
            },
            "class_type": "KSampler",
            "_meta": {"title": "KSampler"},
        },
    }


def test_subgraphs_expand_with_path_ids_promoted_widgets_and_nesting() -> None:
    prompt = convert(load_fixture("subgraphs_v04.json"))

    scale = {"upscale_method": "nearest-exact", "height": 256, "crop": "disabled"}
    assert prompt == {
        "1": {
            "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0},
            "class_type": "EmptyImage",
            "_meta": {"title": "EmptyImage"},
        },
        # The subgraph node shows `width` as a widget; its saved value (320) replaces the inner one.
        "2:5": {
            "inputs": {**scale, "width": 320, "image": ["1", 0]},
            "class_type": "ImageScale",
            "_meta": {"title": "Upscale Image"},
        },
        "2:6": {
            "inputs": {"image": ["2:5", 0]},
            "class_type": "ImageInvert",
            "_meta": {"title": "Invert Image"},
        },
        "2:7:3": {
            "inputs": {"image": ["2:6", 0]},
            "class_type": "ImageInvert",
            "_meta": {"title": "Invert Image"},
        },
        "3": {
            "inputs": {"images": ["2:7:3", 0]},
            "class_type": "PreviewImage",
            "_meta": {"title": "Preview Image"},
        },
        # A second instance of the same definition without a saved value keeps the inner 256.
        "4:5": {
            "inputs": {**scale, "width": 256, "image": ["1", 0]},
            "class_type": "ImageScale",
            "_meta": {"title": "Upscale Image"},
        },
        "4:6": {
            "inputs": {"image": ["4:5", 0]},
            "class_type": "ImageInvert",
            "_meta": {"title": "Invert Image"},
        },
        "4:7:3": {
            "inputs": {"image": ["4:6", 0]},
            "class_type": "ImageInvert",
            "_meta": {"title": "Invert Image"},
        },
    }


def test_links_as_objects_keyed_by_id_and_holes_in_old_link_lists() -> None:
    expected = convert(load_fixture("txt2img_v04.json"))

    keyed = load_fixture("txt2img_v04.json")
    keyed["links"] = {str(link[0]): link_obj(*link) for link in keyed["links"]}
    assert convert(keyed) == expected

    holes = load_fixture("txt2img_v04.json")
    holes["links"] = [None, *holes["links"], None]
    assert convert(holes) == expected


def test_conversion_does_not_change_the_workflow_it_reads() -> None:
    original = load_fixture("subgraphs_v04.json")
    untouched = copy.deepcopy(original)
    convert(original)
    assert original == untouched


@pytest.mark.parametrize(
    "name", ["txt2img_v04.json", "reroutes_v1.json", "bypass_mute_v04.json", "subgraphs_v04.json"]
)
def test_fixtures_are_ui_workflows_and_prompts_are_not(name: str) -> None:
    document = load_fixture(name)
    assert is_ui_workflow(document)
    assert not is_ui_workflow(convert(document))


@pytest.mark.parametrize(
    "document",
    [None, [], "nodes", {"nodes": {}}, {"nodes": [], "links": 3}, {"3": {"class_type": "X"}}],
)
def test_is_ui_workflow_rejects_other_documents(document: object) -> None:
    assert not is_ui_workflow(document)


# -- widget values -------------------------------------------------------------------------------


def single(
    node_type: str, widgets: Any, *, inputs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The prompt inputs of one lone node."""
    prompt = convert(workflow([node(1, node_type, inputs=inputs, widgets=widgets)], []))
    inputs_out: dict[str, Any] = prompt["1"]["inputs"]
    return inputs_out


SAMPLER_LINKS = [
    inp("model", "MODEL"),
    inp("positive", "CONDITIONING"),
    inp("negative", "CONDITIONING"),
    inp("latent_image", "LATENT"),
]


@pytest.mark.parametrize("control", ["fixed", "increment", "decrement", "randomize", True])
def test_control_after_generate_value_is_skipped(control: Any) -> None:
    values = single("KSampler", [5, control, 30, 7.5, "heun", "karras", 0.5], inputs=SAMPLER_LINKS)
    assert values == {
        "seed": 5,
        "steps": 30,
        "cfg": 7.5,
        "sampler_name": "heun",
        "scheduler": "karras",
        "denoise": 0.5,
    }


def test_file_saved_without_the_control_value_still_maps_by_position() -> None:
    values = single("KSampler", [5, 30, 7.5, "heun", "karras", 0.5])
    assert values["seed"] == 5
    assert values["steps"] == 30
    assert values["denoise"] == 0.5


def test_stray_control_value_after_an_int_without_control_is_skipped() -> None:
    # Saved by an editor that gave `amount` a control widget; this definition has none.
    assert single("AddNoise", [3, "randomize", 0.25]) == {"amount": 3, "strength": 0.25}
    # With values to spare only for real widgets, nothing is skipped.
    assert single("AddNoise", [3, 0.25]) == {"amount": 3, "strength": 0.25}


def test_seed_named_ints_get_a_control_widget_unless_disabled() -> None:
    # `seed` has no control_after_generate option but is named seed: the editor adds one.
    # `noise_seed` says control_after_generate: False, so it has none.
    values = single("SeededThing", [7, "increment", "hello", 9])
    assert values == {"seed": 7, "label": "hello", "noise_seed": 9}


def test_combo_with_control_skips_the_control_and_its_filter() -> None:
    assert single("PickStyle", ["anime", "randomize", "", 0.8]) == {
        "style": "anime",
        "strength": 0.8,
    }


def test_dict_widgets_values_are_read_by_name_with_defaults_for_the_rest() -> None:
    values = single("EmptyImage", {"width": 100, "height": 80, "color": 255, "unrelated": 1})
    assert values == {"width": 100, "height": 80, "batch_size": 1, "color": 255}


def test_missing_trailing_values_take_the_definition_defaults() -> None:
    assert single("EmptyLatentImage", [640]) == {"width": 640, "height": 512, "batch_size": 1}
    assert single("EmptyLatentImage", None) == {"width": 512, "height": 512, "batch_size": 1}
    # A combo without a default shows its first option.
    assert single("ImageScale", [], inputs=[inp("image", "IMAGE")])["upscale_method"] == (
        "nearest-exact"
    )


def test_force_input_inputs_are_not_widgets_and_old_dummy_values_are_dropped() -> None:
    # Editors before 1.16 kept a value for each forceInput input; newer ones do not.
    assert single("JoinStrings", ["", " | ", ""]) == {"separator": " | "}
    assert single("JoinStrings", [" | "]) == {"separator": " | "}


def test_upload_button_value_is_not_an_input() -> None:
    assert single("LoadImage", ["portrait.jpg", "image"]) == {"image": "portrait.jpg"}
    # The upload button sits after the required inputs, before optional widgets.
    assert single("LoadFrames", ["walk.webm", "image", 12]) == {"video": "walk.webm", "frame": 12}
    assert single("LoadFrames", ["walk.webm", 12]) == {"video": "walk.webm", "frame": 12}


def test_list_values_are_wrapped_and_copied() -> None:
    points = [[0, 0], [10, 5]]
    wf = workflow([node(1, "PathEditor", widgets=[points, True])], [])
    prompt = convert(wf)
    assert prompt["1"]["inputs"] == {"points": {"__value__": [[0, 0], [10, 5]]}, "closed": True}
    prompt["1"]["inputs"]["points"]["__value__"][0].append(99)
    assert wf["nodes"][0]["widgets_values"][0] == [[0, 0], [10, 5]]


def test_title_is_the_node_title_else_the_display_name_else_the_type() -> None:
    prompt = convert(
        workflow(
            [
                node(1, "EmptyImage", title="Canvas"),
                node(2, "EmptyImage"),
                node(3, "NoDisplayName", widgets=[4]),
            ],
            [],
        )
    )
    assert [prompt[i]["_meta"]["title"] for i in ("1", "2", "3")] == [
        "Canvas",
        "EmptyImage",
        "NoDisplayName",
    ]
    assert prompt["3"]["inputs"] == {"x": 4}


# -- links, primitives, reroutes, bypass ----------------------------------------------------------


def sampler_fed_by(source: dict[str, Any]) -> dict[str, Any]:
    """KSampler 3 whose seed widget input is linked (link 1) from `source` (node 2, output 0)."""
    sampler = node(
        3,
        "KSampler",
        inputs=[*SAMPLER_LINKS, inp("seed", "INT", 1, widget=True)],
        widgets=[111, "fixed", 20, 8, "euler", "normal", 1],
    )
    return workflow([source, sampler], [[1, 2, 0, 3, 4, "INT"]])


def test_linked_widget_input_takes_the_link_instead_of_the_value() -> None:
    source = node(2, "PrimitiveInt", outputs=[out("INT", "INT", [1])], widgets=[9, "randomize"])
    prompt = convert(sampler_fed_by(source))
    assert prompt["3"]["inputs"]["seed"] == ["2", 0]
    assert prompt["2"]["inputs"] == {"value": 9}
    assert prompt["2"]["_meta"] == {"title": "Int"}


def test_widget_input_linked_from_a_muted_node_is_removed() -> None:
    source = node(2, "PrimitiveInt", outputs=[out("INT", "INT", [1])], widgets=[9], mode=2)
    prompt = convert(sampler_fed_by(source))
    assert "2" not in prompt
    assert "seed" not in prompt["3"]["inputs"]
    assert prompt["3"]["inputs"]["steps"] == 20


def test_widget_input_linked_from_a_bypassed_node_without_inputs_keeps_its_value() -> None:
    source = node(2, "PrimitiveInt", outputs=[out("INT", "INT", [1])], widgets=[9], mode=4)
    prompt = convert(sampler_fed_by(source))
    assert "2" not in prompt
    assert prompt["3"]["inputs"]["seed"] == 111


def test_primitive_node_value_is_a_constant_whatever_its_mode() -> None:
    for mode in (0, 2, 4):
        primitive = node(
            2,
            "PrimitiveNode",
            outputs=[{"name": "INT", "type": "INT", "widget": {"name": "seed"}, "links": [1]}],
            widgets=[424242, "increment"],
            mode=mode,
        )
        prompt = convert(sampler_fed_by(primitive))
        assert set(prompt) == {"3"}
        assert prompt["3"]["inputs"]["seed"] == 424242


def test_primitive_node_without_a_value_leaves_the_widget_alone() -> None:
    primitive = node(2, "PrimitiveNode", outputs=[out("connect to widget input", "*", [1])])
    assert convert(sampler_fed_by(primitive))["3"]["inputs"]["seed"] == 111


def test_primitive_node_through_reroutes_and_into_a_force_input_socket() -> None:
    primitive = node(
        2,
        "PrimitiveNode",
        outputs=[{"name": "STRING", "type": "STRING", "widget": {"name": "first"}, "links": [1]}],
        widgets=["hello"],
    )
    join = node(
        4,
        "JoinStrings",
        inputs=[inp("first", "STRING", 2), inp("second", "STRING", 3)],
        widgets=["-"],
    )
    links = [[1, 2, 0, 3, 0, "STRING"], [2, 3, 0, 4, 0, "STRING"], [3, 2, 0, 4, 1, "STRING"]]
    prompt = convert(workflow([primitive, reroute(3, 1, [2]), join], links))
    assert prompt == {
        "4": {
            "inputs": {"separator": "-", "first": "hello", "second": "hello"},
            "class_type": "JoinStrings",
            "_meta": {"title": "Join Strings"},
        }
    }


def test_list_valued_primitive_is_wrapped() -> None:
    primitive = node(2, "PrimitiveNode", outputs=[out("STRING", "STRING", [1])], widgets=[[1, 2]])
    editor = node(
        3, "PathEditor", inputs=[inp("points", "STRING", 1, widget=True)], widgets=["[]", False]
    )
    prompt = convert(workflow([primitive, editor], [[1, 2, 0, 3, 0, "STRING"]]))
    assert prompt["3"]["inputs"]["points"] == {"__value__": [1, 2]}


def test_reroute_chains_in_any_mode_pass_the_link_through() -> None:
    middle = [
        reroute(2, 1, [2]),
        {**reroute(3, 2, [3]), "mode": 2},
        {**reroute(4, 3, [4]), "mode": 4},
    ]
    links = [
        [1, 1, 0, 2, 0, "IMAGE"],
        [2, 2, 0, 3, 0, "*"],
        [3, 3, 0, 4, 0, "*"],
        [4, 4, 0, 99, 0, "*"],
    ]
    prompt = convert(image_chain(middle, links))
    assert set(prompt) == {"1", "99"}
    assert prompt["99"]["inputs"] == {"images": ["1", 0]}


def test_dangling_reroute_leaves_the_input_unset() -> None:
    links = [[4, 4, 0, 99, 0, "IMAGE"]]
    prompt = convert(image_chain([reroute(4, None, [4])], links))
    assert prompt["99"]["inputs"] == {}


def test_chains_of_bypassed_nodes_mixed_with_reroutes() -> None:
    middle = [
        node(
            2,
            "ImageInvert",
            inputs=[inp("image", "IMAGE", 1)],
            outputs=[out("IMAGE", "IMAGE", [2])],
            mode=4,
        ),
        reroute(3, 2, [3]),
        node(
            4,
            "AddNoise",
            inputs=[inp("image", "IMAGE", 3)],
            outputs=[out("IMAGE", "IMAGE", [4])],
            mode=4,
            widgets=[1, 0.1],
        ),
        node(
            5,
            "ImageInvert",
            inputs=[inp("image", "IMAGE", 4)],
            outputs=[out("IMAGE", "IMAGE", [5])],
        ),
        node(
            6,
            "ImageInvert",
            inputs=[inp("image", "IMAGE", 5)],
            outputs=[out("IMAGE", "IMAGE", [6])],
            mode=4,
        ),
    ]
    links = [
        [1, 1, 0, 2, 0, "IMAGE"],
        [2, 2, 0, 3, 0, "IMAGE"],
        [3, 3, 0, 4, 0, "IMAGE"],
        [4, 4, 0, 5, 0, "IMAGE"],
        [5, 5, 0, 6, 0, "IMAGE"],
        [6, 6, 0, 99, 0, "IMAGE"],
    ]
    prompt = convert(image_chain(middle, links))
    assert set(prompt) == {"1", "5", "99"}
    assert prompt["5"]["inputs"] == {"image": ["1", 0]}
    assert prompt["99"]["inputs"] == {"images": ["5", 0]}


def test_bypass_prefers_the_same_slot_then_the_exact_type() -> None:
    blend = node(
        2,
        "MaskedBlend",
        inputs=[inp("mask", "MASK", 10), inp("image", "IMAGE", 11)],
        outputs=[out("IMAGE", "IMAGE", [1]), out("MASK", "MASK", [2])],
        mode=4,
    )
    mask_source = node(
        5, "LoadImage", outputs=[out("IMAGE", "IMAGE", []), out("MASK", "MASK", [10])]
    )
    image_source = node(6, "EmptyImage", outputs=[out("IMAGE", "IMAGE", [11])])
    preview = node(3, "PreviewImage", inputs=[inp("images", "IMAGE", 1)])
    noise = node(4, "DynamicBatch", inputs=[inp("mask", "MASK", 2)], widgets=[2])
    links = [
        [1, 2, 0, 3, 0, "IMAGE"],
        [2, 2, 1, 4, 0, "MASK"],
        [10, 5, 1, 2, 0, "MASK"],
        [11, 6, 0, 2, 1, "IMAGE"],
    ]
    prompt = convert(workflow([mask_source, image_source, blend, preview, noise], links))
    # IMAGE output 0: input 0 is a MASK, so the first IMAGE input is used.
    assert prompt["3"]["inputs"] == {"images": ["6", 0]}
    # MASK output 1: input 1 is an IMAGE, so the first MASK input is used.
    assert prompt["4"]["inputs"]["mask"] == ["5", 1]


@pytest.mark.parametrize(
    ("types", "slot", "output_type", "want", "expected"),
    [
        (["IMAGE", "MASK"], 1, "MASK", "MASK", 1),  # same slot fits
        (["MASK", "IMAGE"], 0, "IMAGE", "IMAGE", 1),  # exact type
        (["MASK", "IMAGE,LATENT"], 0, "LATENT", "LATENT", 1),  # comma union fits both
        (["MASK", "*"], 0, "IMAGE", "IMAGE", 1),  # wildcard input
        (["MASK", "MASK"], 0, "IMAGE", "IMAGE", -1),  # nothing fits: not bypassable
        (["IMAGE"], 3, "IMAGE", "*", 0),  # wildcard target: same slot, else the first
        (["IMAGE", "IMAGE"], 1, "IMAGE", "*", 1),
        (["image"], 0, "IMAGE", "Image", 0),  # litegraph compares case-insensitively
    ],
)
def test_bypass_slot_rule(
    types: list[str], slot: int, output_type: str, want: str, expected: int
) -> None:
    assert bypass_slot(types, slot, output_type, want) == expected


def test_set_and_get_nodes_act_as_named_wires() -> None:
    source = node(1, "EmptyImage", outputs=[out("IMAGE", "IMAGE", [1])], widgets=[16, 16, 1, 0])
    setter = node(
        2, "SetNode", inputs=[inp("IMAGE", "IMAGE", 1)], outputs=[out("*", "*")], widgets=["canvas"]
    )
    getter = node(3, "GetNode", outputs=[out("IMAGE", "IMAGE", [2])], widgets=["canvas"])
    lost = node(4, "GetNode", outputs=[out("IMAGE", "IMAGE", [3])], widgets=["nothing-set"])
    preview = node(5, "PreviewImage", inputs=[inp("images", "IMAGE", 2)])
    other = node(6, "PreviewImage", inputs=[inp("images", "IMAGE", 3)])
    links = [[1, 1, 0, 2, 0, "IMAGE"], [2, 3, 0, 5, 0, "IMAGE"], [3, 4, 0, 6, 0, "IMAGE"]]
    prompt = convert(workflow([source, setter, getter, lost, preview, other], links))
    assert set(prompt) == {"1", "5", "6"}
    assert prompt["5"]["inputs"] == {"images": ["1", 0]}
    assert prompt["6"]["inputs"] == {}


def test_inputs_added_by_the_editor_beyond_the_definition_are_kept() -> None:
    source = node(1, "EmptyImage", outputs=[out("IMAGE", "IMAGE", [1, 2])])
    batch = node(
        2,
        "DynamicBatch",
        inputs=[inp("image_1", "IMAGE", 1), inp("image_2", "IMAGE", 2), inp("image_3", "IMAGE")],
        widgets=[3],
    )
    prompt = convert(
        workflow([source, batch], [[1, 1, 0, 2, 0, "IMAGE"], [2, 1, 0, 2, 1, "IMAGE"]])
    )
    assert prompt["2"]["inputs"] == {"inputcount": 3, "image_1": ["1", 0], "image_2": ["1", 0]}


def test_notes_and_frontend_only_helpers_are_left_out() -> None:
    nodes = [
        node(1, "Note", widgets=["hello"]),
        node(2, "MarkdownNote", widgets=["# hi"]),
        node(3, "Fast Groups Bypasser (rgthree)"),
        node(4, "Label (rgthree)"),
        node(5, "EmptyImage"),
    ]
    assert set(convert(workflow(nodes, []))) == {"5"}


# -- subgraphs --------------------------------------------------------------------------------

SCALE_ID = "11111111-2222-4333-8444-555555555555"


def scale_subgraph(inner_mode: int = 0) -> dict[str, Any]:
    """Inputs (image, width → ImageScale.width), output IMAGE; an inner muted/bypassed invert."""
    scale = node(
        1,
        "ImageScale",
        inputs=[inp("image", "IMAGE", 11), inp("width", "INT", 12, widget=True)],
        outputs=[out("IMAGE", "IMAGE", [13])],
        widgets=["bilinear", 64, 48, "center"],
    )
    invert = node(
        2,
        "ImageInvert",
        inputs=[inp("image", "IMAGE", 13)],
        outputs=[out("IMAGE", "IMAGE", [14])],
        mode=inner_mode,
    )
    return subgraph(
        SCALE_ID,
        "Scale",
        [scale, invert],
        [
            link_obj(11, -10, 0, 1, 0, "IMAGE"),
            link_obj(12, -10, 1, 1, 1, "INT"),
            link_obj(13, 1, 0, 2, 0, "IMAGE"),
            link_obj(14, 2, 0, -20, 0, "IMAGE"),
        ],
        inputs=[("image", "IMAGE", [11]), ("width", "INT", [12])],
        outputs=[("IMAGE", "IMAGE", [14])],
    )


def with_scale_subgraph(
    *,
    mode: int = 0,
    inner_mode: int = 0,
    widgets: Any = None,
    width_link: bool = False,
) -> dict[str, Any]:
    source = node(1, "EmptyImage", outputs=[out("IMAGE", "IMAGE", [1])], widgets=[32, 32, 1, 0])
    host_inputs = [inp("image", "IMAGE", 1)]
    nodes = [source]
    links: list[list[Any]] = [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]]
    if width_link:
        nodes.append(
            node(4, "PrimitiveInt", outputs=[out("INT", "INT", [3])], widgets=[640, "fixed"])
        )
        host_inputs.append(inp("width", "INT", 3, widget=True))
        links.append([3, 4, 0, 2, 1, "INT"])
    host = node(
        2,
        SCALE_ID,
        inputs=host_inputs,
        outputs=[out("IMAGE", "IMAGE", [2])],
        widgets=widgets,
        mode=mode,
    )
    preview = node(3, "PreviewImage", inputs=[inp("images", "IMAGE", 2)])
    return workflow([*nodes, host, preview], links, [scale_subgraph(inner_mode)])


def test_subgraph_contents_with_an_inner_bypass_and_mute() -> None:
    bypassed = convert(with_scale_subgraph(inner_mode=4, widgets=[100]))
    assert set(bypassed) == {"1", "2:1", "3"}
    assert bypassed["3"]["inputs"] == {"images": ["2:1", 0]}
    assert bypassed["2:1"]["inputs"]["width"] == 100

    muted = convert(with_scale_subgraph(inner_mode=2))
    assert set(muted) == {"1", "2:1", "3"}
    assert muted["3"]["inputs"] == {}


def test_muted_subgraph_node_drops_its_contents_and_its_consumers_input() -> None:
    prompt = convert(with_scale_subgraph(mode=2))
    assert set(prompt) == {"1", "3"}
    assert prompt["3"]["inputs"] == {}


def test_bypassed_subgraph_node_passes_its_matching_input_through() -> None:
    prompt = convert(with_scale_subgraph(mode=4))
    assert set(prompt) == {"1", "3"}
    assert prompt["3"]["inputs"] == {"images": ["1", 0]}


def test_outer_link_into_a_promoted_widget_wins_over_its_value() -> None:
    prompt = convert(with_scale_subgraph(widgets=[100], width_link=True))
    assert prompt["2:1"]["inputs"]["width"] == ["4", 0]


def test_promoted_widget_values_saved_as_a_dict_or_with_control_values() -> None:
    by_name = convert(with_scale_subgraph(widgets={"width": 77}))
    assert by_name["2:1"]["inputs"]["width"] == 77
    unset = convert(with_scale_subgraph(widgets=[None]))
    assert unset["2:1"]["inputs"]["width"] == 64


def test_promoted_seed_with_a_saved_control_value() -> None:
    sampler = node(
        1,
        "KSampler",
        inputs=[inp("seed", "INT", 11, widget=True), inp("steps", "INT", 12, widget=True)],
        outputs=[out("LATENT", "LATENT", [13])],
        widgets=[1, "randomize", 20, 8, "euler", "normal", 1],
    )
    sub = subgraph(
        SCALE_ID,
        "Sampler",
        [sampler],
        [
            link_obj(11, -10, 0, 1, 0, "INT"),
            link_obj(12, -10, 1, 1, 1, "INT"),
            link_obj(13, 1, 0, -20, 0, "LATENT"),
        ],
        inputs=[("seed", "INT", [11]), ("steps", "INT", [12])],
        outputs=[("LATENT", "LATENT", [13])],
    )
    for saved in ([5, 30], [5, "fixed", 30]):
        host = node(2, SCALE_ID, outputs=[out("LATENT", "LATENT")], widgets=saved)
        inputs = convert(workflow([host], [], [sub]))["2:1"]["inputs"]
        assert (inputs["seed"], inputs["steps"]) == (5, 30)


def test_subgraph_output_not_connected_inside_leaves_the_input_unset() -> None:
    sub = scale_subgraph()
    sub["outputs"][0]["linkIds"] = []
    sub["links"] = [link for link in sub["links"] if link["target_id"] != -20]
    wf = with_scale_subgraph()
    wf["definitions"]["subgraphs"] = [sub]
    assert convert(wf)["3"]["inputs"] == {}


def test_nested_subgraph_ids_nest_their_prefixes() -> None:
    inner_id = "aaaaaaaa-0000-4000-8000-000000000001"
    outer_id = "aaaaaaaa-0000-4000-8000-000000000002"
    inner = subgraph(
        inner_id,
        "Inner",
        [
            node(
                2,
                "ImageInvert",
                inputs=[inp("image", "IMAGE", 1)],
                outputs=[out("IMAGE", "IMAGE", [2])],
            )
        ],
        [link_obj(1, -10, 0, 2, 0, "IMAGE"), link_obj(2, 2, 0, -20, 0, "IMAGE")],
        inputs=[("image", "IMAGE", [1])],
        outputs=[("IMAGE", "IMAGE", [2])],
    )
    outer = subgraph(
        outer_id,
        "Outer",
        [
            node(
                3, inner_id, inputs=[inp("image", "IMAGE", 1)], outputs=[out("IMAGE", "IMAGE", [2])]
            )
        ],
        [link_obj(1, -10, 0, 3, 0, "IMAGE"), link_obj(2, 3, 0, -20, 0, "IMAGE")],
        inputs=[("image", "IMAGE", [1])],
        outputs=[("IMAGE", "IMAGE", [2])],
    )
    host = node(
        5, outer_id, inputs=[inp("image", "IMAGE", 1)], outputs=[out("IMAGE", "IMAGE", [2])]
    )
    links = [[1, 1, 0, 5, 0, "IMAGE"], [2, 5, 0, 99, 0, "IMAGE"]]
    wf = image_chain([host], links)
    wf["definitions"]["subgraphs"] = [outer, inner]
    prompt = convert(wf)
    assert set(prompt) == {"1", "5:3:2", "99"}
    assert prompt["5:3:2"]["inputs"] == {"image": ["1", 0]}
    assert prompt["99"]["inputs"] == {"images": ["5:3:2", 0]}


# -- errors -----------------------------------------------------------------------------------


def error_of(document: Any, defs: Any = definitions) -> str:
    with pytest.raises(WorkflowError) as caught:
        workflow_to_prompt(document, defs)
    return str(caught.value)


def test_unknown_node_type_names_the_node_and_says_it_is_not_installed() -> None:
    message = error_of(workflow([node(12, "FancyUpscaler", title="Upscale 4x")], []))
    assert "node 12" in message
    assert "FancyUpscaler" in message
    assert "Upscale 4x" in message
    assert "not installed" in message


def test_unknown_node_type_inside_a_subgraph_names_its_path() -> None:
    wf = with_scale_subgraph()
    wf["definitions"]["subgraphs"][0]["nodes"][1]["type"] = "MysteryInvert"
    message = error_of(wf)
    assert "node 2:2" in message
    assert "MysteryInvert" in message


def test_unknown_node_types_that_do_not_run_are_fine() -> None:
    nodes = [node(1, "FancyUpscaler", mode=2), node(2, "OtherPack", mode=4), node(3, "EmptyImage")]
    assert set(convert(workflow(nodes, []))) == {"3"}


def test_subgraph_without_definition_and_legacy_group_nodes_say_how_to_fix() -> None:
    missing = error_of(workflow([node(4, "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b")], []))
    assert "node 4" in missing and "definitions.subgraphs" in missing

    grouped = workflow([node(5, "workflow>Upscale pack")], [])
    grouped["extra"]["groupNodes"] = {"workflow>Upscale pack": {"nodes": [], "links": []}}
    message = error_of(grouped)
    assert "node 5" in message and "group node" in message and "subgraph" in message


def test_missing_link_and_missing_origin_node() -> None:
    sampler = node(3, "VAEDecode", inputs=[inp("samples", "LATENT", 99), inp("vae", "VAE")])
    message = error_of(workflow([sampler], []))
    assert "node 3" in message and "link 99" in message

    orphan = workflow([sampler], [[99, 42, 0, 3, 0, "LATENT"]])
    message = error_of(orphan)
    assert "node 3" in message and "node 42" in message


def test_missing_link_behind_a_reroute_names_the_reroute() -> None:
    links = [[4, 4, 0, 99, 0, "IMAGE"]]
    message = error_of(image_chain([reroute(4, 77, [4])], links))
    assert "node 4 (Reroute)" in message and "link 77" in message


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"nodes": [5], "links": []}, "nodes[0]"),
        ({"nodes": [{"id": 1}], "links": []}, "node 1 has no 'type'"),
        ({"nodes": [{"type": "EmptyImage"}], "links": []}, "no valid 'id'"),
        (
            {"nodes": [{"id": 1, "type": "EmptyImage", "mode": "bypass"}], "links": []},
            "invalid mode",
        ),
        (
            {"nodes": [{"id": 1, "type": "EmptyImage", "widgets_values": 5}], "links": []},
            "widgets_values",
        ),
        (
            {"nodes": [{"id": 1, "type": "EmptyImage", "inputs": {}}], "links": []},
            "'inputs' must be a list",
        ),
        (
            {"nodes": [{"id": 1, "type": "EmptyImage", "inputs": [{"link": 1}]}], "links": []},
            "inputs[0]",
        ),
        (
            {
                "nodes": [{"id": 1, "type": "EmptyImage"}, {"id": 1, "type": "EmptyImage"}],
                "links": [],
            },
            "two nodes with id 1",
        ),
        ({"nodes": [], "links": [[1, 2]]}, "links[0] is malformed"),
        ({"nodes": [], "links": [{"id": 1, "origin_id": None}]}, "links[0] is malformed"),
        (
            {"nodes": [], "links": [], "definitions": {"subgraphs": [{"name": "x"}]}},
            "no string 'id'",
        ),
        ({"nodes": [], "links": [], "definitions": []}, "'definitions' must be an object"),
        ({"3": {"class_type": "SaveImage", "inputs": {}}}, "not an editor workflow"),
    ],
)
def test_malformed_structure(document: Any, fragment: str) -> None:
    assert fragment in error_of(document)


def test_reroute_loop_is_reported() -> None:
    nodes = [
        reroute(2, 2, [1]),
        reroute(3, 1, [2, 3]),
        node(4, "PreviewImage", inputs=[inp("images", "IMAGE", 3)]),
    ]
    links = [[1, 2, 0, 3, 0, "*"], [2, 3, 0, 2, 0, "*"], [3, 3, 0, 4, 0, "*"]]
    message = error_of(workflow(nodes, links))
    assert "node 4" in message and "loop" in message


def test_bypass_loop_is_reported() -> None:
    nodes = [
        node(
            2,
            "ImageInvert",
            inputs=[inp("image", "IMAGE", 2)],
            outputs=[out("IMAGE", "IMAGE", [1, 3])],
            mode=4,
        ),
        node(
            3,
            "ImageInvert",
            inputs=[inp("image", "IMAGE", 1)],
            outputs=[out("IMAGE", "IMAGE", [2])],
            mode=4,
        ),
        node(4, "PreviewImage", inputs=[inp("images", "IMAGE", 3)]),
    ]
    links = [[1, 2, 0, 3, 0, "IMAGE"], [2, 3, 0, 2, 0, "IMAGE"], [3, 2, 0, 4, 0, "IMAGE"]]
    assert "loop" in error_of(workflow(nodes, links))


def test_subgraph_that_contains_itself_is_reported() -> None:
    a_id = "aaaaaaaa-0000-4000-8000-00000000000a"
    b_id = "aaaaaaaa-0000-4000-8000-00000000000b"
    direct = subgraph(a_id, "Loop", [node(1, a_id)], [], [], [])
    message = error_of(workflow([node(7, a_id)], [], [direct]))
    assert "node 7:1" in message and "inside itself" in message

    a = subgraph(a_id, "A", [node(1, b_id)], [], [], [])
    b = subgraph(b_id, "B", [node(1, a_id)], [], [], [])
    assert "inside itself" in error_of(workflow([node(7, a_id)], [], [a, b]))


def test_nesting_deeper_than_the_limit_is_reported() -> None:
    ids = [f"cccccccc-0000-4000-8000-{i:012d}" for i in range(MAX_SUBGRAPH_DEPTH + 2)]
    subs = [
        subgraph(ids[i], f"level {i}", [node(1, ids[i + 1])], [], [], [])
        for i in range(len(ids) - 1)
    ]
    subs.append(subgraph(ids[-1], "bottom", [node(1, "EmptyImage")], [], [], []))
    message = error_of(workflow([node(1, ids[0])], [], subs))
    assert f"more than {MAX_SUBGRAPH_DEPTH} deep" in message
    # One level less than the limit is fine.
    shallow = subs[len(subs) - MAX_SUBGRAPH_DEPTH :]
    prompt = convert(workflow([node(1, shallow[0]["id"])], [], shallow))
    assert len(next(iter(prompt)).split(":")) == MAX_SUBGRAPH_DEPTH + 1


def test_link_to_a_subgraph_boundary_that_does_not_exist() -> None:
    wf = with_scale_subgraph()
    wf["links"][1] = [2, 2, 5, 3, 0, "IMAGE"]  # output 5 of a one-output subgraph
    message = error_of(wf)
    assert "output 5" in message and "node 3" in message

    outside = workflow(
        [node(3, "PreviewImage", inputs=[inp("images", "IMAGE", 1)])], [[1, -10, 0, 3, 0, "IMAGE"]]
    )
    assert "not a subgraph" in error_of(outside)


def test_malformed_node_definition_is_reported() -> None:
    def broken(class_type: str) -> Any:
        return {"input": {"required": {"x": 5}}}

    message = error_of(workflow([node(1, "Odd")], []), broken)
    assert "Odd" in message and "malformed" in message
    assert "malformed" in error_of(workflow([node(1, "Odd")], []), lambda _: ["not", "a", "dict"])


# -- scale --------------------------------------------------------------------------------------


def long_chain(length: int) -> dict[str, Any]:
    """EmptyImage → (invert, reroute) × length/2 → PreviewImage; every third invert bypassed."""
    nodes = [node(1, "EmptyImage", outputs=[out("IMAGE", "IMAGE", [1])])]
    links: list[list[Any]] = []
    for i in range(length):
        node_id, link_in, link_out = i + 2, i + 1, i + 2
        if i % 2 == 0:
            mode = 4 if i % 3 == 0 else 0
            nodes.append(
                node(node_id, "ImageInvert", inputs=[inp("image", "IMAGE", link_in)], mode=mode)
            )
        else:
            nodes.append(reroute(node_id, link_in, [link_out]))
        links.append([link_in, node_id - 1, 0, node_id, 0, "IMAGE"])
    last = length + 1
    nodes.append(node(last + 1, "PreviewImage", inputs=[inp("images", "IMAGE", last + 1)]))
    links.append([last + 1, last, 0, last + 1, 0, "IMAGE"])
    return workflow(nodes, links)


def test_ten_thousand_node_chain_converts_without_recursion() -> None:
    prompt = convert(long_chain(10_000))
    inverts = [key for key, entry in prompt.items() if entry["class_type"] == "ImageInvert"]
    assert len(inverts) == sum(1 for i in range(0, 10_000, 2) if i % 3 != 0)
    # Walking back from the preview reaches the source through every surviving invert.
    current, seen = prompt["10002"]["inputs"]["images"][0], 0
    while current != "1":
        current = prompt[current]["inputs"]["image"][0]
        seen += 1
    assert seen == len(inverts)


def test_many_consumers_of_one_long_reroute_chain() -> None:
    nodes = [node(1, "EmptyImage", outputs=[out("IMAGE", "IMAGE", [1])])]
    links: list[list[Any]] = []
    for i in range(2, 3002):
        nodes.append(reroute(i, i - 1, [i]))
        links.append([i - 1, i - 1, 0, i, 0, "IMAGE"])
    for i in range(3002, 6002):
        nodes.append(node(i, "ImageInvert", inputs=[inp("image", "IMAGE", 3001)]))
    links.append([3001, 3001, 0, 3002, 0, "IMAGE"])
    prompt = convert(workflow(nodes, links))
    assert len(prompt) == 3001
    assert all(
        entry["inputs"] == {"image": ["1", 0]} for key, entry in prompt.items() if key != "1"
    )


# -- only WorkflowError, whatever the input -------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(
        ["EmptyImage", "Reroute", "PrimitiveNode", "KSampler", "-10", "randomize", ""]
    ),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "type",
                    "mode",
                    "inputs",
                    "outputs",
                    "link",
                    "links",
                    "name",
                    "widget",
                    "widgets_values",
                    "nodes",
                    "origin_id",
                    "origin_slot",
                    "linkIds",
                    "definitions",
                    "subgraphs",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def converts_or_raises_workflow_error(document: Any) -> None:
    try:
        prompt = workflow_to_prompt(document, definitions)
    except WorkflowError as exc:
        assert str(exc)
        return
    for node_id, entry in prompt.items():
        assert isinstance(node_id, str)
        assert isinstance(entry["class_type"], str)
        assert isinstance(entry["inputs"], dict)
        json.dumps(entry, allow_nan=True)


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=st.lists(json_values, max_size=6),
    links=st.lists(json_values, max_size=6) | json_values,
    extra=st.dictionaries(st.sampled_from(["definitions", "extra", "version"]), json_values),
)
def test_random_documents_only_raise_workflow_error(nodes: Any, links: Any, extra: Any) -> None:
    converts_or_raises_workflow_error({"nodes": nodes, "links": links, **extra})
    converts_or_raises_workflow_error(nodes)
    converts_or_raises_workflow_error(extra)


def json_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            paths += json_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += json_paths(child, (*path, index))
    return paths


FIXTURE_DOCUMENTS = {
    name: load_fixture(name)
    for name in (
        "txt2img_v04.json",
        "reroutes_v1.json",
        "bypass_mute_v04.json",
        "subgraphs_v04.json",
    )
}
FIXTURE_PATHS = {name: json_paths(doc)[1:] for name, doc in FIXTURE_DOCUMENTS.items()}


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(FIXTURE_DOCUMENTS)))
def test_mutated_editor_files_only_raise_workflow_error(data: st.DataObject, name: str) -> None:
    document = copy.deepcopy(FIXTURE_DOCUMENTS[name])
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(FIXTURE_PATHS[name]))
        parent: Any = document
        try:
            for key in path[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
    converts_or_raises_workflow_error(document)


SUB_IDS = ["dddddddd-0000-4000-8000-000000000001", "dddddddd-0000-4000-8000-000000000002"]
NODE_TYPES = [
    *DEFINITIONS,
    "Reroute",
    "PrimitiveNode",
    "Note",
    "SetNode",
    "GetNode",
    "NotInstalled",
    *SUB_IDS,
]
SLOT_NAMES = ["image", "images", "seed", "clip", "model", "samples", "width", "first", "x", ""]
SLOT_TYPES = ["IMAGE", "INT", "*", "MODEL", "CLIP", "LATENT", "STRING", "IMAGE,MASK"]
widget_values = (
    st.none()
    | st.integers(-5, 5)
    | st.sampled_from(["fixed", "randomize", "", "x", "seed"])
    | st.lists(st.integers(), max_size=2)
)


@st.composite
def random_graph(draw: st.DrawFn, boundary: bool) -> tuple[list[dict[str, Any]], list[Any]]:
    """Nodes of real, virtual and subgraph types, wired at random (dangling ids included)."""
    ids = draw(st.lists(st.integers(1, 9), max_size=7, unique=True))
    link_ids = st.none() | st.integers(1, 14)
    nodes = []
    for node_id in ids:
        inputs = [
            {
                "name": name,
                "type": slot_type,
                "link": link,
                **({"widget": {"name": name}} if widget else {}),
            }
            for name, slot_type, link, widget in draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(SLOT_NAMES),
                        st.sampled_from(SLOT_TYPES),
                        link_ids,
                        st.booleans(),
                    ),
                    max_size=3,
                )
            )
        ]
        nodes.append(
            node(
                node_id,
                draw(st.sampled_from(NODE_TYPES)),
                inputs=inputs,
                outputs=[out("o", draw(st.sampled_from(SLOT_TYPES)))],
                widgets=draw(
                    st.none()
                    | st.lists(widget_values, max_size=8)
                    | st.dictionaries(st.sampled_from(SLOT_NAMES), widget_values, max_size=3)
                ),
                mode=draw(st.sampled_from([0, 0, 0, 2, 4, 1])),
            )
        )
    ends = st.sampled_from([*ids, 50] + ([-10, -20] if boundary else []))
    links = draw(
        st.lists(
            st.tuples(
                st.integers(1, 14),
                ends,
                st.integers(0, 2),
                ends,
                st.integers(0, 2),
                st.sampled_from(SLOT_TYPES),
            ),
            max_size=12,
        )
    )
    return nodes, [list(link) for link in links]


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(
    root=random_graph(boundary=False),
    inner=st.lists(random_graph(boundary=True), min_size=2, max_size=2),
    boundaries=st.lists(st.lists(st.sampled_from(SLOT_NAMES), max_size=3), min_size=4, max_size=4),
    schema_1=st.booleans(),
)
def test_random_wiring_only_raises_workflow_error(
    root: Any, inner: Any, boundaries: list[list[str]], schema_1: bool
) -> None:
    subgraphs = []
    for index, (nodes, links) in enumerate(inner):
        link_objects = [link_obj(*link) for link in links]
        ins = [
            (name, "*", [link[0] for link in links if link[1] == -10])
            for name in boundaries[2 * index]
        ]
        outs = [
            (name, "*", [link[0] for link in links if link[3] == -20][:1])
            for name in boundaries[2 * index + 1]
        ]
        subgraphs.append(subgraph(SUB_IDS[index], f"sub {index}", nodes, link_objects, ins, outs))
    nodes, links = root
    document = workflow(nodes, links, subgraphs)
    if schema_1:
        document["version"] = 1
        document["links"] = [link_obj(*link) for link in links]
    converts_or_raises_workflow_error(document)


def test_consumer_listed_before_the_subgraph_node_it_reads_from() -> None:
    wf = with_scale_subgraph(widgets=[100])
    wf["nodes"].reverse()  # the editor saves nodes in any order
    prompt = convert(wf)
    assert prompt["3"]["inputs"] == {"images": ["2:2", 0]}
    assert prompt["2:1"]["inputs"]["image"] == ["1", 0]


def test_boundary_links_are_found_without_link_ids() -> None:
    wf = with_scale_subgraph(widgets=[100])
    for boundary in (
        *wf["definitions"]["subgraphs"][0]["inputs"],
        *wf["definitions"]["subgraphs"][0]["outputs"],
    ):
        del boundary["linkIds"]
    prompt = convert(wf)
    assert prompt["3"]["inputs"] == {"images": ["2:2", 0]}
    assert prompt["2:1"]["inputs"]["width"] == 100


def test_default_input_is_a_widget_for_current_editors_and_skipped_for_older_ones() -> None:
    DEFINITIONS["TextRepeat"] = {
        "input": {
            "required": {
                "text": ["STRING", {"defaultInput": True}],
                "count": ["INT", {"default": 1}],
            }
        },
        "output": ["STRING"],
        "display_name": "Repeat Text",
    }
    try:
        assert single("TextRepeat", ["hi", 3]) == {"text": "hi", "count": 3}
        assert single("TextRepeat", [3]) == {"count": 3}
    finally:
        del DEFINITIONS["TextRepeat"]
