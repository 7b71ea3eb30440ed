"""Property: whatever the mix of submits (plain, `front`, explicit `number`) and claims, jobs run
in ComfyUI's heap order: lowest number first, ties in submission order."""

from __future__ import annotations

import heapq
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jobs_support import new_job

from flowscope.jobs import JobStore

Op = tuple[str, float]  # ("plain" | "front" | "number" | "claim", explicit number)

ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["plain", "front", "claim"]), st.just(0.0)),
        st.tuples(
            st.just("number"),
            st.one_of(
                st.integers(-3, 6).map(float),
                st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
            ),
        ),
    ),
    max_size=25,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty database to copy: each example starts from scratch, quickly."""
    path = tmp_path_factory.mktemp("template") / "flowscope.db"
    JobStore(f"sqlite:///{path}").close()
    return path


def comfyui_order(operations: list[Op]) -> tuple[list[float], list[str]]:
    """ComfyUI's numbers for each submit, and the ids each claim takes from its heap."""
    counter = 0
    heap: list[tuple[float, int, str]] = []
    numbers: list[float] = []
    claimed: list[str] = []
    for index, (kind, value) in enumerate(operations):
        if kind == "claim":
            if heap:
                claimed.append(heapq.heappop(heap)[2])
            continue
        if kind == "number":
            number = value
        else:
            number = float(-counter if kind == "front" else counter)
            counter += 1
        numbers.append(number)
        heapq.heappush(heap, (number, index, f"job-{index}"))
    claimed += [heapq.heappop(heap)[2] for _ in range(len(heap))]
    return numbers, claimed


@settings(max_examples=40)
@given(operations=ops)
def test_claim_order_is_comfyuis_heap_order(template: Path, operations: list[Op]) -> None:
    expected_numbers, expected_claims = comfyui_order(operations)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flowscope.db"
        shutil.copyfile(template, path)
        with JobStore(f"sqlite:///{path}") as store:
            numbers: list[float] = []
            claimed: list[str] = []
            for index, (kind, value) in enumerate(operations):
                if kind == "claim":
                    if (job := store.claim_next("w", 30)) is not None:
                        claimed.append(job.job_id)
                    continue
                job_id = f"job-{index}"
                if kind == "number":
                    queued = store.submit(new_job(job_id, number=value))
                else:
                    queued = store.submit(new_job(job_id, front=kind == "front"))
                numbers.append(queued.number)
            while (job := store.claim_next("w", 30)) is not None:
                claimed.append(job.job_id)
    assert numbers == expected_numbers
    assert claimed == expected_claims
