"""What a new user reads and runs first: the README's facts hold, its commands paste as they
are, and a checkout's local data is its own."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = README + "".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))


def shell_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOCS, re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_gives_the_development_login_and_what_ctrl_c_leaves_running():
    head = README[: README.index("\n## What it does")]
    assert "admin / admin" in head
    assert "Ctrl-C stops" in head and "keep running" in head and "make services-down" in head


def test_every_command_in_the_readme_pastes_as_it_is():
    """No [--optional] brackets in a command (a shell passes them on as they are)."""
    offending = [line for line in shell_lines() if re.search(r"\[--?[a-z]", line.split("  #")[0])]
    assert shell_lines() and offending == []


def test_what_the_readme_exports_to_the_working_directory_is_ignored_by_git():
    for name in ("outcomes-20261129T142619Z.csv", "outcomes-20261129T142619Z.ndjson"):
        result = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT, check=False)
        assert result.returncode == 0, f"{name} (what curl -OJ saves) is not ignored"


def make_env(directory: Path) -> dict[str, str]:
    output = subprocess.run(
        ["make", "-s", "-f", str(ROOT / "Makefile"), "env"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    return dict(pair.split("=", 1) for pair in output.removeprefix("export ").split())


def test_each_checkout_has_its_own_database_topic_and_group(tmp_path):
    here, other = make_env(ROOT), make_env(tmp_path)
    for name in ("DB_NAME", "KAFKA_TOPIC_AUCTION_OUTCOMES", "KAFKA_CONSUMER_GROUP"):
        assert here[name] != other[name], name
    assert here["DB_NAME"] != "helios_analytics"  # never the service's own default
    assert re.fullmatch(r"analytics_[a-z0-9_]+", here["DB_NAME"])
    assert make_env(ROOT) == here  # stable for a checkout
