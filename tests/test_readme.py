"""The README stays true: its configuration table is the code's, its commands are CI's."""

from __future__ import annotations

import re

from app.core.settings import Settings
from tests.helpers.processes import ROOT


def test_readme_configuration_table_lists_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (.*?) \|", readme, flags=re.MULTILINE))

    expected = {
        env: f"`{default}`" if default else "(none)" for env, default, _ in Settings.documented()
    }

    assert {k: rows.get(k) for k in expected} == expected


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()

    assert "make test    #" in readme
    assert ci.strip().splitlines()[-1] == "make test"
