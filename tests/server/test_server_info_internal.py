"""The editor-only `/internal/*` routes (not aliased under /api): the log ring and its `logs`
WebSocket messages, the model folder paths and the newest files of a folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from server_info_app import make_client, recorded, write

from flowscope.server.log_ring import LogRing
from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Action, Event, Level, format_timestamp


def event(message: str, action: Action = Action.JOB_STARTED, level: Level = Level.INFO) -> Event:
    return Event(action, message, time.time_ns(), level)


def test_logs_are_the_recent_events_as_text_lines(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    assert client.get("/internal/logs").json() == ""
    first = event("job abc started")
    ctx.bus.emit(first)
    ctx.bus.emit(event("GET /api/queue 200", Action.HTTP_REQUEST))  # not terminal material
    failed = event("node 3 failed: boom", Action.NODE_FAILED, Level.ERROR)
    ctx.bus.emit(failed)
    ctx.bus.emit(event("a detail", Action.NODE_STARTED, Level.DEBUG))
    text = client.get("/internal/logs").json()
    assert isinstance(text, str)
    assert text == (
        f"{format_timestamp(first.time_ns)} - job abc started\n"
        f"{format_timestamp(failed.time_ns)} - [error] node 3 failed: boom\n"
    )
    raw = client.get("/internal/logs/raw").json()
    assert [entry["m"] for entry in raw["entries"]] == [
        "job abc started\n",
        "[error] node 3 failed: boom\n",
    ]
    assert raw["entries"][0]["t"] == format_timestamp(first.time_ns)
    assert set(raw["size"]) == {"cols", "rows"}


def test_internal_routes_have_no_api_alias(tmp_path: Path) -> None:
    client, _ctx = make_client(tmp_path)
    assert client.get("/internal/folder_paths").status_code == 200
    assert client.get("/api/internal/folder_paths").status_code == 404
    assert client.get("/api/internal/logs").status_code == 404


def test_subscribed_clients_get_new_lines_as_logs_messages(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    ctx.bus.emit(event("before"))
    response = client.patch("/internal/logs/subscribe", json={"clientId": "c1", "enabled": True})
    assert response.status_code == 200
    ctx.bus.emit(event("after"))
    sent = recorded(ctx)
    assert len(sent) == 1
    message_type, data, sid = sent[0]
    assert (message_type, sid) == ("logs", "c1")
    assert data["size"] is None
    assert [entry["m"] for entry in data["entries"]] == ["after\n"]

    client.patch("/internal/logs/subscribe", json={"clientId": "c1", "enabled": False})
    ctx.bus.emit(event("later"))
    assert len(recorded(ctx)) == 1


@pytest.mark.parametrize(
    "body",
    [{"clientId": "c1"}, {"enabled": True}, {"clientId": 3, "enabled": True}, [1]],
)
def test_subscribe_needs_a_client_id_and_a_flag(tmp_path: Path, body: object) -> None:
    client, _ctx = make_client(tmp_path)
    response = client.patch("/internal/logs/subscribe", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_the_ring_keeps_the_latest_entries() -> None:
    ring = LogRing(capacity=3)
    for index in range(5):
        ring.append(f"line {index}", 0)
    assert [entry["m"] for entry in ring.entries()] == ["line 2\n", "line 3\n", "line 4\n"]
    ring.append("two lines\n", 0)  # one trailing newline, not two
    assert ring.text().endswith(" - two lines\n")


def test_the_ring_can_be_detached() -> None:
    bus = EventBus()
    ring = LogRing()
    detach = ring.attach(bus)
    bus.emit(event("seen"))
    detach()
    bus.emit(event("unseen"))
    assert [entry["m"] for entry in ring.entries()] == ["seen\n"]


def test_folder_paths(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    paths = client.get("/internal/folder_paths").json()
    assert paths["checkpoints"] == [str(ctx.directories.models / "checkpoints")]
    assert paths["custom_nodes"] == [str(ctx.directories.custom_nodes)]
    assert paths["diffusion_models"] == [
        str(ctx.directories.models / "unet"),
        str(ctx.directories.models / "diffusion_models"),
    ]
    assert "configs" in paths and len(paths) == 20


def test_files_newest_first(tmp_path: Path) -> None:
    client, ctx = make_client(tmp_path)
    for age, name in enumerate(["new.png", "mid.png", "old.png"]):
        path = write(ctx.directories.output / name, "x")
        os.utime(path, (1_000_000 - age * 10, 1_000_000 - age * 10))
    (ctx.directories.output / "subfolder").mkdir()
    assert client.get("/internal/files/output").json() == ["new.png", "mid.png", "old.png"]
    assert client.get("/internal/files/temp").json() == []
    bad = client.get("/internal/files/models")
    assert bad.status_code == 400
    assert "invalid directory type 'models'" in bad.json()["error"]["message"]
