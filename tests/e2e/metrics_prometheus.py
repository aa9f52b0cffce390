"""/metrics parsed by the real `prometheus_client` OpenMetrics parser: the exposition must
parse, and its values must move when an incident is opened and then acknowledged.

usage: metrics_prometheus.py BASE_URL
"""

import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    rq = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        rq.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(rq, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def scrape(base):
    status, ctype, text = call("GET", base + "/metrics")
    assert status == 200, status
    assert ctype.startswith("application/openmetrics-text"), ctype
    samples = {}
    families = {}
    for fam in text_string_to_metric_families(text):
        families[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def main():
    base = sys.argv[1].rstrip("/")
    fam0, s0 = scrape(base)
    # Families present from the start (others appear with their first sample, and must then
    # have their type).
    always = {"ai_incident_open_incidents", "ai_incident_sla_breaches"}
    expected = {
        "ai_incident_incidents_opened": "counter",
        "ai_incident_open_incidents": "gauge",
        "ai_incident_time_to_acknowledge_seconds": "histogram",
        "ai_incident_time_to_resolve_seconds": "histogram",
        "ai_incident_sla_breaches": "counter",
        "ai_incident_escalations": "counter",
        "ai_incident_notification_deliveries": "counter",
        "ai_incident_screen_verdicts": "counter",
        "ai_incident_screen_duration_seconds": "histogram",
        "ai_incident_background_check_runs": "counter",
        "ai_incident_background_check_failures": "counter",
        "ai_incident_store_write_duration_seconds": "histogram",
    }
    for name in always:
        assert fam0.get(name) == expected[name], f"{name} missing at start: {sorted(fam0)}"

    status, _, body = call(
        "POST",
        base + "/api/v1/incidents/report",
        {
            "incident_type": "security",
            "severity": "critical",
            "description": "prometheus parser check: the agent exfiltrated a customer list",
            "reporter_email": "oncall@example.com",
        },
    )
    assert status == 201, status
    iid = json.loads(body)["incident_id"]
    _, s1 = scrape(base)
    opened = dict(incident_type="security", severity="critical", source="manual_report")
    d_opened = value(s1, "ai_incident_incidents_opened_total", **opened) - value(
        s0, "ai_incident_incidents_opened_total", **opened
    )
    d_open = value(s1, "ai_incident_open_incidents", severity="critical") - value(
        s0, "ai_incident_open_incidents", severity="critical"
    )
    assert d_opened == 1, f"opened moved by {d_opened}"
    assert d_open == 1, f"open gauge moved by {d_open}"

    status, _, _ = call(
        "POST", f"{base}/api/v1/incidents/{iid}/acknowledge", {"responder": "alice@example.com"}
    )
    assert status == 200, status
    fam2, s2 = scrape(base)
    for name, kind in fam2.items():
        assert expected.get(name) == kind, f"unexpected family {name} ({kind})"
    for name in always | {
        "ai_incident_incidents_opened",
        "ai_incident_time_to_acknowledge_seconds",
        "ai_incident_store_write_duration_seconds",
    }:
        assert name in fam2, f"{name} missing after open + acknowledge: {sorted(fam2)}"
    ack = "ai_incident_time_to_acknowledge_seconds_count"
    d_ack = value(s2, ack, severity="critical") - value(s1, ack, severity="critical")
    assert d_ack == 1, f"MTTA count moved by {d_ack}"
    print(
        f"prometheus_client parsed {len(fam2)} families; opened +{d_opened:.0f}, "
        f"open(critical) +{d_open:.0f}, MTTA count +{d_ack:.0f}: ok"
    )


if __name__ == "__main__":
    main()
