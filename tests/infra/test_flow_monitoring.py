"""The circuit breaker's log-based metric and alert match the lines jobrelay.breakers logs."""

from __future__ import annotations

import logging

from tests.infra.test_roots_and_pool import MONITORING, REPO, _entry, _format_string, _metric_filter, matches

BREAKERS = REPO / "jobrelay" / "breakers.py"
LABELS = {"env": "prod", "type": "report"}


def test_the_breaker_metric_counts_an_opening_and_a_reopening_but_not_a_close() -> None:
    flt = _metric_filter("jobrelay/breaker_opened")
    opened = _entry(
        "worker",
        logging.WARNING,
        _format_string(BREAKERS, "circuit breaker opened: "),
        ("report", "prod", 9, 10),
        LABELS,
    )
    again = _entry(
        "worker",
        logging.WARNING,
        _format_string(BREAKERS, "circuit breaker opened again"),
        ("j1", "report", "prod", 300.0),
        LABELS,
    )
    closed = _entry(
        "worker", logging.INFO, _format_string(BREAKERS, "circuit breaker closed"), ("j1", "report"), LABELS
    )
    assert matches(flt, opened) and matches(flt, again)
    assert not matches(flt, closed)
    assert {"env", "type"} <= set(opened["labels"])


def test_the_breaker_alert_fires_on_any_opening_grouped_by_type() -> None:
    alert = MONITORING.one("google_monitoring_alert_policy", "breaker_opened")
    text = str(alert.raw)
    assert "local.m.breaker" in text and "COMPARISON_GT" in text and "metric.label.type" in text
