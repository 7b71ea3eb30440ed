"""Run by test_forward_faults in a child process: spool events for a receiver that takes them but
never acks, print their event ids once every one is on disk, then wait to be SIGKILLed.

Usage: python forward_spool_child.py PORT SPOOL_DIR COUNT
"""

from __future__ import annotations

import json
import sys
import time

from forward_helpers import FAST_RETRY, EventSource

from flowscope.telemetry.forward import ForwardSink


def main() -> None:
    port, spool_dir, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    sink = ForwardSink(
        "127.0.0.1",
        port,
        spool_dir=spool_dir,
        batch_size=50,
        flush_interval_s=0.02,
        ack_timeout_s=0.3,
        retry=FAST_RETRY,
    )
    ids = EventSource(sink).emit(count)
    if not sink.wait_idle(10):
        sys.exit("the sink did not spool every event within 10 s")
    print(json.dumps(ids), flush=True)
    time.sleep(120)  # killed long before this ends


if __name__ == "__main__":
    main()
