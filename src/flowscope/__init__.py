"""flowscope: a ComfyUI-compatible workflow engine and server with observability built in."""

__version__ = "0.1.0"
