"""Sinks: where events go (JSON lines, the local log store, metrics, traces, Fluentd)."""
