"""The control service's alert rules fire when they should and stay silent before (promtool)."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from polyp_gitops.render import helm_template
from polyp_gitops.tools import find_tool


def _rendered_rules(repo_root):
    objects = helm_template(repo_root / "charts" / "control-service", "control-service", "polyp")
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def test_rules_pass_promtool_check(repo_root, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rendered_rules(repo_root)))
    result = subprocess.run(
        [find_tool("promtool"), "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_rules_unit_tests_pass(repo_root, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rendered_rules(repo_root)))
    shutil.copy(repo_root / "tests" / "alerts" / "rules_test.yaml", tmp_path)
    result = subprocess.run(
        [find_tool("promtool"), "test", "rules", str(tmp_path / "rules_test.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_stale_threshold_is_a_value(repo_root):
    objects = helm_template(
        repo_root / "charts" / "control-service", "control-service", "polyp", values={"alerts": {"modelStaleHours": 12}}
    )
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    stale = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "PolypModelStale")
    assert stale["expr"].endswith("> 12 * 3600")
