"""The official editor (comfyui-frontend-package) in a real headless Chromium against a live
flowscope server: it loads without errors of ours, lists our nodes, runs a workflow queued with
its Run button and shows the image, shows a multi-node job running, and interrupts a job.

Workflows reach the canvas the way a user opens a file: the editor's Menu > File > Open, then
the workflow JSON is picked in the file chooser. Screenshots go to `test-artifacts/` at the
repository root.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, ViewportSize, expect
from server_harness import LiveServer, live_server

from browser import PageLoad, chromium, chromium_available, record

# No skip when chromium is missing: `.ci/run` installs it, and a skipped browser test would hide
# a broken install. The check below fails with the fix instead.
pytestmark = pytest.mark.slow


def test_chromium_is_installed() -> None:
    assert chromium_available(), "install Debian's chromium: apt-get install chromium"


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}
WAIT_MS = 20_000  # for any UI wait: generous, as the 2-core CI machine may be busy
# A node's `progress` is what the canvas draws as its progress bar and green "running" outline.
RUNNING_NODES = (
    "() => window.app.graph.nodes.filter(n => n.progress !== undefined).map(n => String(n.id))"
)


# -- workflows in the editor's own file format ---------------------------------------------------
@dataclass
class UiNode:
    id: int
    type: str
    pos: tuple[int, int]
    widgets: list[Any] = field(default_factory=list)
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (name, type) of sockets
    outputs: list[str] = field(default_factory=list)  # output types
    widget_inputs: tuple[str, ...] = ()  # inputs that are widgets fed by a link


def ui_workflow(nodes: list[UiNode], links: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    """A workflow as the editor saves it; `links` are (from node, output, to node, input)."""
    by_id = {node.id: node for node in nodes}
    out_links: dict[tuple[int, int], list[int]] = {}
    in_links: dict[tuple[int, int], int] = {}
    link_rows = []
    for number, (source, output, target, slot) in enumerate(links, start=1):
        out_links.setdefault((source, output), []).append(number)
        in_links[(target, slot)] = number
        link_rows.append([number, source, output, target, slot, by_id[source].outputs[output]])
    rows = []
    for order, node in enumerate(nodes):
        inputs = []
        for slot, (name, kind) in enumerate(node.inputs):
            entry: dict[str, Any] = {
                "name": name,
                "type": kind,
                "link": in_links.get((node.id, slot)),
            }
            if name in node.widget_inputs:
                entry["widget"] = {"name": name}
            inputs.append(entry)
        outputs = [
            {"name": kind, "type": kind, "links": out_links.get((node.id, slot), [])}
            for slot, kind in enumerate(node.outputs)
        ]
        rows.append(
            {
                "id": node.id,
                "type": node.type,
                "pos": list(node.pos),
                "size": [300, 120],
                "flags": {},
                "order": order,
                "mode": 0,
                "inputs": inputs,
                "outputs": outputs,
                "properties": {"Node name for S&R": node.type},
                "widgets_values": node.widgets,
            }
        )
    return {
        "last_node_id": max(by_id),
        "last_link_id": len(links),
        "nodes": rows,
        "links": link_rows,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


YELLOW = 0xFFFF00
INVERT = ui_workflow(
    [
        UiNode(1, "EmptyImage", (40, 120), widgets=[64, 64, 1, YELLOW], outputs=["IMAGE"]),
        UiNode(2, "ImageInvert", (390, 120), inputs=[("image", "IMAGE")], outputs=["IMAGE"]),
        UiNode(
            3, "SaveImage", (740, 120), widgets=["browser_invert"], inputs=[("images", "IMAGE")]
        ),
    ],
    [(1, 0, 2, 0), (2, 0, 3, 0)],
)
# Steps reports progress; then two Sleeps run at once (async nodes); AddInt adds their values.
PROGRESS = ui_workflow(
    [
        UiNode(1, "Steps", (40, 160), widgets=[20, 0.03], outputs=["INT"]),
        UiNode(2, "Sleep", (390, 60), widgets=[0.6], inputs=[("value", "*")], outputs=["*"]),
        UiNode(3, "Sleep", (390, 260), widgets=[0.6], inputs=[("value", "*")], outputs=["*"]),
        UiNode(
            4,
            "AddInt",
            (740, 160),
            widgets=[0, 1],
            inputs=[("a", "INT"), ("b", "INT")],
            outputs=["INT"],
            widget_inputs=("a", "b"),
        ),
        UiNode(5, "Collect", (1090, 160), inputs=[("value", "*")]),
    ],
    [(1, 0, 2, 0), (1, 0, 3, 0), (2, 0, 4, 0), (3, 0, 4, 1), (4, 0, 5, 0)],
)
FOREVER = ui_workflow(
    [
        UiNode(1, "UntilInterrupted", (40, 120), widgets=[60.0], outputs=["INT"]),
        UiNode(2, "Collect", (390, 120), inputs=[("value", "*")]),
    ],
    [(1, 0, 2, 0)],
)


# -- the editor, driven like a user ------------------------------------------------------------
@dataclass
class Editor:
    server: LiveServer
    page: Page
    log: PageLoad
    scratch: Path

    def open_workflow(self, name: str, workflow: dict[str, Any]) -> None:
        """Menu > File > Open, then pick the workflow file; it opens in a new tab."""
        path = self.scratch / f"{name}.json"
        path.write_text(json.dumps(workflow))
        self.page.get_by_role("button", name="Menu", exact=True).click()
        self.page.get_by_role("menuitem", name="File", exact=True).click()
        with self.page.expect_file_chooser() as chooser:
            self.page.get_by_role("menuitem", name=re.compile(r"^Open")).click()
        chooser.value.set_files(path)
        count = len(workflow["nodes"])
        self.page.wait_for_function(f"window.app.graph.nodes.length === {count}")
        expect(self.page).to_have_title(re.compile(re.escape(name)), timeout=WAIT_MS)

    def run(self) -> str:
        """Click the Run button; the job id the server answered."""
        with self.page.expect_response(
            lambda r: r.url == f"{self.server.url}/api/prompt" and r.request.method == "POST"
        ) as answer:
            self.page.get_by_role("button", name="Run", exact=True).click()
        assert answer.value.status == 200
        job_id: str = answer.value.json()["prompt_id"]
        return job_id

    def expect_idle(self) -> None:
        """The actionbar's queue button counts no active job, and no node is drawn running."""
        expect(self.page.get_by_test_id("queue-overlay-toggle")).to_contain_text(
            "0 active", timeout=WAIT_MS
        )
        assert self.page.evaluate(RUNNING_NODES) == []

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=path)
        return path

    def assert_no_problems(self) -> None:
        assert self.log.problems(self.server.url) == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def editor(tmp_path: Path, browser: Browser) -> Iterator[Editor]:
    """A fresh server and a first visit: the editor opens its templates dialog, which we close."""
    with live_server(tmp_path / "base") as server:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(WAIT_MS)
        try:
            page = context.new_page()
            log = record(page)
            page.goto(server.url)
            page.wait_for_function("window.app && window.app.graph && window.app.canvas")
            page.get_by_role("button", name="Close dialog").click()
            scratch = tmp_path / "workflows"
            scratch.mkdir()
            yield Editor(server, page, log, scratch)
        finally:
            context.close()


