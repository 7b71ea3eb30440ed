"""deploy/prometheus and deploy/grafana against the real thing: promtool checks and unit-tests the
rules, a real Prometheus scrapes a flowscope endpoint that ran real jobs, and every dashboard
query runs on it. Grafana itself cannot be installed here: the dashboard is checked structurally
and its queries by Prometheus."""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from flowscope.engine import Executor, JobRequest
from flowscope.graph.validation import validate_prompt
from flowscope.nodes.catalog import load_catalog
from flowscope.storage.directories import Directories
from flowscope.telemetry import Action, EventBus, InMemorySubscriber
from flowscope.telemetry.metrics_http import MetricsHTTPServer
from flowscope.telemetry.pipeline import TelemetryPipeline
from flowscope.telemetry.sinks.metrics import MetricsSink

torch.set_num_threads(1)

DEPLOY = Path(__file__).parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "flowscope-dashboard.json"
P95_BY_NODE_TYPE = (
    "histogram_quantile(0.95, sum by (le, node_type) "
    "(rate(flowscope_node_duration_seconds_bucket[1m])))"
)


INSTALL_HINT = "install Debian's prometheus package (see .ci/run)"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert shutil.which("promtool"), INSTALL_HINT
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def rule_names(kind: str) -> set[str]:
    """The names of rules.yml's `record` or `alert` rules."""
    return set(re.findall(rf"^\s*- {kind}:\s*(\S+)\s*$", RULES.read_text(), re.MULTILINE))


def metric_names() -> set[str]:
    """Every series name the MetricsSink can expose."""
    suffixes = {"histogram": ("_bucket", "_sum", "_count", "_created"), "counter": ("_total",)}
    names = set()
    for family in MetricsSink().registry.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def scrape_config(target: str, *, interval: str = "15s") -> dict[str, Any]:
    """A Prometheus config (JSON is YAML) scraping `target`, with our rules."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "flowscope", "static_configs": [{"targets": [target]}]}],
    }


class Jobs:
    """Real jobs of built-in nodes whose events feed a MetricsSink."""

    def __init__(self, tmp_path: Path) -> None:
        directories = Directories.under(tmp_path)
        directories.ensure()
        self.registry, _ = load_catalog(directories)
        self.bus = EventBus()
        self.events = InMemorySubscriber(self.bus, [Action.JOB_STARTED])
        self.sink = MetricsSink()
        self.pipeline = TelemetryPipeline(self.bus, [self.sink])
        self.executor = Executor(self.registry, bus=self.bus)

    def run(self, b: int, operation: str = "add") -> str:
        """Runs (40 + b) <operation> b, new constants for each b; returns the job's trace id."""
        prompt = {
            "1": {"class_type": "PrimitiveInt", "inputs": {"value": 40 + b}},
            "2": {
                "class_type": "IntMath",
                "inputs": {"a": ["1", 0], "b": b, "operation": operation},
            },
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
        }
        validation = validate_prompt(prompt, self.registry.schema)
        result = self.executor.execute(JobRequest(validation.prompt, validation.outputs))
        (started,) = self.events.where(job_id=result.job_id)
        trace_id: str = started.get("trace.id")
        return trace_id


# -- promtool ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_rules_pass_promtool_check() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert rule_names("alert") == {
        "FlowscopeJobFailureRateHigh",
        "FlowscopeQueueStalled",
        "FlowscopeTelemetryDropping",
    }
    rules = len(rule_names("record")) + len(rule_names("alert"))
    assert f"SUCCESS: {rules} rules found" in checked.stdout


