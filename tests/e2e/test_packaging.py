"""The packaging files: install layout, the systemd unit, the default
config and the Prometheus rules, checked with the tools operators use."""
import json
import os
import shutil
import stat
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT, run_cli

PROMTOOL = shutil.which("promtool")
RULES = os.path.join(ROOT, "packaging", "prometheus", "caxton-rules.yml")


def test_install_into_destdir(tmp_path):
    dest = tmp_path / "root"
    r = subprocess.run(["sh", os.path.join(ROOT, "packaging", "install.sh"), BIN, str(dest),
                        "/opt/caxton"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    binary = dest / "opt/caxton/bin/caxton"
    assert binary.exists() and os.access(binary, os.X_OK)
    unit = (dest / "etc/systemd/system/caxton.service").read_text()
    for line in ("Type=notify", "User=caxton", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "ExecStart=/opt/caxton/bin/caxton serve", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in unit, line
    assert "ReadWritePaths=" in unit and "/var/lib/caxton" in unit and "/var/log/caxton" in unit
    config = dest / "etc/caxton/caxton.yaml"
    assert config.exists()
    assert stat.S_IMODE(os.stat(dest / "var/lib/caxton").st_mode) == 0o700
    assert (dest / "etc/logrotate.d/caxton").exists()
    # The installed config is valid and means the defaults.
    r = run_cli("config", "validate", str(config))
    assert r.returncode == 0, r.stdout + r.stderr


def test_install_keeps_an_existing_config(tmp_path):
    dest = tmp_path / "root"
    (dest / "etc/caxton").mkdir(parents=True)
    mine = dest / "etc/caxton/caxton.yaml"
    mine.write_text("api:\n  workers: 2\n")
    r = subprocess.run(["sh", os.path.join(ROOT, "packaging", "install.sh"), BIN, str(dest),
                        "/usr/local"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert mine.read_text() == "api:\n  workers: 2\n"


@pytest.mark.skipif(not PROMTOOL, reason="promtool (Debian package prometheus) is missing")
def test_alert_rules_are_valid():
    r = subprocess.run([PROMTOOL, "check", "rules", RULES], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def expected_alert(name, eval_time, labels):
    """An exp_alerts entry with the rule's annotations as Prometheus renders
    them for instance "a"."""
    with open(RULES) as f:
        rules = yaml.safe_load(f)["groups"][0]["rules"]
    rule = next(r for r in rules if r.get("alert") == name)
    annotations = {k: v.replace("{{ $labels.instance }}", "a")
                      .replace("{{ $labels.agent }}", labels.get("agent", ""))
                   for k, v in rule["annotations"].items()}
    return {"eval_time": eval_time, "alertname": name,
            "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}]}


def no_alert(name, eval_time):
    """An alert_rule_test entry saying name is not firing at eval_time."""
    return {"eval_time": eval_time, "alertname": name, "exp_alerts": []}


@pytest.mark.skipif(not PROMTOOL, reason="promtool (Debian package prometheus) is missing")
def test_alert_rules_fire_on_the_server_metrics(tmp_path):
    """promtool's rule unit tests, fed with series named as /metrics names them."""
    status = 'caxton_http_requests_total{instance="a",job="caxton",method="GET",' \
             'route="/api/v1/status",status="%s"}'
    spec = {
        "rule_files": [RULES],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'caxton_config_validation_failures_total{instance="a",job="caxton"}',
                 "values": "0 0 1 1 1"},
                {"series": status % "200", "values": "0+60x20"},
                {"series": status % "500", "values": "0+6x20"},
                {"series": 'caxton_agents{instance="a",job="caxton",state="failed"}',
                 "values": "0 1 1 1 1 1 1 1 1"},
                {"series": 'caxton_agent_queue_depth{agent="w",instance="a",job="caxton"}',
                 "values": "0+20x40"},
                {"series": 'caxton_agent_messages_total{agent="w",instance="a",job="caxton",'
                           'outcome="answered"}', "values": "0+60x40"},
                {"series": 'caxton_agent_messages_total{agent="w",instance="a",job="caxton",'
                           'outcome="failed"}', "values": "0+30x40"},
                # memory: instance a goes wrong, instance b stays healthy
                {"series": 'caxton_memory_scope_violations_total{instance="a",job="caxton"}',
                 "values": "0 0 0 1x20"},
                {"series": 'caxton_memory_scope_violations_total{instance="b",job="caxton"}',
                 "values": "3x23"},
                {"series": 'caxton_memory_up{instance="a",job="caxton"}',
                 "values": "1 1 0x10"},
                {"series": 'caxton_memory_up{instance="b",job="caxton"}', "values": "1x12"},
                {"series": 'caxton_memory_usage{instance="a",job="caxton"}',
                 "values": "0.1+0.01x60"},
                {"series": 'caxton_memory_usage{instance="b",job="caxton"}',
                 "values": "0.79x60"},
            ],
            "alert_rule_test": [
                expected_alert("CaxtonConfigValidationFailures", "4m",
                               {"severity": "warning", "instance": "a", "job": "caxton"}),
                expected_alert("CaxtonHighErrorRate", "15m",
                               {"severity": "warning", "instance": "a"}),
                expected_alert("CaxtonAgentFailed", "8m",
                               {"severity": "warning", "instance": "a", "job": "caxton",
                                "state": "failed"}),
                expected_alert("CaxtonAgentQueueBacklog", "30m",
                               {"severity": "warning", "instance": "a", "job": "caxton",
                                "agent": "w"}),
                expected_alert("CaxtonAgentFailures", "30m",
                               {"severity": "warning", "instance": "a", "agent": "w"}),
                # a violation fires at once, and stops when none came for 10 minutes
                no_alert("CaxtonMemoryScopeViolation", "2m"),
                expected_alert("CaxtonMemoryScopeViolation", "5m",
                               {"severity": "warning", "instance": "a", "job": "caxton"}),
                no_alert("CaxtonMemoryScopeViolation", "20m"),
                # unavailable since 2m: pending for 2 minutes, then firing
                no_alert("CaxtonMemoryUnavailable", "3m"),
                expected_alert("CaxtonMemoryUnavailable", "5m",
                               {"severity": "critical", "instance": "a", "job": "caxton"}),
                # growing 0.6 per hour passes 0.8 (predicted) after 10m, fires 15m later;
                # a flat 0.79 never does
                no_alert("CaxtonMemoryGrowth", "20m"),
                expected_alert("CaxtonMemoryGrowth", "40m",
                               {"severity": "warning", "instance": "a", "job": "caxton"}),
            ],
        }],
    }
    tests = tmp_path / "rules_test.yml"
    tests.write_text(json.dumps(spec))  # JSON is YAML
    r = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
