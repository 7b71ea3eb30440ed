"""The model routes (spec §4.1): /models, /embeddings, /experiment/models (with previews) and
/view_metadata, with their 404s and path safety."""

from __future__ import annotations

import base64
import json
import struct
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from server_info_app import make_client, write

COMFY_FOLDERS = [
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen",
    "upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
    "model_patches", "audio_encoders",
]  # fmt: skip


def safetensors(path: Path, header: dict[str, Any], *, declared: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    length = len(raw) if declared is None else declared
    path.write_bytes(struct.pack("<Q", length) + raw + b"\0" * 16)
    return path


def png_bytes(color: tuple[int, int, int]) -> bytes:
    out = BytesIO()
    Image.new("RGB", (4, 3), color).save(out, format="PNG")
    return out.getvalue()


def webp_color(body: bytes) -> tuple[int, ...]:
    assert body[:4] == b"RIFF" and body[8:12] == b"WEBP"
    with Image.open(BytesIO(body)) as image:
        pixel = image.convert("RGB").getpixel((1, 1))
    assert isinstance(pixel, tuple)
    return pixel


def dominant(color: tuple[int, ...]) -> int:
    channel = max(range(3), key=lambda index: color[index])
    assert color[channel] > 200 and sum(color) - color[channel] < 60, color
    return channel


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_model_folders_and_their_files(tmp_path: Path, prefix: str) -> None:
    client, ctx = make_client(tmp_path)
    models = ctx.directories.models
    for name in ("b.safetensors", "sd15/a.ckpt", "readme.txt"):
        write(models / "checkpoints" / name, "x")
    assert client.get(f"{prefix}/models").json() == COMFY_FOLDERS
    assert client.get(f"{prefix}/models/checkpoints").json() == ["b.safetensors", "sd15/a.ckpt"]
    assert client.get(f"{prefix}/models/loras").json() == []
    unknown = client.get(f"{prefix}/models/nonsense")
    assert unknown.status_code == 404
    assert "no model folder 'nonsense'" in unknown.json()["error"]["message"]


def test_embeddings_are_names_without_extension(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    for name in ("easynegative.safetensors", "style/bad-hands.pt", "notes.txt"):
        write(ctx.directories.models / "embeddings" / name, "x")
    assert client.get("/api/embeddings").json() == ["easynegative", "style/bad-hands"]


def test_experiment_models(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    models = ctx.directories.models
    write(models / "controlnet" / "canny.safetensors", "12345")
    write(models / "t2i_adapter" / "sub" / "sketch.pth", "123")
    folders = client.get("/api/experiment/models").json()
    assert [f["name"] for f in folders] == [
        n for n in COMFY_FOLDERS if n not in ("configs", "custom_nodes")
    ]
    controlnet = next(f for f in folders if f["name"] == "controlnet")
    assert controlnet["folders"] == [str(models / "controlnet"), str(models / "t2i_adapter")]
    files = client.get("/api/experiment/models/controlnet").json()
    assert sorted(files, key=lambda f: f["pathIndex"]) == [
        {
            "name": "canny.safetensors",
            "pathIndex": 0,
            "modified": (models / "controlnet" / "canny.safetensors").stat().st_mtime,
            "created": (models / "controlnet" / "canny.safetensors").stat().st_ctime,
            "size": 5,
        },
        {
            "name": "sub/sketch.pth",
            "pathIndex": 1,
            "modified": (models / "t2i_adapter" / "sub" / "sketch.pth").stat().st_mtime,
            "created": (models / "t2i_adapter" / "sub" / "sketch.pth").stat().st_ctime,
            "size": 3,
        },
    ]
    assert client.get("/api/experiment/models/nonsense").status_code == 404


def test_previews_from_sidecar_images_and_safetensors_covers(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    loras = ctx.directories.models / "loras"
    write(loras / "sub" / "a.safetensors", "x")
    (loras / "sub" / "a.png").write_bytes(png_bytes((255, 0, 0)))
    write(loras / "b.v2.pt", "x")
    (loras / "b.v2.preview.jpeg").write_bytes(png_bytes((0, 255, 0)))  # content decides
    cover = base64.b64encode(png_bytes((0, 0, 255))).decode()
    safetensors(
        loras / "c.safetensors",
        {"__metadata__": {"ssmd_cover_images": json.dumps([cover])}},
    )
    base = "/api/experiment/models/preview/loras/0"
    first = client.get(f"{base}/sub/a.safetensors")
    assert first.status_code == 200 and first.headers["content-type"] == "image/webp"
    assert dominant(webp_color(first.content)) == 0  # red: lossy WEBP, so roughly
    assert dominant(webp_color(client.get(f"{base}/b.v2.pt").content)) == 1
    assert dominant(webp_color(client.get(f"{base}/c.safetensors").content)) == 2


@pytest.mark.parametrize(
    "path",
    [
        "loras/0/none.safetensors",  # no preview at all
        "loras/0/plain.safetensors",  # a header without covers
        "loras/3/a.safetensors",  # no such root
        "nonsense/0/a.safetensors",
        "loras/0/..%2F..%2Fsecret.safetensors",
        "loras/x/a.safetensors",
    ],
)
def test_missing_previews_are_404(tmp_path: Path, path: str) -> None:
    client, ctx = make_client(tmp_path)
    safetensors(ctx.directories.models / "loras" / "plain.safetensors", {"__metadata__": {}})
    (tmp_path / "secret.png").write_bytes(png_bytes((1, 2, 3)))
    response = client.get(f"/api/experiment/models/preview/{path}")
    # A root index that is not a number is a malformed request rather than a missing preview.
    assert response.status_code == (400 if path.startswith("loras/x/") else 404)


def test_view_metadata_reads_the_safetensors_header(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    loras = ctx.directories.models / "loras"
    metadata = {"ss_network_dim": "16", "modelspec.title": "Demo"}
    safetensors(loras / "sub" / "a.safetensors", {"__metadata__": metadata, "w": {}})
    response = client.get("/api/view_metadata/loras", params={"filename": "sub/a.safetensors"})
    assert response.status_code == 200
    assert response.json() == metadata


@pytest.mark.parametrize(
    "folder,filename",
    [
        ("loras", "missing.safetensors"),
        ("loras", "a.ckpt"),  # only safetensors have metadata
        ("loras", "none.safetensors"),  # a header without __metadata__
        ("loras", "huge.safetensors"),  # a header too large to be metadata
        ("loras", "short.safetensors"),  # not even 8 bytes
        ("loras", "../outside.safetensors"),
        ("nonsense", "a.safetensors"),
        ("loras", ""),
    ],
)
def test_view_metadata_404s(tmp_path: Path, folder: str, filename: str) -> None:
    client, ctx = make_client(tmp_path)
    loras = ctx.directories.models / "loras"
    write(loras / "a.ckpt", "x")
    safetensors(loras / "none.safetensors", {"w": {}})
    safetensors(loras / "huge.safetensors", {"__metadata__": {}}, declared=2 * 1024 * 1024)
    (loras / "short.safetensors").write_bytes(b"\x01\x02")
    safetensors(ctx.directories.models / "outside.safetensors", {"__metadata__": {"x": "y"}})
    response = client.get(f"/api/view_metadata/{folder}", params={"filename": filename})
    assert response.status_code == 404
