"""`/users`, `/settings`, `/userdata` and `/v2/userdata` over HTTP: ComfyUI's shapes and status
codes, the frontend's `%2F`-encoded paths, and no way out of the requesting user's folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from route_test_app import make_app, make_client, make_context, served

from flowscope.server.context import ServerContext
from flowscope.server.routes import users
from flowscope.storage.user_settings import SETTINGS_FILE


@pytest.fixture
def ctx(tmp_path: Path) -> ServerContext:
    return make_context(tmp_path / "data")


@pytest.fixture
def client(ctx: ServerContext) -> TestClient:
    return make_client(ctx, users.router)


@pytest.fixture
def multi(tmp_path: Path) -> tuple[ServerContext, TestClient]:
    ctx = make_context(tmp_path / "multi", multi_user=True)
    return ctx, make_client(ctx, users.router)


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"]
    return dict(body["error"])


def user_dir(ctx: ServerContext, user: str = "default") -> Path:
    return ctx.directories.user / user


# --- /users ----------------------------------------------------------------------------------


def test_single_user_mode_reports_server_storage(ctx: ServerContext, client: TestClient) -> None:
    assert client.get("/api/users").json() == {"storage": "server", "migrated": False}
    user_dir(ctx).mkdir()
    assert client.get("/users").json() == {"storage": "server", "migrated": True}


def test_multi_user_mode_lists_and_creates_users(multi: tuple[ServerContext, TestClient]) -> None:
    ctx, client = multi
    assert client.get("/users").json() == {"storage": "server", "users": {}}
    reply = client.post("/users", json={"username": "Ann Lee"})
    assert reply.status_code == 200
    user_id = reply.json()
    assert re.fullmatch(r"Ann-Lee_[0-9a-f-]{36}", user_id)
    assert client.get("/users").json() == {"storage": "server", "users": {user_id: "Ann Lee"}}
    stored = json.loads((ctx.directories.user / "users.json").read_text())
    assert stored == {user_id: "Ann Lee"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"username": "ann"}, "Duplicate username."),
        ({"username": ""}, "username not provided"),
        ({"username": "__system"}, "System User prefix not allowed"),
        ({"username": 7}, "username must be a string"),
        ({}, "username must be a string"),
    ],
)
def test_bad_new_users_get_comfyuis_error_shape(
    multi: tuple[ServerContext, TestClient], body: dict[str, Any], message: str
) -> None:
    _ctx, client = multi
    client.post("/users", json={"username": "ann"})
    reply = client.post("/users", json=body)
    assert reply.status_code == 400
    assert reply.json() == {"error": message}


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"\xff"])
def test_a_malformed_users_body_is_400(client: TestClient, body: bytes) -> None:
    reply = client.post("/users", content=body)
    assert reply.status_code == 400
    assert error(reply)["type"] == "invalid_json"


# --- /settings -------------------------------------------------------------------------------


def test_settings_round_trip(ctx: ServerContext, client: TestClient) -> None:
    assert client.get("/api/settings").json() == {}
    assert client.get("/api/settings/Comfy.Locale").json() is None
    reply = client.post("/api/settings", json={"Comfy.Locale": "en", "Comfy.X": 1})
    assert (reply.status_code, reply.content) == (200, b"")
    # The frontend encodes the id; an id with a slash survives.
    assert client.post("/api/settings/Comfy.A%2FB", content=b'{"deep": [1]}').status_code == 200
    assert client.post("/api/settings/Comfy.X", content=b"2").status_code == 200
    expected = {"Comfy.Locale": "en", "Comfy.X": 2, "Comfy.A/B": {"deep": [1]}}
    assert client.get("/settings").json() == expected
    assert client.get("/settings/Comfy.A%2FB").json() == {"deep": [1]}
    assert json.loads((user_dir(ctx) / SETTINGS_FILE).read_text()) == expected


@pytest.mark.parametrize(
    ("path", "body"),
    [("/settings", b"[1]"), ("/settings", b"{oops"), ("/settings", b""), ("/settings/x", b"nan?")],
)
def test_malformed_settings_bodies_are_400(
    ctx: ServerContext, client: TestClient, path: str, body: bytes
) -> None:
    client.post("/settings", json={"kept": True})
    reply = client.post(path, content=body)
    assert reply.status_code == 400
    assert error(reply)["type"] == "invalid_json"
    assert client.get("/settings").json() == {"kept": True}


def test_a_damaged_settings_file_reads_empty_and_is_kept(
    ctx: ServerContext, client: TestClient
) -> None:
    user_dir(ctx).mkdir()
    (user_dir(ctx) / SETTINGS_FILE).write_text('{"half": ')
    assert client.get("/settings").json() == {}
    client.post("/settings", json={"fresh": 1})
    assert client.get("/settings").json() == {"fresh": 1}
    assert (user_dir(ctx) / (SETTINGS_FILE + ".bad")).read_text() == '{"half": '


def test_unknown_users_get_401_for_settings_and_userdata(
    multi: tuple[ServerContext, TestClient],
) -> None:
    _ctx, client = multi
    for headers in ({}, {"comfy-user": ""}, {"comfy-user": "ghost"}, {"comfy-user": "__sys"}):
        for method, path in (
            ("GET", "/settings"),
            ("GET", "/settings/x"),
            ("POST", "/settings"),
            ("GET", "/userdata?dir=workflows"),
            ("GET", "/userdata/a.json"),
            ("POST", "/userdata/a.json"),
            ("DELETE", "/userdata/a.json"),
        ):
            reply = client.request(method, path, headers=headers, content=b"{}")
            assert reply.status_code == 401, (method, path, headers)
            assert error(reply)["type"] == "unknown_user"
        assert client.get("/v2/userdata", headers=headers).status_code == 403


def test_each_user_has_their_own_settings_and_files(
    multi: tuple[ServerContext, TestClient],
) -> None:
    ctx, client = multi
    ann = client.post("/users", json={"username": "ann"}).json()
    bob = client.post("/users", json={"username": "bob"}).json()
    client.post("/settings", json={"who": "ann"}, headers={"comfy-user": ann})
    client.post("/settings", json={"who": "bob"}, headers={"comfy-user": bob})
    client.post("/userdata/workflows%2Fa.json", content=b"ann's", headers={"comfy-user": ann})
    assert client.get("/settings", headers={"comfy-user": ann}).json() == {"who": "ann"}
    assert client.get("/settings", headers={"comfy-user": bob}).json() == {"who": "bob"}
    assert (
        client.get("/userdata/workflows%2Fa.json", headers={"comfy-user": bob}).status_code == 404
    )
    escape = client.get(f"/userdata/..%2F{ann}%2Fworkflows%2Fa.json", headers={"comfy-user": bob})
    assert escape.status_code == 403
    assert (user_dir(ctx, ann) / "workflows" / "a.json").read_bytes() == b"ann's"


# --- /userdata -------------------------------------------------------------------------------


def test_store_read_and_delete_a_workflow(ctx: ServerContext, client: TestClient) -> None:
    body = b'{"nodes": []}'
    reply = client.post(
        "/api/userdata/workflows%2Fa%20b.json?overwrite=true&full_info=false", content=body
    )
    assert (reply.status_code, reply.json()) == (200, "workflows/a b.json")
    assert (user_dir(ctx) / "workflows" / "a b.json").read_bytes() == body
    got = client.get("/api/userdata/workflows%2Fa%20b.json")
    assert got.status_code == 200
    assert got.content == body
    assert got.headers["content-type"] == "application/json"
    assert got.headers["content-disposition"] == "attachment"
    assert got.headers["x-content-type-options"] == "nosniff"
    deleted = client.delete("/api/userdata/workflows%2Fa%20b.json")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert client.get("/api/userdata/workflows%2Fa%20b.json").status_code == 404
    assert client.delete("/api/userdata/workflows%2Fa%20b.json").status_code == 404


def test_full_info_and_overwrite_false(client: TestClient) -> None:
    reply = client.post("/userdata/a.json?full_info=true", content=b"12345")
    info = reply.json()
    assert set(info) == {"path", "size", "modified", "created"}
    assert (info["path"], info["size"]) == ("a.json", 5)
    assert isinstance(info["modified"], int)
    conflict = client.post("/userdata/a.json?overwrite=false", content=b"other")
    assert conflict.status_code == 409
    assert client.get("/userdata/a.json").content == b"12345"
    # The frontend sends overwrite=undefined when it does not care: that overwrites.
    assert client.post("/userdata/a.json?overwrite=undefined", content=b"new").status_code == 200
    assert client.get("/userdata/a.json").content == b"new"


def test_user_css_is_served_as_css_and_markup_is_a_download(client: TestClient) -> None:
    client.post("/userdata/user.css", content=b"body { color: red }")
    css = client.get("/api/userdata/user.css")
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["content-disposition"] == "inline"
    client.post("/userdata/x%2Fuser.css", content=b"a {}")
    nested = client.get("/api/userdata/x%2Fuser.css")
    assert nested.headers["content-type"] == "application/octet-stream"
    client.post("/userdata/page.html", content=b"<script>alert(1)</script>")
    page = client.get("/userdata/page.html")
    assert page.headers["content-type"] == "application/octet-stream"
    assert page.headers["content-disposition"] == "attachment"


def test_move(ctx: ServerContext, client: TestClient) -> None:
    client.post("/userdata/workflows%2Fa.json", content=b"A")
    client.post("/userdata/workflows%2Fb.json", content=b"B")
    conflict = client.post("/userdata/workflows%2Fa.json/move/workflows%2Fb.json?overwrite=false")
    assert conflict.status_code == 409
    # A destination with a folder called "move" in it is still one encoded segment.
    moved = client.post("/api/userdata/workflows%2Fa.json/move/workflows%2Fmove%2Fc.json")
    assert (moved.status_code, moved.json()) == (200, "workflows/move/c.json")
    assert (user_dir(ctx) / "workflows" / "move" / "c.json").read_bytes() == b"A"
    assert not (user_dir(ctx) / "workflows" / "a.json").exists()
    info = client.post(
        "/userdata/workflows%2Fmove%2Fc.json/move/workflows%2Fb.json?overwrite=true&full_info=true"
    ).json()
    assert (info["path"], info["size"]) == ("workflows/b.json", 1)
    assert client.get("/userdata/workflows%2Fb.json").content == b"A"
    missing = client.post("/userdata/nothing.json/move/x.json")
    assert missing.status_code == 404


def test_a_file_named_like_a_move_is_written_not_moved(
    ctx: ServerContext, client: TestClient
) -> None:
    reply = client.post("/userdata/a%2Fmove%2Fb.json", content=b"data")
    assert (reply.status_code, reply.json()) == (200, "a/move/b.json")
    assert (user_dir(ctx) / "a" / "move" / "b.json").read_bytes() == b"data"


def test_listing(client: TestClient) -> None:
    for name in (
        "workflows%2Fa.json",
        "workflows%2Fsub%2Fb.json",
        "workflows%2F.hidden",
        "top.json",
    ):
        client.post(f"/userdata/{name}", content=b"xy")
    assert client.get("/userdata?dir=workflows").json() == ["a.json"]
    assert client.get("/userdata?dir=workflows&recurse=true").json() == ["a.json", "sub/b.json"]
    assert client.get("/userdata?dir=workflows&recurse=true&split=true").json() == [
        ["a.json", "a.json"],
        ["sub/b.json", "sub", "b.json"],
    ]
    full = client.get("/api/userdata?dir=workflows&recurse=true&split=false&full_info=true").json()
    assert [(item["path"], item["size"]) for item in full] == [("a.json", 2), ("sub/b.json", 2)]
    assert set(full[0]) == {"path", "size", "modified", "created"}


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 400),
        ("?dir=", 400),
        ("?dir=..", 403),
        ("?dir=%2Fetc", 403),
        ("?dir=a%2F..%2F..", 403),
        ("?dir=a%00", 400),
        ("?dir=missing", 404),
        ("?dir=top.json", 400),
    ],
)
def test_listing_errors(client: TestClient, query: str, status: int) -> None:
    client.post("/userdata/top.json", content=b"x")
    reply = client.get(f"/userdata{query}")
    assert reply.status_code == status
    assert error(reply)["message"]


def test_v2_listing(ctx: ServerContext, client: TestClient) -> None:
    assert client.get("/api/v2/userdata").json() == []  # no folder yet
    client.post("/userdata/workflows%2Fa.json", content=b"abc")
    client.post("/userdata/workflows%2Fsub%2Fb.json", content=b"b")
    entries = client.get("/api/v2/userdata?path=workflows").json()
    assert [(entry["type"], entry["path"]) for entry in entries] == [
        ("directory", "workflows/sub"),
        ("file", "workflows/a.json"),
        ("file", "workflows/sub/b.json"),
    ]
    assert entries[1]["name"] == "a.json"
    assert entries[1]["size"] == 3
    assert isinstance(entries[1]["modified"], float)
    root = client.get("/v2/userdata").json()
    assert {"name": "workflows", "path": "workflows", "type": "directory"} in root
    assert len(root) == 4


@pytest.mark.parametrize(
    ("query", "status"),
    [("?path=..", 400), ("?path=%2Fetc", 400), ("?path=nope", 404), ("?path=f.json", 400)],
)
def test_v2_listing_errors(client: TestClient, query: str, status: int) -> None:
    client.post("/userdata/f.json", content=b"x")
    assert client.get(f"/v2/userdata{query}").status_code == status


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("..%2Fusers.json", 403),
        ("%2e%2e%2Fusers.json", 403),
        ("%2E%2E%2F%2E%2E%2Fsecret.txt", 403),
        ("workflows%2F..%2F..%2Fusers.json", 403),
        ("%2Fetc%2Fpasswd", 403),
        ("..%5Cusers.json", 400),
        ("a%00b.json", 400),
        ("%ff%fe.json", 400),
        ("%2F", 403),
        ("%2E", 400),
    ],
)
def test_paths_out_of_the_user_folder_are_refused_for_every_method(
    ctx: ServerContext, client: TestClient, path: str, status: int
) -> None:
    users_file = ctx.directories.user / "users.json"
    users_file.write_text('{"default": "default"}')
    secret = ctx.directories.base / "secret.txt"
    secret.write_text("secret")
    for method in ("GET", "POST", "DELETE"):
        reply = client.request(method, f"/userdata/{path}", content=b"evil")
        assert reply.status_code == status, (method, path, reply.text)
        assert error(reply)["message"]
    moved = client.post(f"/userdata/{path}/move/x.json")
    assert moved.status_code == status
    client.post("/userdata/ok.json", content=b"ok")
    assert client.post(f"/userdata/ok.json/move/{path}").status_code == status
    assert users_file.read_text() == '{"default": "default"}'
    assert secret.read_text() == "secret"


def test_a_symlink_out_of_the_user_folder_is_refused(
    ctx: ServerContext, client: TestClient, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text("secret")
    user_dir(ctx).mkdir()
    (user_dir(ctx) / "link").symlink_to(outside)
    assert client.get("/userdata/link%2Fsecret.json").status_code == 403
    assert client.post("/userdata/link%2Fnew.json", content=b"x").status_code == 403
    assert not (outside / "new.json").exists()
    assert client.get("/userdata?dir=link").status_code == 403


def test_missing_names_are_400(client: TestClient) -> None:
    assert client.get("/userdata/").status_code == 400
    assert client.post("/userdata/", content=b"x").status_code == 400
    client.post("/userdata/a.json", content=b"x")
    assert client.post("/userdata/a.json/move/").status_code == 400


def test_a_folder_is_neither_read_nor_deleted_nor_overwritten(client: TestClient) -> None:
    client.post("/userdata/workflows%2Fa.json", content=b"x")
    assert client.get("/userdata/workflows").status_code == 400
    assert client.delete("/userdata/workflows").status_code == 400
    assert client.post("/userdata/workflows", content=b"x").status_code == 409
    assert client.post("/userdata/workflows%2Fa.json/move/workflows").status_code == 409


@pytest.mark.slow
def test_encoded_paths_survive_a_real_server(ctx: ServerContext) -> None:
    """uvicorn hands over the raw path, so `%2F` inside one segment is told apart from `/`."""
    with served(make_app(ctx, users.router)) as url, httpx.Client(base_url=url) as http:
        assert http.post("/api/userdata/a%2Fmove%2Fb.json", content=b"1").json() == "a/move/b.json"
        moved = http.post("/api/userdata/a%2Fmove%2Fb.json/move/c%2Fd.json?overwrite=false")
        assert moved.json() == "c/d.json"
        assert http.get("/api/userdata/c%2Fd.json").content == b"1"
        assert http.get("/api/userdata/%2e%2e%2Fusers.json").status_code == 403
        assert http.get("/api/userdata/c%2F%2e%2e%2F%2e%2e%2Fusers.json").status_code == 403
    assert (user_dir(ctx) / "c" / "d.json").read_bytes() == b"1"