# -- the tests -----------------------------------------------------------------------------------
def test_the_editor_loads_and_its_node_library_lists_our_nodes(editor: Editor) -> None:
    page = editor.page
    [socket_url] = editor.log.websockets
    assert socket_url.partition("?")[0] == editor.server.ws_url
    first = editor.log.ws_messages[0]
    assert first["type"] == "status" and first["data"]["sid"]  # the page's client id
    object_info = editor.server.client.get("/api/object_info").json()
    registered = set(page.evaluate("() => Object.keys(window.LiteGraph.registered_node_types)"))
    assert set(object_info) <= registered

    page.get_by_role("button", name=re.compile(r"^Node Library")).click()
    search = page.get_by_placeholder("Search Nodes...")
    tree = page.get_by_role("tree")
    # Built-in nodes by display name, and test-pack nodes (display name = class name).
    for name in ("Invert Image", "Save Image", "UntilInterrupted", "Collect"):
        search.fill(name)
        expect(tree.get_by_text(name, exact=True)).to_be_visible(timeout=WAIT_MS)
    search.fill("image")
    for name in ("Invert Image", "Save Image", "EmptyImage"):
        expect(tree.get_by_text(name, exact=True)).to_be_visible(timeout=WAIT_MS)
    editor.screenshot("browser-node-library.png")
    editor.assert_no_problems()


