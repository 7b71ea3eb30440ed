"""The WebSocket side of ComfyUI's protocol (spec §4.3): sessions by `clientId`, the `status`
greeting, `feature_flags`, and a hub that any thread can hand messages to.

Workers run in threads; `WebSocketHub.send` may be called from any of them. Messages are
serialised once, queued, and handed to the event loop in batches (one wake-up per batch, not per
message); each client has its own bounded outbox and sender task, so one slow client never holds
up the others or the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from flowscope.server.context import ServerContext

OUTBOX_LIMIT = 10_000  # messages; a client this far behind is disconnected (it reconnects)
PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

Frame = str | bytes


class ClientSession:
    def __init__(self, sid: str, websocket: WebSocket) -> None:
        self.sid = sid
        self.websocket = websocket
        self.feature_flags: dict[str, Any] = {}
        self.outbox: asyncio.Queue[Frame | None] = asyncio.Queue(OUTBOX_LIMIT)
        self.sender: asyncio.Task[None] | None = None
        self.bytes_sent = 0

    @property
    def supports_preview_metadata(self) -> bool:
        return bool(self.feature_flags.get("supports_preview_metadata"))

    def offer(self, frame: Frame) -> bool:
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    async def run_sender(self) -> None:
        while (frame := await self.outbox.get()) is not None:
            try:
                if isinstance(frame, str):
                    await self.websocket.send_text(frame)
                else:
                    await self.websocket.send_bytes(frame)
            except (RuntimeError, WebSocketDisconnect, OSError):
                return
            self.bytes_sent += len(frame)


class WebSocketHub:
    def __init__(
        self,
        *,
        queue_remaining: Callable[[], int],
        server_flags: dict[str, Any] | None = None,
    ) -> None:
        self._queue_remaining = queue_remaining
        self.server_flags = server_flags or {"supports_preview_metadata": True}
        self.sessions: dict[str, ClientSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[tuple[Frame | Callable[[ClientSession], Frame | None], str | None]]
        self._pending = deque()
        self._lock = threading.Lock()
        self._flush_scheduled = False
        self.dropped = 0
        self._closing: set[asyncio.Future[None]] = set()  # ends of clients that fell behind
        # The node each client's running job is on, so a reconnecting client is told (§4.3).
        self._executing: dict[str, dict[str, Any]] = {}

    # -- lifecycle ------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            await self._end(session)
        self._loop = None

    # -- sending (any thread) ------------------------------------------------------------
    def send(self, message_type: str, data: Any, sid: str | None = None) -> None:
        """A JSON message to one client (`sid`) or to every client (`sid` None)."""
        if sid is not None and sid not in self.sessions:
            return  # ComfyUI drops messages for clients that are not connected
        if sid is None and not self.sessions:
            return
        self._enqueue(json.dumps({"type": message_type, "data": data}), sid)

    def send_frame(
        self, frame: Frame | Callable[[ClientSession], Frame | None], sid: str | None
    ) -> None:
        """A prebuilt frame, or a function that builds one per client (e.g. a preview whose
        framing depends on the client's feature flags)."""
        if sid is not None and sid not in self.sessions:
            return
        if sid is None and not self.sessions:
            return
        self._enqueue(frame, sid)

    def send_executing(self, data: dict[str, Any], sid: str) -> None:
        """`executing` to the job's client, remembered for a reconnect until the job ends
        (`data["node"]` None)."""
        if data.get("node") is None:
            self._executing.pop(sid, None)
        else:
            self._executing[sid] = data
        self.send("executing", data, sid)

    def broadcast_status(self) -> None:
        if self.sessions:  # counting the queue costs a query: only when someone listens
            self.send("status", self.status_data())

    def status_data(self, sid: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": {"exec_info": {"queue_remaining": self._queue_remaining()}}
        }
        if sid is not None:
            data["sid"] = sid
        return data

    def _enqueue(
        self, frame: Frame | Callable[[ClientSession], Frame | None], sid: str | None
    ) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            self._pending.append((frame, sid))
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        try:
            loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop closed between the check and the call
            with self._lock:
                self._flush_scheduled = False

    def _flush(self) -> None:
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
            self._flush_scheduled = False
        for frame, sid in batch:
            targets = (
                list(self.sessions.values())
                if sid is None
                else [s for s in (self.sessions.get(sid),) if s is not None]
            )
            for session in targets:
                built = frame(session) if callable(frame) else frame
                if built is not None and not session.offer(built):
                    self.dropped += 1
                    task = asyncio.ensure_future(self._end(session))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)

    # -- sessions (event loop) -----------------------------------------------------------
    async def serve(self, websocket: WebSocket, client_id: str | None) -> None:
        await websocket.accept()
        sid = client_id or uuid.uuid4().hex
        previous = self.sessions.get(sid)
        if previous is not None:  # the same client reconnected: take over its session
            await self._end(previous)
        session = ClientSession(sid, websocket)
        self.sessions[sid] = session
        session.sender = asyncio.ensure_future(session.run_sender())
        session.offer(json.dumps({"type": "status", "data": self.status_data(sid)}))
        executing = self._executing.get(sid)
        if executing is not None:
            session.offer(json.dumps({"type": "executing", "data": executing}))
        first = True
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if first and text is not None:
                    self._answer_feature_flags(session, text)
                first = False
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if self.sessions.get(sid) is session:
                del self.sessions[sid]
            await self._end(session, close=False)

    def _answer_feature_flags(self, session: ClientSession, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            return
        if not isinstance(message, dict) or message.get("type") != "feature_flags":
            return
        data = message.get("data")
        session.feature_flags = data if isinstance(data, dict) else {}
        session.offer(json.dumps({"type": "feature_flags", "data": self.server_flags}))

    async def _end(self, session: ClientSession, *, close: bool = True) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]
        if session.sender is not None and not session.sender.done():
            session.sender.cancel()
        if close:
            with contextlib.suppress(RuntimeError, OSError):
                await session.websocket.close()


def router(ctx: ServerContext) -> APIRouter:
    routes = APIRouter()

    @routes.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await ctx.hub.serve(websocket, websocket.query_params.get("clientId") or None)

    return routes
