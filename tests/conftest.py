"""Shared by every test directory: `tests/support/` (the test node pack and the engine harness)
is importable as top-level modules, e.g. `import testing_nodes`."""

from __future__ import annotations

import sys
from pathlib import Path

SUPPORT = str(Path(__file__).parent / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)