def test_a_workflow_run_from_the_editor_shows_its_image(editor: Editor) -> None:
    page = editor.page
    editor.open_workflow("invert", INVERT)
    with page.expect_response(lambda r: "/api/view?" in r.url) as viewed:
        job_id = editor.run()
    image_response = viewed.value
    assert image_response.status == 200
    assert image_response.headers["content-type"] == "image/png"
    # The Save Image node holds the decoded picture the canvas draws.
    page.wait_for_function(
        "(() => { const imgs = window.app.graph.getNodeById(3).imgs;"
        " return imgs?.length === 1 && imgs[0].complete && imgs[0].naturalWidth > 0; })"
    )
    shown = page.evaluate(
        "(() => { const img = window.app.graph.getNodeById(3).imgs[0];"
        " return [img.src, img.naturalWidth, img.naturalHeight]; })"
    )
    assert shown[1:] == [64, 64]

    entry = editor.server.wait_history(job_id)
    assert entry["status"]["status_str"] == "success"
    [saved] = entry["outputs"]["3"]["images"]
    assert saved["filename"].startswith("browser_invert") and saved["type"] == "output"
    assert f"filename={saved['filename']}" in shown[0]
    picture = Image.open(io.BytesIO(image_response.body())).convert("RGB")
    assert picture.size == (64, 64)
    assert picture.getpixel((32, 32)) == (0, 0, 255)  # yellow, inverted

    editor.expect_idle()
    editor.screenshot("browser-invert-workflow.png")
    editor.assert_no_problems()


SAMPLER = """() => {
  window.__seen = {titles: [], running: []};
  const watched = {childList: true, characterData: true, subtree: true};
  new MutationObserver(() => window.__seen.titles.push(document.title))
    .observe(document.querySelector('title'), watched);
  window.__sampler = setInterval(() => {
    const running = window.app.graph.nodes
      .filter(n => n.progress !== undefined).map(n => [String(n.id), n.progress]);
    if (running.length) window.__seen.running.push(running);
  }, 10);
}"""


def test_the_editor_shows_a_multi_node_job_running(editor: Editor) -> None:
    page = editor.page
    editor.open_workflow("progress", PROGRESS)
    page.evaluate(SAMPLER)
    job_id = editor.run()
    page.wait_for_function(
        "(() => { const p = window.app.graph.getNodeById(1).progress; return p > 0 && p < 1; })"
    )
    editor.screenshot("browser-progress-running.png")
    entry = editor.server.wait_history(job_id)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"]["5"] == {"value": [40]}
    editor.expect_idle()
    seen = page.evaluate("() => { clearInterval(window.__sampler); return window.__seen; }")

    # The canvas drew the Steps node's bar filling up, then both Sleep nodes running together.
    steps = [progress for sample in seen["running"] for node, progress in sample if node == "1"]
    assert any(0 < progress < 1 for progress in steps)
    assert steps == sorted(steps)
    assert [["2", 0], ["3", 0]] in [sorted(sample) for sample in seen["running"]]
    # The tab title follows: "[total%][node%] Steps", then "[…][2 nodes running]", then idle.
    assert any(re.fullmatch(r"\[\d+%\]\[([1-9]\d?)%\] Steps", title) for title in seen["titles"])
    assert any(title.endswith("[2 nodes running]") for title in seen["titles"])
    assert "%" not in page.title()

    # What made that happen: per message only the running nodes plus the one that just changed.
    states = [
        message["data"]["nodes"]
        for message in editor.log.ws_messages
        if message["type"] == "progress_state" and message["data"]["prompt_id"] == job_id
    ]
    assert set().union(*states) == {"1", "2", "3", "4", "5"}
    for nodes in states:
        assert sum(node["state"] != "running" for node in nodes.values()) <= 1
    assert max(len(nodes) for nodes in states) == 2
    editor.assert_no_problems()


def test_the_editor_interrupts_a_running_job(editor: Editor) -> None:
    page = editor.page
    editor.open_workflow("forever", FOREVER)
    job_id = editor.run()
    deadline = time.monotonic() + 10
    while (running := editor.server.client.get("/queue").json()["queue_running"]) == []:
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.02)
    assert running[0][1] == job_id
    page.wait_for_function(f"({RUNNING_NODES})().includes('1')")
    cancel = page.get_by_role("button", name="Cancel current run")
    expect(cancel).to_be_enabled(timeout=WAIT_MS)

    with page.expect_request(lambda r: r.url == f"{editor.server.url}/api/interrupt") as sent:
        cancel.click()
    assert json.loads(sent.value.post_data or "{}") == {"prompt_id": job_id}
    entry = editor.server.wait_history(job_id, timeout_s=5)  # it ends within 5 s of the click
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert entry["outputs"] == {}
    editor.expect_idle()
    expect(cancel).to_be_disabled(timeout=WAIT_MS)
    editor.assert_no_problems()
