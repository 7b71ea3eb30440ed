"""`python -m flowscope.cli`: the same as the `flowscope` command."""

from flowscope.cli import entry

entry()
