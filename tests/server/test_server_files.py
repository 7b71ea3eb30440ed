"""`/view`, `/upload/image` and `/upload/mask` over HTTP: ComfyUI's request and response shapes,
status codes and naming, plus our clear 400s for bad input."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from route_test_app import make_client, make_context

from flowscope.server.context import ServerContext
from flowscope.server.file_serving import SMALL_FILE_BYTES
from flowscope.server.routes import files


@pytest.fixture
def ctx(tmp_path: Path) -> ServerContext:
    return make_context(tmp_path / "data")


@pytest.fixture
def client(ctx: ServerContext) -> TestClient:
    return make_client(ctx, files.router)


def png(color: tuple[int, ...] = (255, 0, 0, 128), size: tuple[int, int] = (4, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA" if len(color) == 4 else "RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(client: TestClient, name: str, data: bytes, **fields: str) -> httpx.Response:
    reply: httpx.Response = client.post(
        "/upload/image", files={"image": (name, data, "image/png")}, data=fields
    )
    return reply


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"]
    return dict(body["error"])


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- /upload/image ---------------------------------------------------------------------------


def test_an_upload_is_saved_in_input_with_comfyui_reply(
    ctx: ServerContext, client: TestClient
) -> None:
    reply = upload(client, "x.png", png())
    assert reply.status_code == 200
    assert reply.json() == {"name": "x.png", "subfolder": "", "type": "input"}
    assert (ctx.directories.input / "x.png").read_bytes() == png()


def test_same_bytes_reuse_the_name_and_different_bytes_are_numbered(
    ctx: ServerContext, client: TestClient
) -> None:
    assert upload(client, "x.png", png()).json()["name"] == "x.png"
    assert upload(client, "x.png", png()).json()["name"] == "x.png"
    assert upload(client, "x.png", png((0, 255, 0, 255))).json()["name"] == "x (1).png"
    assert upload(client, "x.png", png((0, 0, 255, 255))).json()["name"] == "x (2).png"
    assert sorted(os.listdir(ctx.directories.input)) == ["x (1).png", "x (2).png", "x.png"]


@pytest.mark.parametrize("flag", ["true", "1", "TRUE"])
def test_overwrite_replaces(ctx: ServerContext, client: TestClient, flag: str) -> None:
    upload(client, "x.png", png())
    reply = upload(client, "x.png", png((1, 2, 3)), overwrite=flag)
    assert reply.json()["name"] == "x.png"
    assert (ctx.directories.input / "x.png").read_bytes() == png((1, 2, 3))


def test_type_and_subfolder_pick_the_folder(ctx: ServerContext, client: TestClient) -> None:
    reply = upload(client, "x.png", png(), type="temp", subfolder="masks/a")
    assert reply.json() == {"name": "x.png", "subfolder": "masks/a", "type": "temp"}
    assert (ctx.directories.temp / "masks" / "a" / "x.png").exists()
    reply = client.post(
        "/api/upload/image",
        files={"image": ("o.png", png(), "image/png")},
        data={"type": "output"},
    )
    assert reply.json() == {"name": "o.png", "subfolder": "", "type": "output"}
    assert (ctx.directories.output / "o.png").exists()


def test_the_hashing_function_comes_from_the_settings(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, default_hashing_function="md5")
    client = make_client(ctx, files.router)
    assert upload(client, "x.png", png()).json()["name"] == "x.png"
    assert upload(client, "x.png", png()).json()["name"] == "x.png"
    with pytest.raises(ValueError, match="unknown hashing function"):
        files.router(make_context(tmp_path / "b", default_hashing_function="crc0"))


@pytest.mark.parametrize(
    ("fields", "error_type", "fragment"),
    [
        ({"type": "models"}, "invalid_type", "unknown type 'models'"),
        ({"subfolder": "../../etc"}, "forbidden_path", "leaves the input folder"),
        ({"subfolder": "/etc"}, "forbidden_path", "leaves the input folder"),
        ({"subfolder": "a\x00"}, "invalid_filename", "NUL"),
    ],
)
def test_bad_upload_fields_are_400(
    ctx: ServerContext, client: TestClient, fields: dict[str, str], error_type: str, fragment: str
) -> None:
    reply = upload(client, "x.png", png(), **fields)
    assert reply.status_code == 400
    body = error(reply)
    assert body["type"] == error_type
    assert fragment in body["message"]
    assert not (ctx.directories.base / "etc").exists()


@pytest.mark.parametrize("name", ["../x.png", "a/b.png", "..", "."])
def test_upload_names_with_a_folder_part_are_400(
    ctx: ServerContext, client: TestClient, name: str
) -> None:
    reply = upload(client, name, png())
    assert reply.status_code == 400
    assert error(reply)["type"] == "invalid_filename"
    assert os.listdir(ctx.directories.input) == []


def test_a_windows_client_path_keeps_only_its_file_name(client: TestClient) -> None:
    # Old browsers send the whole local path; the multipart parser keeps its last part.
    assert upload(client, "C:\\Users\\me\\x.png", png()).json()["name"] == "x.png"


def test_a_missing_image_field_is_400_with_a_message(client: TestClient) -> None:
    for reply in (
        client.post("/upload/image", data={"type": "input"}),
        client.post("/upload/image", files={"other": ("x.png", png(), "image/png")}),
        client.post("/upload/image", data={"image": "not a file"}),
        client.post("/upload/image", json={"image": "x"}),
        client.post("/upload/image"),
    ):
        assert reply.status_code == 400
        assert error(reply)["type"] == "missing_image"
        assert "image field" in error(reply)["message"]


def test_an_image_without_a_file_name_is_400(client: TestClient) -> None:
    reply = client.post("/upload/image", files={"image": ("", png(), "image/png")})
    assert reply.status_code == 400


def test_a_file_given_for_a_text_field_is_400(client: TestClient) -> None:
    reply = client.post(
        "/upload/image",
        files={"image": ("x.png", png(), "image/png"), "subfolder": ("s", b"x", "text/plain")},
    )
    assert reply.status_code == 400
    assert "subfolder field must be text" in error(reply)["message"]


@pytest.mark.parametrize(
    ("content_type", "body", "fragment"),
    [
        ("multipart/form-data", b"--x\r\n", "Missing boundary"),
        (
            "multipart/form-data; boundary=zz",
            b"--zz\r\nContent-Disposition: form-data\r\n\r\nx",
            '"name" must be provided',
        ),
        ("multipart/form-data; boundary=zz", b"--zz\r\n\x00\x01garbage", "Invalid multipart"),
        ("multipart/form-data; boundary=zz", b"garbage" * 10, "Invalid multipart"),
    ],
)
def test_malformed_multipart_is_400_with_a_message(
    client: TestClient, content_type: str, body: bytes, fragment: str
) -> None:
    reply = client.post("/upload/image", content=body, headers={"content-type": content_type})
    assert reply.status_code == 400
    assert error(reply)["type"] == "invalid_multipart"
    assert fragment in error(reply)["message"]


def test_a_truncated_upload_is_400(ctx: ServerContext, client: TestClient) -> None:
    body = b'--zz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\nabc'
    reply = client.post(
        "/upload/image",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=zz"},
    )
    assert reply.status_code == 400
    assert os.listdir(ctx.directories.input) == []


# --- /view -----------------------------------------------------------------------------------


def put(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_view_serves_the_file_with_comfyui_headers(ctx: ServerContext, client: TestClient) -> None:
    put(ctx.directories.output, "ComfyUI_00001_.png", png())
    reply = client.get(
        "/view", params={"filename": "ComfyUI_00001_.png"}
    )  # type defaults to output
    assert reply.status_code == 200
    assert reply.content == png()
    assert reply.headers["content-type"] == "image/png"
    assert reply.headers["content-disposition"] == 'filename="ComfyUI_00001_.png"'
    assert reply.headers["content-length"] == str(len(png()))
    assert client.get("/api/view", params={"filename": "ComfyUI_00001_.png"}).content == png()


def test_view_reads_type_subfolder_and_annotations(ctx: ServerContext, client: TestClient) -> None:
    put(ctx.directories.input, "in.png", b"in")
    put(ctx.directories.temp / "a" / "b", "t.png", b"temp")
    assert client.get("/view", params={"filename": "in.png", "type": "input"}).content == b"in"
    assert client.get("/view", params={"filename": "in.png [input]"}).content == b"in"
    assert (
        client.get("/view", params={"filename": "in.png [input]", "type": "temp"}).content == b"in"
    )
    reply = client.get("/view", params={"filename": "t.png", "type": "temp", "subfolder": "a/b"})
    assert reply.content == b"temp"


def test_a_revalidation_with_the_etag_is_304(ctx: ServerContext, client: TestClient) -> None:
    put(ctx.directories.output, "x.png", png())
    first = client.get("/view", params={"filename": "x.png"})
    etag = first.headers["etag"]
    again = client.get("/view", params={"filename": "x.png"}, headers={"if-none-match": etag})
    assert (again.status_code, again.content) == (304, b"")
    other = client.get("/view", params={"filename": "x.png"}, headers={"if-none-match": '"x"'})
    assert other.status_code == 200


def test_a_large_file_streams_with_ranges_and_the_same_validators(
    ctx: ServerContext, client: TestClient
) -> None:
    data = os.urandom(SMALL_FILE_BYTES + 10)
    put(ctx.directories.output, "clip.mp4", data)
    whole = client.get("/view", params={"filename": "clip.mp4"})
    assert whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["content-disposition"] == 'filename="clip.mp4"'
    part = client.get("/view", params={"filename": "clip.mp4"}, headers={"range": "bytes=5-9"})
    assert (part.status_code, part.content) == (206, data[5:10])
    etag = whole.headers["etag"]
    cached = client.get("/view", params={"filename": "clip.mp4"}, headers={"if-none-match": etag})
    assert cached.status_code == 304


def test_head_answers_headers_only(ctx: ServerContext, client: TestClient) -> None:
    put(ctx.directories.output, "x.png", png())
    reply = client.head("/view", params={"filename": "x.png"})
    assert reply.status_code == 200
    assert reply.headers["content-length"] == str(len(png()))


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("page.html", "application/octet-stream"),
        ("page.htm", "application/octet-stream"),
        ("script.js", "application/octet-stream"),
        ("style.css", "application/octet-stream"),
        ("vector.svg", "application/octet-stream"),
        ("clip.mp4", "video/mp4"),
        ("photo.jpg", "image/jpeg"),
        ("blob", "application/octet-stream"),
    ],
)
def test_markup_and_script_are_served_as_downloads(
    ctx: ServerContext, client: TestClient, name: str, media_type: str
) -> None:
    put(ctx.directories.output, name, b"<script>alert(1)</script>")
    reply = client.get("/view", params={"filename": name})
    assert reply.status_code == 200
    assert reply.headers["content-type"].split(";")[0] == media_type
    assert reply.headers["x-content-type-options"] == "nosniff"


def test_a_name_a_header_cannot_carry_gets_the_rfc_6266_form(
    ctx: ServerContext, client: TestClient
) -> None:
    put(ctx.directories.output, 'ünï "q".png', b"x")
    reply = client.get("/view", params={"filename": 'ünï "q".png'})
    assert reply.status_code == 200
    assert reply.headers["content-disposition"] == (
        "filename=\"_n_ _q_.png\"; filename*=UTF-8''%C3%BCn%C3%AF%20%22q%22.png"
    )


def test_webp_and_jpeg_previews(ctx: ServerContext, client: TestClient) -> None:
    put(ctx.directories.output, "x.png", png((200, 100, 50, 128), (10, 8)))
    webp = client.get("/view", params={"filename": "x.png", "preview": "webp;90"})
    assert webp.headers["content-type"] == "image/webp"
    assert webp.headers["content-disposition"] == 'filename="x.png"'
    image = decode(webp.content)
    assert (image.format, image.mode, image.size) == ("WEBP", "RGBA", (10, 8))
    jpeg = client.get("/view", params={"filename": "x.png", "preview": "jpeg;80"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert (decode(jpeg.content).format, decode(jpeg.content).mode) == ("JPEG", "RGB")
    forced = client.get("/view", params={"filename": "x.png", "preview": "jpeg;80", "channel": "a"})
    assert decode(forced.content).format == "WEBP"


def test_channels(ctx: ServerContext, client: TestClient) -> None:
    put(ctx.directories.output, "x.png", png((200, 100, 50, 128)))
    rgb = client.get("/view", params={"filename": "x.png", "channel": "rgb"})
    assert rgb.headers["content-type"] == "image/png"
    assert decode(rgb.content).mode == "RGB"
    assert decode(rgb.content).getpixel((0, 0)) == (200, 100, 50)
    alpha = client.get("/view", params={"filename": "x.png", "channel": "a"})
    assert decode(alpha.content).getpixel((0, 0)) == (0, 0, 0, 128)
    full = client.get("/view", params={"filename": "x.png", "channel": "rgba"})
    assert full.content == png((200, 100, 50, 128))


def test_a_preview_of_a_file_that_is_not_an_image_is_400(
    ctx: ServerContext, client: TestClient
) -> None:
    put(ctx.directories.output, "notes.png", b"plain text")
    reply = client.get("/view", params={"filename": "notes.png", "preview": "webp;90"})
    assert reply.status_code == 400
    assert error(reply)["type"] == "not_an_image"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"filename": "/etc/passwd"}, 400),
        ({"filename": "../input/x.png"}, 400),
        ({"filename": "..%2Fx.png"}, 400),
        ({"filename": "x.png [output]/../../y"}, 400),
        ({"filename": "\\etc\\passwd"}, 400),
        ({"filename": ""}, 400),
        ({"filename": "x\x00.png"}, 400),
        ({"filename": "x.png", "type": "models"}, 400),
        ({"type": "output"}, 400),
        ({"filename": "x.png", "subfolder": "../input"}, 403),
        ({"filename": "x.png", "subfolder": "/etc"}, 403),
        ({"filename": "x.png", "subfolder": "a/../../.."}, 403),
        ({"filename": "missing.png"}, 404),
        ({"filename": "x.png", "subfolder": "nope"}, 404),
        ({"filename": "x.png", "type": "temp"}, 404),
    ],
)
def test_view_refuses_bad_references(
    ctx: ServerContext, client: TestClient, params: dict[str, str], status: int
) -> None:
    put(ctx.directories.output, "x.png", b"ok")
    put(ctx.directories.input, "x.png", b"input secret")
    reply = client.get("/view", params=params)
    assert reply.status_code == status
    assert error(reply)["message"]


def test_encoded_traversal_in_the_raw_query_is_refused(
    ctx: ServerContext, client: TestClient
) -> None:
    put(ctx.directories.input, "x.png", b"input")
    for query in (
        "filename=%2e%2e%2finput%2fx.png",
        "filename=x.png&subfolder=%2e%2e%2finput",
        "filename=x.png&subfolder=..%5c..",
        "filename=%2Fetc%2Fpasswd",
    ):
        assert client.get(f"/view?{query}").status_code in (400, 403, 404)
        assert client.get(f"/view?{query}").content != b"input"


def test_a_symlink_out_of_the_folder_is_403(
    ctx: ServerContext, client: TestClient, tmp_path: Path
) -> None:
    secret = put(tmp_path, "secret.png", b"secret")
    (ctx.directories.output / "link.png").symlink_to(secret)
    reply = client.get("/view", params={"filename": "link.png"})
    assert reply.status_code == 403
    assert str(tmp_path) not in reply.text


def test_a_folder_is_not_served(ctx: ServerContext, client: TestClient) -> None:
    (ctx.directories.output / "dir.png").mkdir()
    assert client.get("/view", params={"filename": "dir.png"}).status_code == 404


# --- /upload/mask ----------------------------------------------------------------------------


def original_png(path: Path) -> bytes:
    info = PngInfo()
    info.add_text("workflow", '{"nodes": [1]}')
    info.add_text("prompt", '{"1": {}}')
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path, pnginfo=info)
    return path.read_bytes()


def mask_png() -> bytes:
    mask = Image.new("RGBA", (4, 4), (0, 0, 0, 255))
    mask.putpixel((2, 2), (0, 0, 0, 0))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def upload_mask(client: TestClient, ref: str, **fields: str) -> httpx.Response:
    reply: httpx.Response = client.post(
        "/upload/mask",
        files={"image": ("clipspace-mask-1.png", mask_png(), "image/png")},
        data={"original_ref": ref, **fields},
    )
    return reply


def test_a_mask_upload_merges_alpha_and_keeps_text_chunks(
    ctx: ServerContext, client: TestClient
) -> None:
    original_png(ctx.directories.input / "clip" / "x.png")
    reply = upload_mask(
        client,
        '{"filename": "x.png", "subfolder": "clip", "type": "input"}',
        type="input",
        subfolder="clipspace",
    )
    assert reply.status_code == 200
    assert reply.json() == {
        "name": "clipspace-mask-1.png",
        "subfolder": "clipspace",
        "type": "input",
    }
    merged = decode((ctx.directories.input / "clipspace" / "clipspace-mask-1.png").read_bytes())
    assert merged.mode == "RGBA"
    assert merged.getpixel((0, 0)) == (10, 20, 30, 255)
    assert merged.getpixel((2, 2)) == (10, 20, 30, 0)
    assert merged.text == {"workflow": '{"nodes": [1]}', "prompt": '{"1": {}}'}
    again = upload_mask(
        client, '{"filename": "x.png [input]", "subfolder": "clip"}', subfolder="clipspace"
    )
    assert again.json()["name"] == "clipspace-mask-1.png"  # identical result: the name is reused


def test_the_original_ref_type_defaults_to_output(ctx: ServerContext, client: TestClient) -> None:
    original_png(ctx.directories.output / "o.png")
    assert upload_mask(client, '{"filename": "o.png"}').status_code == 200


@pytest.mark.parametrize(
    ("ref", "status", "fragment"),
    [
        ("{not json", 400, "not valid JSON"),
        ("[1]", 400, "JSON object"),
        ('{"subfolder": ""}', 400, "JSON object"),
        ('{"filename": 5}', 400, "JSON object"),
        ('{"filename": "x.png", "subfolder": 1}', 400, "must be strings"),
        ('{"filename": "../x.png"}', 400, ".."),
        ('{"filename": "/x.png"}', 400, "'/'"),
        ('{"filename": "x.png", "type": "models"}', 400, "unknown type"),
        ('{"filename": "x.png", "subfolder": "../../"}', 403, "leaves"),
        ('{"filename": "gone.png", "type": "input"}', 404, "not found"),
    ],
)
def test_bad_original_refs(
    ctx: ServerContext, client: TestClient, ref: str, status: int, fragment: str
) -> None:
    original_png(ctx.directories.input / "x.png")
    reply = upload_mask(client, ref)
    assert reply.status_code == status
    assert fragment in error(reply)["message"]
    assert os.listdir(ctx.directories.input) == ["x.png"]


def test_a_missing_original_ref_is_400(client: TestClient) -> None:
    reply = client.post("/upload/mask", files={"image": ("m.png", mask_png(), "image/png")})
    assert reply.status_code == 400
    assert "original_ref" in error(reply)["message"]


def test_a_mask_of_another_size_or_not_an_image_is_400(
    ctx: ServerContext, client: TestClient
) -> None:
    original_png(ctx.directories.input / "x.png")
    for mask in (png(size=(9, 9)), b"not an image"):
        reply = client.post(
            "/upload/mask",
            files={"image": ("m.png", mask, "image/png")},
            data={"original_ref": '{"filename": "x.png", "type": "input"}'},
        )
        assert reply.status_code == 400
        assert error(reply)["type"] == "invalid_mask"
    assert os.listdir(ctx.directories.input) == ["x.png"]
