"""Where input, output and temp files live, and how file names are kept inside them."""

from flowscope.storage.directories import Directories, PathEscapeError, safe_join

__all__ = ["Directories", "PathEscapeError", "safe_join"]
