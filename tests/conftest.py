"""Shared by every test directory: `tests/support/` (the test node pack and the engine harness)
is importable as top-level modules, e.g. `import testing_nodes`."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import settings

SUPPORT = str(Path(__file__).parent / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

# Property tests check behaviour, not speed: hypothesis's default 200 ms deadline per example
# fails examples that write files or start threads on a loaded CI machine (2 shared cores).
settings.register_profile("flowscope", deadline=None)
settings.load_profile("flowscope")
