"""`PageLoad.problems`: what a browser test lets the editor fail on, and what it reports."""

from __future__ import annotations

from browser import PageLoad

BASE = "http://127.0.0.1:8188"


def test_only_the_expected_misses_are_excused() -> None:
    log = PageLoad(
        requests=[
            ("GET", f"{BASE}/user.css", 404),
            ("GET", f"{BASE}/api/userdata/user.css", 404),
            ("GET", f"{BASE}/api/userdata?dir=workflows&recurse=true&split=false", 404),
            ("GET", f"{BASE}/api/userdata/comfy.templates.json", 404),
            ("GET", f"{BASE}/api/workflow_templates/pack/first.jpg", 404),
            ("GET", "https://api.comfy.org/releases?project=comfyui", None),
            ("GET", f"blob:{BASE}/0b6c", 200),
            ("GET", f"{BASE}/api/object_info", 200),
        ],
        console_errors=[
            f"Failed to load resource: 404 (Not Found) ({BASE}/user.css)",
            "Failed to load resource: net::ERR_NAME_NOT_RESOLVED (https://api.comfy.org/releases"
            "?project=comfyui)",
        ],
    )
    assert log.problems(BASE) == []


def test_everything_else_is_reported() -> None:
    log = PageLoad(
        requests=[
            ("POST", f"{BASE}/api/prompt", 500),
            ("GET", f"{BASE}/api/userdata/other.json", 404),
            ("GET", f"{BASE}/user.css", 403),
            ("GET", f"{BASE}/api/view?filename=a.png", None),
            ("GET", "https://example.com/tracker.js", 200),
        ],
        console_errors=[
            f"Failed to load resource: 404 (Not Found) ({BASE}/api/userdata/other.json)",
            "TypeError: x is undefined (http://127.0.0.1:8188/assets/app.js)",
        ],
        page_errors=["ReferenceError: y is not defined"],
    )
    assert log.problems(BASE) == [
        "uncaught exception: ReferenceError: y is not defined",
        f"POST {BASE}/api/prompt -> 500",
        f"GET {BASE}/api/userdata/other.json -> 404",
        f"GET {BASE}/user.css -> 403",
        f"GET {BASE}/api/view?filename=a.png -> None",
        "outside request: GET https://example.com/tracker.js",
        f"console error: Failed to load resource: 404 (Not Found) ({BASE}/api/userdata/other.json)",
        "console error: TypeError: x is undefined (http://127.0.0.1:8188/assets/app.js)",
    ]
