"""The info routes (spec §4.1): /object_info and its cache, /system_stats, /features,
/extensions, /i18n, /workflow_templates, each under `/x` and `/api/x`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from server_info_app import PACK, make_client, write, write_pack

from flowscope.server import frontend
from flowscope.server.routes.info import COMFYUI_VERSION, memory

torch.set_num_threads(1)


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_object_info_lists_builtins_and_packs(tmp_path: Path, prefix: str) -> None:
    client, ctx = make_client(tmp_path)
    response = client.get(f"{prefix}/object_info")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    info = response.json()
    assert set(info) == {entry.class_type for entry in ctx.registry}
    demo = info["DemoNode"]
    assert demo["python_module"] == f"custom_nodes.{PACK}"
    assert demo["display_name"] == "Demo node"
    assert demo["input"]["required"]["value"] == ["INT", {"default": 1}]
    assert info["LoadImage"]["python_module"] == "nodes"


def test_one_node_or_nothing(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    one = client.get("/api/object_info/DemoNode").json()
    assert list(one) == ["DemoNode"]
    assert one["DemoNode"] == json.loads(json.dumps(ctx.registry.node_info("DemoNode")))
    assert client.get("/api/object_info/NoSuchNode").json() == {}


def test_object_info_is_built_once_until_what_it_shows_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, ctx = make_client(tmp_path)
    builds: list[int] = []
    build = ctx.registry.object_info
    monkeypatch.setattr(ctx.registry, "object_info", lambda: (builds.append(1), build())[1])
    first = client.get("/api/object_info").content
    assert client.get("/object_info").content == first
    assert len(builds) == 1

    write(ctx.directories.models / "checkpoints" / "new.safetensors", "x")
    client.get("/api/object_info")
    assert len(builds) == 2  # a model folder changed: combos may list the new file

    from PIL import Image

    Image.new("RGB", (2, 2)).save(ctx.directories.input / "upload.png")
    load_image = client.get("/api/object_info").json()["LoadImage"]
    assert "upload.png" in load_image["input"]["required"]["image"][0]
    assert len(builds) == 3

    class Late:
        RETURN_TYPES = ()
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, object]:
            return {"required": {}}

    ctx.registry.register_mappings({"Late": Late}, python_module="custom_nodes.late")
    assert "Late" in client.get("/api/object_info").json()
    assert len(builds) == 4
    client.get("/api/object_info")
    assert len(builds) == 4


def test_a_node_that_cannot_describe_itself_is_left_out(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)

    class Broken:
        RETURN_TYPES = ()
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, object]:
            raise RuntimeError("no inputs today")

    ctx.registry.register_mappings({"Broken": Broken}, python_module="custom_nodes.broken")
    info = client.get("/api/object_info").json()
    assert "Broken" not in info and "DemoNode" in info
    one = client.get("/api/object_info/Broken")
    assert one.status_code == 500
    assert "no inputs today" in one.json()["error"]["message"]


def test_system_stats(tmp_path: Path) -> None:
    client, _ctx = make_client(tmp_path)
    stats = client.get("/api/system_stats").json()
    system = stats["system"]
    assert set(system) == {
        "os",
        "ram_total",
        "ram_free",
        "comfyui_version",
        "flowscope_version",
        "required_frontend_version",
        "installed_templates_version",
        "required_templates_version",
        "python_version",
        "pytorch_version",
        "embedded_python",
        "argv",
    }
    assert system["os"] == os.name
    assert system["comfyui_version"] == COMFYUI_VERSION
    assert system["required_frontend_version"] == frontend.frontend_version()
    assert system["pytorch_version"] == torch.__version__
    assert system["python_version"] == sys.version
    assert system["embedded_python"] is False
    assert system["argv"] == sys.argv
    page = os.sysconf("SC_PAGE_SIZE")
    assert system["ram_total"] == pytest.approx(page * os.sysconf("SC_PHYS_PAGES"), rel=0.05)
    assert 0 < system["ram_free"] <= system["ram_total"]
    device = stats["devices"][0]
    assert set(device) == {
        "name",
        "type",
        "index",
        "vram_total",
        "vram_free",
        "torch_vram_total",
        "torch_vram_free",
    }
    if not torch.cuda.is_available():
        assert device["type"] == "cpu" and device["index"] is None
        assert device["vram_total"] == system["ram_total"]


def test_memory_falls_back_to_sysconf(monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = open

    def no_proc(path: Any, *args: Any, **kwargs: Any) -> Any:
        if path == "/proc/meminfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    total, free = memory()
    page = os.sysconf("SC_PAGE_SIZE")
    assert total == page * os.sysconf("SC_PHYS_PAGES")
    assert 0 < free <= total


def test_features(tmp_path: Path) -> None:
    client, _ctx = make_client(tmp_path, max_upload_size=5 * 1024 * 1024)
    assert client.get("/api/features").json() == {
        "supports_preview_metadata": True,
        "max_upload_size": 5 * 1024 * 1024,
    }


def test_extensions_lists_the_builds_scripts_and_every_pack_script(tmp_path: Path) -> None:
    client, _ctx = make_client(tmp_path)
    scripts = client.get("/api/extensions").json()
    static = frontend.static_root(None)
    core = sorted(
        "/" + path.relative_to(static).as_posix() for path in static.glob("extensions/**/*.js")
    )
    assert core and sorted(s for s in scripts if s.startswith("/extensions/core/")) == core
    assert f"/extensions/{PACK}/js/demo.js" in scripts
    assert f"/extensions/{PACK}/sub/other.js" in scripts
    assert not any(s.endswith(".css") for s in scripts)
    for script in (f"/extensions/{PACK}/js/demo.js", core[0]):
        assert client.get(script).status_code == 200


def test_i18n_merges_every_packs_locales(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    # A second pack, later in order: it wins where both define a key, and merges elsewhere.
    later = ctx.directories.custom_nodes / "zz_pack" / "locales"
    write(later / "en" / "main.json", json.dumps({"demo": {"subtitle": "More"}, "zz": 1}))
    write(later / "en" / "settings.json", json.dumps({"Zz.Setting": {"name": "Z"}}))
    write(later / "de" / "main.json", "{not json")  # a broken file is skipped
    write(later / "de" / "commands.json", json.dumps({"zz": {"label": "Z"}}))
    assert client.get("/api/i18n").json() == {
        "en": {
            "demo": {"title": "Demo", "subtitle": "More"},
            "nodeDefs": {"DemoNode": {"x": "Demo"}},
            "zz": 1,
            "settings": {"Zz.Setting": {"name": "Z"}},
        },
        "fr": {"demo": {"title": "Démo"}},
        "de": {"commands": {"zz": {"label": "Z"}}},
    }


def test_i18n_without_locales_is_empty(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    for pack in ctx.directories.custom_nodes.iterdir():
        for locale in pack.glob("locales/*/*.json"):
            locale.unlink()
    assert client.get("/i18n").json() == {}


def test_workflow_templates_and_their_files(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    other = write_pack(ctx.directories.custom_nodes, "other_pack")
    write(other / "workflows" / "third.json", "{}")
    write(ctx.directories.custom_nodes / "plain_pack" / "__init__.py", "")
    assert client.get("/api/workflow_templates").json() == {
        PACK: ["first", "second"],
        "other_pack": ["first", "second", "third"],
    }
    first = client.get(f"/api/workflow_templates/{PACK}/first.json")
    assert first.status_code == 200
    assert first.json() == {"nodes": [], "links": []}
    assert client.get("/api/workflow_templates/other_pack/third.json").status_code == 200
    for missing in (
        f"/api/workflow_templates/{PACK}/none.json",
        "/api/workflow_templates/no_pack/first.json",
        f"/api/workflow_templates/{PACK}/..%2F__init__.py",
        "/api/workflow_templates/..%2F..%2Finput/x.json",
    ):
        assert client.get(missing).status_code == 404, missing


def test_global_subgraphs_come_from_pack_subgraph_folders(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    blueprint = {"nodes": [], "links": [], "definitions": {"subgraphs": []}}
    write(ctx.directories.custom_nodes / PACK / "subgraphs" / "upscale.json", json.dumps(blueprint))
    write(ctx.directories.custom_nodes / PACK / "subgraphs" / "readme.md", "not a subgraph")
    listed = client.get("/api/global_subgraphs").json()
    assert len(listed) == 1
    ((subgraph_id, entry),) = listed.items()
    assert entry == {
        "source": "custom_node",
        "name": "upscale",
        "path": f"{PACK}/subgraphs/upscale.json",
        "info": {"node_pack": PACK},
    }
    assert client.get("/api/global_subgraphs").json() == listed  # ids survive a reload
    one = client.get(f"/api/global_subgraphs/{subgraph_id}").json()
    assert json.loads(one.pop("data")) == blueprint
    assert one == entry
    assert client.get("/api/global_subgraphs/0123abc").status_code == 404


def test_no_subgraphs(tmp_path: Path) -> None:
    client, _ctx = make_client(tmp_path)
    assert client.get("/api/global_subgraphs").json() == {}
