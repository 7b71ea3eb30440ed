"""The history: ComfyUI's entry shape, finish order, paging, deleting, and the size cap."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from jobs_support import PROMPT, new_job, outcome, run_job

from flowscope.jobs import JobStore


def finish_in_order(store: JobStore, job_ids: list[str]) -> None:
    for job_id in job_ids:
        store.submit(new_job(job_id))
    for job_id in job_ids:
        run_job(store, job_id)


def test_entry_has_comfyui_shape_and_our_details(store: JobStore) -> None:
    store.submit(new_job("j", extra_data={"client_id": "c1"}, number=4))
    messages = [
        ["execution_start", {"prompt_id": "j", "timestamp": 10}],
        ["execution_success", {"prompt_id": "j", "timestamp": 12}],
    ]
    result = outcome(
        outputs={"1": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}},
        meta={"1": {"node_id": "1", "display_node": "1", "parent_node": None}},
        messages=messages,
        details={"nodes": [{"node_id": "1", "duration_ms": 1.5}], "worker_id": "w"},
    )
    run_job(store, "j", result)
    entry = store.history_entry("j")
    assert entry == {
        "prompt": [4, "j", PROMPT, {"client_id": "c1"}, ["1"]],
        "outputs": result.outputs,
        "status": {"status_str": "success", "completed": True, "messages": messages},
        "meta": result.meta,
        "flowscope": result.details,
    }
    assert json.loads(store.history_json()) == {"j": entry}


@pytest.mark.parametrize("state", ["error", "interrupted"])
def test_failures_are_error_and_not_completed(store: JobStore, state: str) -> None:
    store.submit(new_job("j"))
    last = "execution_error" if state == "error" else "execution_interrupted"
    run_job(store, "j", outcome(state, messages=[[last, {"prompt_id": "j"}]]))
    entry = store.history_entry("j")
    assert entry is not None
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == last
    record = store.get_job("j")
    assert record is not None and record.state == state


def test_history_is_in_finish_order_not_submit_order(store: JobStore) -> None:
    for job_id in ("a", "b", "c"):
        store.submit(new_job(job_id))
    jobs = [store.claim_next(f"w{i}", 30) for i in range(3)]
    for job in reversed(jobs):
        assert job is not None
        store.finish(job.job_id, job.worker_id or "", outcome())
    assert list(json.loads(store.history_json())) == ["c", "b", "a"]


@pytest.mark.parametrize(
    ("max_items", "offset", "expected"),
    [
        (None, None, ["a", "b", "c", "d", "e"]),
        (2, None, ["d", "e"]),  # the last max_items
        (10, None, ["a", "b", "c", "d", "e"]),
        (2, 1, ["b", "c"]),  # offset skips from the start
        (None, 3, ["d", "e"]),
        (2, 4, ["e"]),
        (2, 9, []),
        (0, None, []),
    ],
)
def test_paging_follows_comfyui(
    store: JobStore, max_items: int | None, offset: int | None, expected: list[str]
) -> None:
    finish_in_order(store, ["a", "b", "c", "d", "e"])
    text = store.history_json(max_items=max_items, offset=offset)
    assert list(json.loads(text)) == expected


def test_history_json_equals_the_parsed_entries(store: JobStore) -> None:
    odd = {"text": ['quote " backslash \\ newline \n unicode é ☃ \ud83d']}
    store.submit(new_job("x", extra_data={"note": "é"}))
    run_job(store, "x", outcome(outputs={"1": odd}))
    finish_in_order(store, ["y", "z"])
    parsed = json.loads(store.history_json())
    assert parsed == {job_id: store.history_entry(job_id) for job_id in ("x", "y", "z")}
    assert parsed["x"]["outputs"]["1"] == odd


def test_unserializable_outputs_do_not_lose_the_result(store: JobStore) -> None:
    store.submit(new_job("j"))
    run_job(store, "j", outcome(outputs={"1": {"value": [object()]}}))
    entry = store.history_entry("j")
    assert entry is not None
    assert entry["outputs"]["1"]["value"][0].startswith("<object object")


def test_delete_and_clear_touch_finished_jobs_only(store: JobStore) -> None:
    finish_in_order(store, ["a", "b", "c"])
    store.submit(new_job("cancelled"))
    store.cancel_pending(["cancelled"])
    store.submit(new_job("pending"))
    store.delete_history(["b", "pending", "nope"])
    assert list(json.loads(store.history_json())) == ["a", "c"]
    assert store.get_job("b") is None
    store.clear_history()
    assert store.history_json() == "{}"
    assert store.get_job("cancelled") is None
    assert [job.job_id for job in store.queue()[1]] == ["pending"]
    run_job(store, "pending")
    assert list(json.loads(store.history_json())) == ["pending"]


def test_max_history_keeps_the_newest(open_store: Callable[..., JobStore]) -> None:
    store = open_store(max_history=3)
    finish_in_order(store, ["a", "b", "c", "d"])
    assert list(json.loads(store.history_json())) == ["b", "c", "d"]
    store.submit(new_job("e"))
    store.cancel_pending(["e"])  # a cancelled job counts as history too
    assert list(json.loads(store.history_json())) == ["c", "d"]
    assert store.get_job("b") is None


def test_history_survives_reopen(open_store: Callable[..., JobStore]) -> None:
    first = open_store()
    finish_in_order(first, ["a", "b"])
    text = first.history_json()
    first.close()
    assert open_store().history_json() == text