@pytest.mark.slow
def test_rules_pass_their_promtool_unit_tests() -> None:
    tested = promtool("test", "rules", "rules_test.yml", cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.slow
def test_shipped_and_generated_configs_pass_promtool_check(tmp_path: Path) -> None:
    shipped = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    generated = tmp_path / "prometheus.yml"
    generated.write_text(json.dumps(scrape_config("127.0.0.1:9464", interval="1s")))
    checked = promtool("check", "config", str(generated))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.slow
def test_the_exposition_passes_promtool_lint(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path)
    try:
        jobs.run(2)
        jobs.run(0, "divide")
        body, _ = jobs.sink.render(openmetrics=False)
    finally:
        jobs.pipeline.close()
    linted = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


# -- the dashboard ----------------------------------------------------------------------------


def dashboard_targets() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_panels_query_only_our_metrics_and_rules() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = metric_names() | rule_names("record")
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    used: set[str] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            # Names outside string literals: metrics, rules, functions, labels.
            names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", re.sub(r'"[^"]*"', "", expr)))
            ours = {n for n in names if ":" in n or n.startswith("flowscope_")}
            assert ours, f"{panel['title']}: {expr} queries no flowscope metric"
            assert ours <= known, f"{panel['title']}: unknown {ours - known}"
            used |= ours
            for variable in re.findall(r"\$(\w+)", expr):
                assert variable in variables or variable.startswith("__"), variable
    # What the dashboard promises to show.
    for name in (
        "flowscope_jobs_total",
        "flowscope_node_duration_seconds_bucket",
        "flowscope_queue_depth",
        "flowscope_jobs_running",
        "flowscope_telemetry_dropped_total",
        "node_type:flowscope_node_failures_per_executions:ratio_rate5m",
        "node_type:flowscope_node_cache_hits_per_executions:ratio_rate5m",
    ):
        assert name in used, name
    exemplar_queries = [t["expr"] for t in dashboard_targets() if t.get("exemplar")]
    assert any("flowscope_node_duration_seconds_bucket" in e for e in exemplar_queries)


# -- a real Prometheus ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Prometheus:
    url: str

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as reply:
                answer = json.loads(reply.read())
        except urllib.error.HTTPError as error:  # a bad query: Prometheus says why in the body
            answer = json.loads(error.read())
        assert answer["status"] == "success", (params, answer)
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, expr: str, check: Callable[[list[dict[str, Any]]], bool]) -> Any:
        deadline = time.monotonic() + 30
        while True:
            result = self.query(expr)
            if check(result):
                return result
            assert time.monotonic() < deadline, f"{expr} never passed its check: {result}"
            time.sleep(0.2)


# Module-scoped: Prometheus 2.x sends its first targets to the scraper only after ~5 s.
@pytest.fixture(scope="module")
def scraped_jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jobs]:
    jobs = Jobs(tmp_path_factory.mktemp("jobs"))
    yield jobs
    jobs.pipeline.close()


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, scraped_jobs: Jobs
) -> Iterator[Prometheus]:
    """The real prometheus binary scraping the jobs' metrics endpoint every second."""
    assert shutil.which("prometheus"), INSTALL_HINT
    tmp_path = tmp_path_factory.mktemp("prometheus")
    with MetricsHTTPServer(scraped_jobs.sink) as endpoint:
        config = tmp_path / "prometheus.yml"
        target = f"127.0.0.1:{endpoint.port}"
        config.write_text(json.dumps(scrape_config(target, interval="1s")))
        listen = f"127.0.0.1:{free_port()}"
        log = (tmp_path / "prometheus.log").open("w")
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address={listen}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            server = Prometheus(f"http://{listen}")
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2):
                        break
                except OSError:
                    assert time.monotonic() < deadline, "prometheus did not become ready"
                    time.sleep(0.1)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def _observed_range(jobs: Jobs, node_type: str) -> tuple[float, float]:
    """From our own endpoint: the lower bound of the lowest and the upper bound of the highest
    bucket holding observations of `node_type`. Every quantile of it lies in between, however
    Prometheus extrapolates the rates: the buckets outside never change."""
    body, _ = jobs.sink.render(openmetrics=True)
    counts: dict[float, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == "flowscope_node_duration_seconds_bucket" and (
                s.labels["node_type"] == node_type
            ):
                bound = float(s.labels["le"])
                counts[bound] = counts.get(bound, 0) + s.value
    bounds = sorted(counts)
    filled = [i for i, b in enumerate(bounds) if counts[b] > (counts[bounds[i - 1]] if i else 0)]
    lowest = bounds[filled[0] - 1] if filled[0] else 0.0
    # Prometheus answers the highest finite bound for a rank in the +Inf bucket.
    highest = bounds[filled[-1]] if math.isfinite(bounds[filled[-1]]) else bounds[-2]
    return lowest, highest


@pytest.mark.slow
def test_real_prometheus_scrapes_quantiles_rules_and_exemplars(
    prometheus: Prometheus, scraped_jobs: Jobs
) -> None:
    jobs = scraped_jobs
    jobs.run(2)
    jobs.run(0, "divide")
    # A first scrape holds these jobs; rate() then needs new observations in the next one.
    prometheus.wait_for('sum(flowscope_jobs_total{outcome="success"})', bool)
    succeeded = jobs.run(3)
    failed = jobs.run(0, "modulo")
    failures = jobs.sink.registry.get_sample_value("flowscope_jobs_total", {"outcome": "failure"})
    prometheus.wait_for(
        'sum(flowscope_jobs_total{outcome="failure"})',
        lambda r: bool(r) and float(r[0]["value"][1]) == failures,
    )

    p95 = {
        series["metric"]["node_type"]: float(series["value"][1])
        for series in prometheus.wait_for(P95_BY_NODE_TYPE, lambda r: len(r) == 3)
    }
    assert set(p95) == {"PrimitiveInt", "IntMath", "PreviewAny"}
    for node_type, seconds in p95.items():
        lowest, highest = _observed_range(jobs, node_type)
        assert lowest <= seconds <= highest, (node_type, seconds, lowest, highest)

    # The recording rules run on Prometheus' own evaluation loop.
    recorded = prometheus.wait_for(
        'node_type:flowscope_node_duration_seconds:p95_rate5m{node_type="IntMath"}',
        lambda r: bool(r) and math.isfinite(float(r[0]["value"][1])),
    )
    assert float(recorded[0]["value"][1]) > 0
    ratio = prometheus.wait_for(
        "flowscope:job_failures_per_jobs:ratio_rate5m",
        lambda r: bool(r) and math.isfinite(float(r[0]["value"][1])),
    )
    assert 0 < float(ratio[0]["value"][1]) < 1

    # Exemplars arrive only through OpenMetrics: this proves the endpoint negotiated it.
    now = time.time()
    exemplars = prometheus.api(
        "query_exemplars",
        query='flowscope_node_duration_seconds_bucket{node_type="IntMath"}',
        start=str(now - 600),
        end=str(now + 60),
    )
    by_outcome: dict[str, set[str]] = {}
    for series in exemplars:
        traces = {e["labels"]["trace_id"] for e in series["exemplars"]}
        by_outcome.setdefault(series["seriesLabels"]["outcome"], set()).update(traces)
    assert succeeded in by_outcome["success"]
    assert failed in by_outcome["failure"]


@pytest.mark.slow
def test_every_dashboard_query_runs_on_real_prometheus(
    prometheus: Prometheus, scraped_jobs: Jobs
) -> None:
    scraped_jobs.run(1)
    prometheus.wait_for("flowscope_jobs_total", bool)
    scraped_jobs.run(2)
    scraped_jobs.run(0, "divide")
    for target in dashboard_targets():
        expr = target["expr"].replace("$__rate_interval", "1m").replace("$node_type", ".*")
        prometheus.query(expr)  # asserts that Prometheus accepted it
        if "flowscope_jobs" in expr or "flowscope_node" in expr:
            # Rates and rules need a second scrape and an evaluation: wait for them.
            prometheus.wait_for(expr, bool)
