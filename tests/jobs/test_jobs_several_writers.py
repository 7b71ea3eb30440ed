"""Several processes writing one SQLite store (a server and its worker processes): writers queue
on the shared file lock, and a process told of another's change counts the queue again."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

from jobs_support import new_job, outcome

from flowscope.jobs import JobStore
from flowscope.jobs.database import WriterLock


def test_a_second_holder_waits_for_the_first(tmp_path: Path) -> None:
    database = tmp_path / "flowscope.db"
    first, second = WriterLock(database), WriterLock(database)  # two open files, as two processes
    assert first.path == tmp_path / "flowscope.db-writer.lock"
    order: list[str] = []
    with first.held():
        waiter = threading.Thread(target=lambda: _hold(second, order))
        waiter.start()
        time.sleep(0.2)
        assert order == []  # still waiting
        order.append("first done")
    waiter.join(5)
    assert order == ["first done", "second"]
    first.close()
    second.close()


def _hold(lock: WriterLock, order: list[str]) -> None:
    with lock.held():
        order.append("second")


def test_another_process_waits_for_this_ones_write_transaction(
    open_store: Callable[..., JobStore], db_url: str, tmp_path: Path
) -> None:
    """No 'database is locked' and no busy-handler sleeps: the other process's submit simply
    lands after this process's transaction ends."""
    store = open_store()
    store.submit(new_job("first"))
    script = textwrap.dedent(
        f"""
        import time
        from flowscope.jobs import JobStore, NewJob
        store = JobStore({db_url!r}, busy_timeout_s=0.1)
        began = time.monotonic()
        print("submitting", flush=True)
        store.submit(NewJob(job_id="second", prompt={{}}, outputs=[]))
        print(round(time.monotonic() - began, 3))
        store.close()
        """
    )
    lock = WriterLock(tmp_path / "flowscope.db")
    with lock.held():  # as if this process were committing for a while
        other = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert other.stdout is not None
        # Timed from the child's submit, not its start-up (slow on a busy machine).
        assert other.stdout.readline() == b"submitting\n"
        time.sleep(0.6)
        assert other.poll() is None  # waiting on the lock, not failing after busy_timeout_s
    out, err = other.communicate(timeout=60)
    lock.close()
    assert other.returncode == 0, err.decode()
    assert float(out) >= 0.6
    assert store.get_job("second") is not None


def test_recount_soon_picks_up_another_processes_change(
    open_store: Callable[..., JobStore],
) -> None:
    server, worker = open_store(), open_store()
    server.submit(new_job("a"))
    server.submit(new_job("b"))
    server.recount_soon()
    assert server.queue_remaining() == 2  # counted just now
    claimed = worker.claim_next("w", 30)
    assert claimed is not None
    assert worker.finish(claimed.job_id, "w", outcome())
    assert server.queue_remaining() == 2  # trusted for up to a second
    server.recount_soon()  # the worker said it finished a job
    assert server.queue_remaining() == 1
