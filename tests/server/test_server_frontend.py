"""The editor's files: index.html at `/`, the static build behind the API routes, packs' web
folders at /extensions/<pack>/, the template library, and a clear error without a frontend."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from server_info_app import PACK, make_app, make_client, make_context, write

from flowscope.server import frontend


def test_the_editor_is_served_at_the_root(tmp_path: Path) -> None:
    client, _ctx = make_client(tmp_path)
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert page.text == (frontend.static_root(None) / "index.html").read_text()
    scripts = re.findall(r'src="\./(assets/[^"]+\.js)"', page.text)
    assert scripts
    for script in scripts:
        assert client.get("/" + script).status_code == 200
    assert client.head("/").status_code == 200


def test_the_static_root_does_not_shadow_the_api(tmp_path: Path) -> None:
    client, _ctx = make_client(tmp_path)
    assert client.get("/api/features").json()["supports_preview_metadata"] is True
    assert client.get("/object_info/DemoNode").json()["DemoNode"]["name"] == "DemoNode"
    assert client.get("/user.css").status_code == 404
    assert client.get("/no/such/file.js").status_code == 404


def test_pack_web_folders_and_core_extensions(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    demo = client.get(f"/extensions/{PACK}/js/demo.js")
    assert demo.status_code == 200
    assert demo.text == "export const demo = 1;\n"
    assert "javascript" in demo.headers["content-type"]
    assert client.get(f"/extensions/{PACK}/style.css").status_code == 200
    assert client.head(f"/extensions/{PACK}/js/demo.js").status_code == 200
    write(ctx.directories.custom_nodes / PACK / "secret.txt", "not in the web folder")
    for escape in (
        f"/extensions/{PACK}/..%2Fsecret.txt",
        f"/extensions/{PACK}/%2E%2E/secret.txt",
        "/extensions/..%2F..%2Fcustom_nodes/secret.txt",
        f"/extensions/{PACK}/missing.js",
        "/extensions/no_pack/x.js",
    ):
        assert client.get(escape).status_code == 404, escape
    core = sorted(frontend.static_root(None).glob("extensions/core/*.js"))[0]
    assert client.get(f"/extensions/core/{core.name}").content == core.read_bytes()


def test_without_the_templates_package_the_library_is_empty(tmp_path: Path) -> None:
    assert frontend.templates_root() is None
    client, _ctx = make_client(tmp_path)
    index = client.get("/templates/index.json")
    assert index.status_code == 200
    assert index.json() == []
    assert client.get("/templates/index_logo.json").json() == {}
    assert client.get("/templates/default.json").status_code == 404


def test_an_installed_templates_package_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    write(site / "comfyui_workflow_templates" / "__init__.py", "")
    write(site / "comfyui_workflow_templates" / "templates" / "index.json", '[{"x": 1}]')
    write(site / "comfyui_workflow_templates" / "templates" / "default.json", "{}")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "comfyui_workflow_templates", raising=False)
    try:
        client, _ctx = make_client(tmp_path / "base")
        assert client.get("/templates/index.json").json() == [{"x": 1}]
        assert client.get("/templates/default.json").json() == {}
    finally:
        # The import above would outlive the test and leak this fake package into later
        # servers in the same process (the browser tests saw its templates folder).
        sys.modules.pop("comfyui_workflow_templates", None)


def test_a_front_end_root_replaces_the_package(tmp_path: Path) -> None:
    root = tmp_path / "my-build"
    write(root / "index.html", "<html>mine</html>")
    write(root / "assets" / "app.js", "console.log(1)")
    client, _ctx = make_client(tmp_path / "base", front_end_root=root)
    assert client.get("/").text == "<html>mine</html>"
    assert client.get("/assets/app.js").text == "console.log(1)"
    assert client.get("/api/extensions").json()[0] == f"/extensions/{PACK}/js/demo.js"


def test_a_missing_frontend_is_a_clear_start_up_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_context(tmp_path / "base", front_end_root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"--front-end-root .*nowhere: no index\.html"):
        make_app(ctx)
    monkeypatch.setattr(frontend, "FRONTEND_PACKAGE", "no_such_frontend_package")
    with pytest.raises(FileNotFoundError, match="pip install comfyui-frontend-package"):
        frontend.static_root(None)


def test_static_root_is_the_installed_package() -> None:
    root = frontend.static_root(None)
    assert (root / "index.html").is_file()
    assert root.parent.name == "comfyui_frontend_package"
    assert frontend.frontend_version() is not None
