"""examples/grafana/anvil.json: every metric its PromQL names is one a real run exports, with the
labels the queries and legends use. A metric renamed in anvil_cli/views/api/prom.py fails here.

The metrics come from a real `anvil run --serve` (the eventful run of tests/test_api_openapi.py:
failures, retries, 429s, an alert, a budget), scraped until every series the dashboard reads
has samples, and parsed with prometheus_client's own parser."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_api_e2e import wait_for
from tests.test_api_openapi import eventful_run

DASHBOARD = Path(__file__).parent.parent / "examples" / "grafana" / "anvil.json"
DATASOURCE = "${DS_PROMETHEUS}"
SCRAPE_LABELS = frozenset({"instance", "job"})  # Prometheus adds them to every series it scrapes
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk"}
    | {"quantile"}
)
FUNCTIONS = AGGREGATIONS | {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count_over_time", "deriv", "delta", "exp", "floor", "histogram_quantile", "idelta",
    "increase", "irate", "label_replace", "last_over_time", "ln", "max_over_time", "min_over_time",
    "predict_linear", "quantile_over_time", "rate", "resets", "round", "scalar", "sort", "sort_desc",
    "sum_over_time", "time", "timestamp", "vector",
}  # fmt: skip
OPERATOR_WORDS = frozenset({"and", "or", "unless", "bool", "inf", "nan"})
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
SELECTOR = re.compile(r"(?P<metric>[A-Za-z_:][\w:]*)?\s*\{(?P<matchers>[^}]*)\}")
MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_:][\w:]*)|(?P<symbol>\S))"
)
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
LABEL_VALUES = re.compile(r"^label_values\(\s*(?P<metric>[A-Za-z_:][\w:]*)\s*,\s*(?P<label>\w+)\s*\)$")


@dataclass
class Aggregation:
    """`sum by (model) (x)`: how it groups, and the metrics it aggregates."""

    clause: str | None  # "by", "without" or None
    labels: set[str]
    metrics: set[str]


@dataclass
class Query:
    """What one PromQL expression reads."""

    metrics: set[str] = field(default_factory=set)
    selectors: list[tuple[str | None, set[str]]] = field(default_factory=list)  # (metric, matcher labels)
    aggregations: list[Aggregation] = field(default_factory=list)
    unknown_functions: set[str] = field(default_factory=set)


def _close(tokens: list[str], i: int) -> int:
    """The index of the `)` closing the `(` at `tokens[i]`."""
    depth = 0
    for j in range(i, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[j], 0)
        if depth == 0:
            return j
    raise ValueError(f"unbalanced parentheses in {' '.join(tokens)}")


def _names(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t not in "(),"]


def parse(expr: str) -> Query:
    """The metrics, label matchers and groupings of a PromQL expression (Grafana's `$variables` and
    range durations are dropped first)."""
    q = Query()
    text = STRING.sub('""', expr)
    for m in SELECTOR.finditer(text):
        q.selectors.append((m["metric"], set(MATCHER_LABEL.findall(m["matchers"]))))
    text = SELECTOR.sub(lambda m: m["metric"] or "", text)
    text = re.sub(r"\[[^\]]*\]|\boffset\s+\S+|\$\{?\w+\}?", " ", text)
    tokens = [m[m.lastgroup] for m in TOKEN.finditer(text) if m.lastgroup]
    _walk(tokens, q)
    return q


def _walk(tokens: list[str], q: Query) -> None:
    i = 0
    while i < len(tokens):
        t, after = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if t in ("on", "ignoring", "group_left", "group_right"):
            raise AssertionError(f"vector matching with {t}(...) is not checked by this test: teach it first")
        if t in ("by", "without"):  # a clause after its aggregation's argument: read with it
            i = _close(tokens, i + 1) + 1
        elif t in OPERATOR_WORDS or not re.match(r"[A-Za-z_:]", t):
            i += 1
        elif after == "(" or (t in AGGREGATIONS and after in ("by", "without")):
            if t not in FUNCTIONS:
                q.unknown_functions.add(t)
            if t in AGGREGATIONS:
                i = _aggregation(tokens, i, q)
            else:
                i += 1
        else:
            q.metrics.add(t)
            i += 1


def _aggregation(tokens: list[str], i: int, q: Query) -> int:
    """Record `agg by (labels) (arg)` or `agg (arg) by (labels)`; returns where its argument starts,
    so the walk goes on into it."""
    clause, labels = None, set[str]()
    j = i + 1
    if tokens[j] in ("by", "without"):
        clause, end = tokens[j], _close(tokens, j + 1)
        labels = set(_names(tokens[j + 2 : end]))
        j = end + 1
    arg_end = _close(tokens, j)
    if clause is None and arg_end + 1 < len(tokens) and tokens[arg_end + 1] in ("by", "without"):
        clause = tokens[arg_end + 1]
        labels = set(_names(tokens[arg_end + 3 : _close(tokens, arg_end + 2)]))
    inner = Query()
    _walk(tokens[j + 1 : arg_end], inner)
    q.aggregations.append(Aggregation(clause, labels, inner.metrics))
    return j


# -- the dashboard ---------------------------------------------------------------------------------


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # the panels of a collapsed row


def targets() -> list[Any]:
    """(panel title, expr, legend) of every query of every panel, as pytest parameters."""
    return [
        pytest.param(
            panel["title"], t["expr"], t.get("legendFormat", ""), id=f"{panel['title']}-{t['refId']}"
        )
        for panel in panels(load())
        for title in [panel["title"]]
        for t in panel.get("targets", [])
    ]


def test_the_dashboard_reads_prometheus_through_its_datasource_variable() -> None:
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert dashboard["schemaVersion"] >= 39
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(s == {"type": "prometheus", "uid": DATASOURCE} for s in sources), panel["title"]


@pytest.mark.parametrize(
    ("expr", "metrics", "selectors", "groups"),
    [
        ("sum(sum(a) by (k)) by (k)", {"a"}, [], [("by", {"k"}, {"a"}), ("by", {"k"}, {"a"})]),
        ('rate(a_total{x="1", y=~"$v"}[$__rate_interval])', {"a_total"}, [("a_total", {"x", "y"})], []),
        (
            "histogram_quantile(0.95, sum by (le, model) (rate(h_bucket[5m])))",
            {"h_bucket"},
            [],
            [("by", {"le", "model"}, {"h_bucket"})],
        ),
        ("sum(a) by (k) / on_time", {"a", "on_time"}, [], [("by", {"k"}, {"a"})]),
        (
            'sum without (s) (j{s=~"a|b"}) / r{i="x"} * 2',
            {"j", "r"},
            [("j", {"s"}), ("r", {"i"})],
            [("without", {"s"}, {"j"})],
        ),
        ('max(g{n="sum(x)"}) offset 5m > bool 1', {"g"}, [("g", {"n"})], [(None, set(), {"g"})]),
    ],
)
def test_the_promql_reader(
    expr: str,
    metrics: set[str],
    selectors: list[tuple[str, set[str]]],
    groups: list[tuple[str | None, set[str], set[str]]],
) -> None:
    q = parse(expr)
    assert (q.metrics, q.selectors, q.unknown_functions) == (metrics, selectors, set())
    assert [(a.clause, a.labels, a.metrics) for a in q.aggregations] == groups
    assert parse("sun(rate(x[1m]))").unknown_functions == {"sun"}


# -- against a real run's /metrics ----------------------------------------------------------------


def used_metrics() -> set[str]:
    used = {m for param in targets() for m in parse(param.values[1]).metrics}
    for variable in load()["templating"]["list"]:
        if variable["type"] == "query":
            m = LABEL_VALUES.match(variable["definition"])
            assert m, f"variable {variable['name']}: only label_values(metric, label) is checked"
            used.add(m["metric"])
    return used


def exported(text: str) -> dict[str, set[str]]:
    """Each sample name of an exposition (`x_total`, `h_bucket`, ...) and its labels."""
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The series of a real run's `GET /metrics`, once every one the dashboard reads has samples
    (the ETA needs recent completions, the limiter's binding a busy pool)."""
    wanted, seen = used_metrics(), {}
    with eventful_run(tmp_path_factory.mktemp("grafana")) as run:

        def complete() -> bool:
            nonlocal seen
            code, text = run.api.get("/metrics")
            assert code == 200
            seen = exported(text)
            return wanted <= seen.keys()

        try:
            wait_for(complete, timeout_s=30, what="every series of the dashboard")
        except AssertionError:
            raise AssertionError(f"a real run never exports {sorted(wanted - seen.keys())}") from None
    return seen


