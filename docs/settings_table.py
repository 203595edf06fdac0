"""Write docs/settings.md from app/settings.py: one row per setting with its environment
variable, default and meaning. The Field descriptions in app/settings.py are the documentation;
this only lays them out, grouped under the `# -- section --` comments of the Settings class.

    python docs/settings_table.py            write docs/settings.md (also: make docs)
    python docs/settings_table.py --check    exit 1, saying so, when docs/settings.md is stale

tests/test_docs.py runs it, so a setting added or reworded without regenerating fails the suite.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import typing
from pathlib import Path

from pydantic.fields import FieldInfo

from app import settings as settings_module
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "settings.md"
SECTION = re.compile(r"^\s*# -- (?P<name>[^-].*?) -+$")
FIELD = re.compile(r"^    (?P<name>[a-z_]+): ")


def sections() -> dict[str, str]:
    """Setting name -> the `# -- section --` comment above it in the Settings class."""
    found, current = {}, "other"
    for line in inspect.getsource(Settings).splitlines():
        if heading := SECTION.match(line):
            current = heading["name"]
        elif field := FIELD.match(line):
            found[field["name"]] = current
    return found


def default_text(field: FieldInfo) -> str:
    """The default as it is written in an environment variable, in backticks; `computed` when
    it depends on the machine (the description then says how)."""
    if field.default_factory is not None:
        if field.default_factory in (list, dict):
            return f"`{json.dumps(field.default_factory())}`"
        return "computed"
    value = field.default
    if isinstance(value, Path):
        value = value.relative_to(ROOT) if value.is_relative_to(ROOT) else value
    return f"`{value}`"


def meaning(field: FieldInfo) -> str:
    """The field's description, plus its allowed values when it is a Literal."""
    text = " ".join((field.description or "").split())
    if typing.get_origin(field.annotation) is typing.Literal:
        text += " One of " + ", ".join(f"`{v}`" for v in typing.get_args(field.annotation)) + "."
    return text.replace("|", "\\|")


def settings_markdown() -> str:
    """The whole of docs/settings.md."""
    prefix = Settings.model_config.get("env_prefix", "")
    grouped: dict[str, list[str]] = {}
    where = sections()
    for name, field in Settings.model_fields.items():
        row = f"| `{prefix}{name.upper()}` | {default_text(field)} | {meaning(field)} |"
        grouped.setdefault(where.get(name, "other"), []).append(row)
    source = settings_module.__name__.replace(".", "/") + ".py"
    lines = [
        "# Settings",
        "",
        "<!-- Generated from app/settings.py by `python docs/settings_table.py` (make docs):",
        "edit the Field descriptions there, not this file; tests/test_docs.py fails when it is",
        "stale. -->",
        "",
        f"Every limit and knob of the server is an environment variable, `{prefix}` and the",
        f"setting's name in capitals, read by `{source}`: the one place they are defined. Set them",
        "for `make run` (`CNN_EXPLORER_PORT=8080 make run`), `cnn-explorer`, or the container",
        "(`docker run -e CNN_EXPLORER_WORKERS=2 ...`). An invalid value stops the server at",
        "start-up, naming the setting and what is wrong with it.",
    ]
    for section, rows in grouped.items():
        lines += ["", f"## {section[0].upper()}{section[1:]}", ""]
        lines += ["| variable | default | meaning |", "|---|---|---|", *rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = settings_markdown()
    if argv == ["--check"]:
        if TARGET.exists() and TARGET.read_text(encoding="utf-8") == text:
            return 0
        print(f"{TARGET.relative_to(ROOT)} is out of date: run `make docs`", file=sys.stderr)
        return 1
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
