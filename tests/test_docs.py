"""docs/: the settings page is what its generator writes from app/settings.py today, and every
link in the README and the docs leads somewhere."""

from __future__ import annotations

import difflib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from app.settings import Settings
from tests.live_server import ROOT

DOCS = ROOT / "docs"
GENERATOR = DOCS / "settings_table.py"
SETTINGS_MD = DOCS / "settings.md"


def generator() -> ModuleType:
    """docs/settings_table.py as a module (it is a script, like deploy/requirements.py)."""
    spec = importlib.util.spec_from_file_location("settings_table", GENERATOR)
    assert spec and spec.loader, f"{GENERATOR} is missing"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_md_is_what_the_generator_writes_from_app_settings() -> None:
    written = SETTINGS_MD.read_text(encoding="utf-8")
    fresh = generator().settings_markdown()
    diff = "".join(
        difflib.unified_diff(
            written.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            "docs/settings.md",
            "python docs/settings_table.py",
        )
    )
    assert written == fresh, f"docs/settings.md is out of date: run `make docs`\n{diff}"


def test_the_generator_command_says_when_the_page_is_out_of_date(tmp_path: Path) -> None:
    check = [sys.executable, str(GENERATOR), "--check"]
    done = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_setting_is_documented_with_its_environment_variable_and_default() -> None:
    rows = {
        m[1]: m[2]
        for m in re.finditer(r"^\| `(\w+)` \| ([^|]+) \|", SETTINGS_MD.read_text(), re.MULTILINE)
    }
    prefix = Settings.model_config["env_prefix"]
    missing = [n for n in Settings.model_fields if f"{prefix}{n.upper()}" not in rows]
    assert not missing, f"docs/settings.md lacks {missing}"
    assert rows["CNN_EXPLORER_PORT"] == "`8000`" and rows["CNN_EXPLORER_WORKERS"] == "`1`"
    assert rows["CNN_EXPLORER_MODELS_DIR"] == "`app/model_files`"  # relative to the repository


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_link_in_the_readme_and_the_docs_leads_to_a_file_or_heading() -> None:
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
                slugs = {
                    re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings
                }
                if anchor not in slugs:
                    broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, f"links that lead nowhere: {broken}"


def test_the_readme_links_every_page_of_docs() -> None:
    readme = ROOT / "README.md"
    linked = {Path(t.partition("#")[0]) for t in LINK.findall(readme.read_text(encoding="utf-8"))}
    pages = {page.relative_to(ROOT) for page in DOCS.glob("*.md")}
    assert pages - linked == set(), f"README.md does not link {sorted(map(str, pages - linked))}"