@pytest.mark.parametrize(("panel", "expr", "legend"), targets())
def test_each_query_reads_series_a_real_run_exports(
    series: dict[str, set[str]], panel: str, expr: str, legend: str
) -> None:
    q = parse(expr)
    assert not q.unknown_functions, f"not PromQL functions: {q.unknown_functions}"
    assert q.metrics, "a query that reads no series"
    missing = sorted(q.metrics - series.keys())
    assert not missing, f"not in /metrics (renamed in anvil_cli/views/api/prom.py?): {missing}"

    def has(metric: str, labels: set[str]) -> bool:
        return labels <= series[metric] | SCRAPE_LABELS

    for metric, labels in q.selectors:
        assert metric is not None and has(metric, labels), (metric, labels, series.get(metric or ""))
    for agg in q.aggregations:
        for metric in agg.metrics:
            assert has(metric, agg.labels), (agg.clause, agg.labels, metric, series[metric])
    in_legend = set(LEGEND_LABEL.findall(legend))
    for metric in q.metrics:
        assert has(metric, in_legend), (legend, metric, series[metric])
    for agg in q.aggregations:  # an aggregation keeps only its `by` labels, or drops its `without` ones
        kept = agg.labels if agg.clause == "by" else set() if agg.clause is None else in_legend - agg.labels
        assert in_legend <= kept, f"legend {legend!r}: {sorted(in_legend - kept)} gone after {agg.clause}"


def test_the_variable_queries_read_exported_labels(series: dict[str, set[str]]) -> None:
    for variable in load()["templating"]["list"]:
        if variable["type"] == "query":
            m = LABEL_VALUES.match(variable["definition"])
            assert m is not None
            assert m["label"] in series[m["metric"]] | SCRAPE_LABELS
