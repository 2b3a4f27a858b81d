"""docs/configuration.md lists exactly the environment variables the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
# Python: the settings helpers and os.environ; shell: ${NAME:-default} and friends.
_PYTHON_READ = re.compile(
    r"""(?:env_(?:str|int|float|bool|list|choice)|os\.environ\.get|os\.getenv|os\.environ\.setdefault)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
    r"""|os\.environ\[["']([A-Z][A-Z0-9_]+)["']\]"""
)
_SHELL_READ = re.compile(r"\$\{([A-Z][A-Z0-9_]+):[-=?]")
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE"}  # Django's own, set by manage.py and the WSGI module


def variables_read() -> dict[str, set[str]]:
    files = [
        *ROOT.glob("analytics/*.py"),
        *ROOT.glob("outcomes/**/*.py"),
        ROOT / "gunicorn.conf.py",
        ROOT / "entrypoint.sh",
        *ROOT.glob("scripts/*.sh"),
    ]
    found: dict[str, set[str]] = {}
    for path in files:
        text = path.read_text()
        names = [a or b for a, b in _PYTHON_READ.findall(text)]
        if path.suffix == ".sh":
            names += _SHELL_READ.findall(text)
        for name in names:
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return {name: where for name, where in found.items() if name not in NOT_SETTINGS}


def variables_documented() -> set[str]:
    section = (ROOT / "docs" / "configuration.md").read_text()
    first_cells = re.findall(r"^\| ([^|]+) \|", section, re.MULTILINE)
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_the_scan_finds_what_it_should():
    read = variables_read()
    assert {"DB_HOST", "KAFKA_BROKERS", "GUNICORN_KEEPALIVE", "KAFKA_START_TIMEOUT", "PYTHON"} <= set(read)
    assert "DB_HOST" in variables_documented()


def test_every_variable_the_code_reads_is_documented():
    undocumented = {
        name: sorted(where) for name, where in variables_read().items() if name not in variables_documented()
    }
    assert undocumented == {}, "add these to docs/configuration.md's tables"


def test_the_readme_lists_no_variable_the_code_ignores():
    assert sorted(variables_documented() - set(variables_read())) == []


def test_the_readme_fits_on_two_screens_and_links_to_the_rest():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 120
    for name in ("api", "architecture", "configuration", "operations", "benchmarks", "development"):
        assert f"](docs/{name}.md)" in readme


def test_every_relative_link_in_the_docs_resolves():
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" not in target and not (path.parent / target).exists():
                broken.append(f"{path.name}: {target}")
    assert broken == []
