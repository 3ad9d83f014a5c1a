"""The import rules of setup.cfg's [importlinter] contracts hold, and each one catches the import
it exists to forbid: a copy of the tree with one planted import breaks exactly that contract."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = ROOT / ".venv" / "bin" / "lint-imports"

# contract id → (module to plant the import in, the planted line)
PLANTED = {
    "layers": ("app/core/domain.py", "import app.api.errors"),
    "core": ("app/core/cursors.py", "import flask"),
    "store": ("app/store/audit.py", "import celery"),
    "channels": ("tasks/channels/log.py", "import app.api.schemas"),
    "api": ("app/api/health.py", "import tasks.channels.email"),
    "relay": ("relay/publish.py", "import tasks.deliver"),
    "workers": ("tasks/deliver.py", "import relay.publish"),
    "processes": ("app/store/audit.py", "import subprocess"),
}


def contract_names() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    prefix = "importlinter:contract:"
    return {
        section.removeprefix(prefix): config[section]["name"]
        for section in config.sections()
        if section.startswith(prefix)
    }


def lint_imports(tree: Path, contract: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(LINT_IMPORTS), str(tree / "setup.cfg"), "--no-cache"]
    if contract:
        command += ["--contract", contract]
    return subprocess.run(
        command,
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def squeezed(text: str) -> str:
    return "".join(text.split())


def test_every_contract_is_kept_by_the_tree() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(contract_names())} kept, 0 broken" in result.stdout


def test_every_contract_has_a_planted_import_that_breaks_it() -> None:
    assert set(PLANTED) == set(contract_names())


@pytest.mark.parametrize("contract", sorted(PLANTED))
def test_a_planted_import_breaks_its_contract(contract: str, tmp_path: Path) -> None:
    for folder in ("app", "tasks", "relay"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    module, line = PLANTED[contract]
    planted = tmp_path / module
    planted.write_text(planted.read_text() + f"\n{line}  # planted by the test\n")

    result = lint_imports(tmp_path, contract)

    assert result.returncode != 0
    # lint-imports wraps long lines: compare without whitespace.
    assert squeezed(f"{contract_names()[contract]} BROKEN") in squeezed(result.stdout)
