"""README.md's promises, checked: its curl commands and the Python example of docs/api.md run
against the real server (each curl with its URL pointed at the server and the files it uploads
made here), and its API table, layout and make targets are what the app, the tree and the
Makefile have.

The Python example uses the worked example (32x32x3 -> conv 10 5x5 pad 2 -> maxpool 2 -> flatten
-> dense 10 softmax); its printed shapes and parameter counts are checked against the arithmetic.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.live_server import ROOT, free_port, running_server, server_env

README = ROOT / "README.md"
API_DOC = ROOT / "docs" / "api.md"
CNN_EXPLORER = Path(sys.executable).parent / "cnn-explorer"
CURL = shutil.which("curl") or "/usr/bin/curl"
README_URL = "http://127.0.0.1:8000"


def fenced_block(heading: str, language: str, document: Path = README) -> str:
    """The first ```language block in `document` under `heading` (a whole heading line), before
    the next heading."""
    text = document.read_text(encoding="utf-8")
    name = document.relative_to(ROOT)
    start = re.search(rf"^{re.escape(heading)}$", text, re.MULTILINE)
    assert start, f"{name} has no heading {heading!r}"
    fence = re.compile(rf"^```{re.escape(language)}\n(.*?)^```$", re.MULTILINE | re.DOTALL)
    block = fence.search(text, start.end())
    assert block, f"{name} has no ```{language} block after {heading!r}"
    between = text[start.end() : block.start()]
    assert not re.search(r"^#", between, re.MULTILINE), (
        f"the first ```{language} block after {heading!r} in {name} is under another heading"
    )
    return block.group(1)


def section(heading: str) -> str:
    """README.md's text under `heading` (a whole heading line), up to the next heading of that
    level or higher."""
    text = README.read_text(encoding="utf-8")
    start = re.search(rf"^{re.escape(heading)}$", text, re.MULTILINE)
    assert start, f"README.md has no heading {heading!r}"
    level = heading.split()[0]
    end = re.compile(rf"^#{{1,{len(level)}}} ", re.MULTILINE).search(text, start.end())
    return text[start.end() : end.start() if end else len(text)]


def curl_commands(block: str) -> list[list[str]]:
    """A shell block of curl commands (comments, quoted newlines) -> one argument list each."""
    words = shlex.split(block, comments=True)
    starts = [i for i, word in enumerate(words) if word == "curl"]
    assert starts and starts[0] == 0, f"not a block of curl commands:\n{block}"
    return [words[a:b] for a, b in zip(starts, [*starts[1:], len(words)], strict=True)]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cnn-explorer` (what `make run` starts) on a free port, its data directory temporary."""
    port = free_port()
    folder = tmp_path_factory.mktemp("readme-server")
    env = server_env(port, data_dir=folder / "data")
    with running_server([str(CNN_EXPLORER)], env, folder / "server.log") as url:
        yield url


@pytest.mark.slow  # starts cnn-explorer
def test_the_python_example_prints_the_worked_example(
    server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = fenced_block("## With Python (httpx)", "python", API_DOC)
    assert "CNN_EXPLORER_URL" in source, "the example must take its server from CNN_EXPLORER_URL"
    monkeypatch.setenv("CNN_EXPLORER_URL", server_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the example's client honours proxy variables
    exec(compile(source, "docs/api.md (With Python)", "exec"), {"__name__": "readme_example"})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines

    conv_params = (5 * 5 * 3 + 1) * 10  # (F*F*D + 1) * K = 760
    dense_params = (16 * 16 * 10 + 1) * 10  # (inputs + 1) * units = 25610
    shapes = [[32, 32, 10], [16, 16, 10], [16 * 16 * 10], [10]]
    assert lines[0] == f"{shapes} {conv_params + dense_params}"
    # The conv layer's .npy, and its explanation adding up: products + bias = pre-activation.
    assert lines[1] == "(32, 32, 10) True"
    top = ast.literal_eval(lines[2])
    assert set(top) == {"index", "label", "p"}
    assert 0 <= top["index"] < 10
    assert 0.1 <= top["p"] <= 1  # the most probable of 10 classes


def write_photo(path: Path) -> None:
    """A 32x32 RGB picture: a red disc and a blue bar on a green-grey gradient."""
    image = Image.new("RGB", (32, 32))
    image.putdata([(4 * x, 90 + 2 * y, 60) for y in range(32) for x in range(32)])
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 4, 18, 18), fill=(220, 30, 30))
    draw.rectangle((20, 6, 26, 28), fill=(30, 40, 200))
    image.save(path)


def write_digit(path: Path) -> None:
    """A 28x28 grayscale 7, white ink on black as the digits model expects (MNIST's way)."""
    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(7, 7), (21, 7), (12, 22)], fill=255, width=3)
    image.save(path)


UPLOADS = {"photo.png": write_photo, "digit.png": write_digit}


@pytest.mark.slow  # starts cnn-explorer
def test_the_curl_commands_answer_as_described(server_url: str, tmp_path: Path) -> None:
    if not Path(CURL).exists():
        pytest.fail(f"curl is not installed ({CURL}): apt-get install curl", pytrace=False)
    block = fenced_block("### With curl", "sh")
    assert README_URL in block, f"the curl examples no longer use {README_URL}"
    commands = curl_commands(block.replace(README_URL, server_url))
    uploads = {m for c in commands for m in re.findall(r"^image=@(.+)$", "\n".join(c), re.M)}
    assert uploads == set(UPLOADS), "the curl examples upload other files than this test makes"
    for name, write in UPLOADS.items():
        write(tmp_path / name)

    replies = {}
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    for command in commands:
        url = next(word for word in command if word.startswith("http"))
        assert url.startswith(f"{server_url}/api/v1/"), url
        done = subprocess.run(
            [CURL, *command[1:]], cwd=tmp_path, env=env, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        endpoint = url.removeprefix(f"{server_url}/api/v1/")
        uses = [w.split("=")[0] for w in command if w.startswith(("network=", "model="))]
        replies[" ".join([endpoint, *uses])] = json.loads(done.stdout)
    assert set(replies) == {"shapes", "forward network", "forward model"}, list(replies)

    shapes = replies["shapes"]
    assert shapes.get("valid") is True, shapes
    assert shapes["layers"][0]["output_shape"] == [32, 32, 10]
    assert shapes["total_params"] == (5 * 5 * 3 + 1) * 10

    run = replies["forward network"]
    assert set(run) >= {"run_id", "layers", "output"}, run
    assert [layer["output_shape"] for layer in run["layers"]] == [
        [32, 32, 8],  # padding "same": (32 - 3 + 2*1) / 1 + 1 = 32
        [16, 16, 8],
        [16 * 16 * 8],
        [10],
    ]
    assert all(layer["grid_url"].startswith("/api/v1/runs/") for layer in run["layers"])

    model_run = replies["forward model"]
    assert set(model_run) >= {"run_id", "input_shape", "output"}, model_run
    assert model_run["input_shape"] == [28, 28, 1]
    top = model_run["output"]["top"][0]
    assert top["label"] in [str(digit) for digit in range(10)], top  # the digits model's labels


ENDPOINT = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/api/v1/[^`?]*)[^`]*`(?: \(`(\.\w+)`\))?")


def same_route(path: str) -> str:
    """A route path with its parameters unnamed: /runs/{id}/input.png -> /runs/{}/input.png"""
    return re.sub(r"\{[^}]*\}", "{}", path)


def readme_endpoints() -> set[tuple[str, str]]:
    """(method, path) of every endpoint in the API table; `(`.npy`)` after a path names the same
    path with that extension too."""
    rows = [line for line in section("## The API in brief").splitlines() if line.startswith("| `")]
    assert rows, "README.md's API section has no table of endpoints"
    found = set()
    for row in rows:
        first_cell = row.split(" | ")[0]
        for method, path, other_extension in ENDPOINT.findall(first_cell):
            found.add((method, same_route(path)))
            if other_extension:
                found.add((method, same_route(path).rsplit(".", 1)[0] + other_extension))
    return found


def test_the_api_table_lists_every_endpoint_the_app_serves_and_no_other() -> None:
    from app.web.main import create_app

    paths = create_app().openapi()["paths"]
    served = {
        (method.upper(), same_route(path))
        for path, operations in paths.items()
        if path.startswith("/api/v1/")
        for method in operations
    }
    listed = readme_endpoints()
    assert not listed - served, f"README.md lists endpoints the app lacks: {listed - served}"
    assert not served - listed, f"README.md's API table lacks {sorted(served - listed)}"


def layout_entries() -> list[tuple[list[str], str]]:
    """README.md's layout block -> [(the paths in the first column, the description)], a
    continuation line's description joined to its entry's."""
    entries: list[tuple[list[str], str]] = []
    for line in fenced_block("## Layout", "").splitlines():
        first, _, description = line.strip().partition("  ")
        if line.startswith(" "):
            entries[-1] = (entries[-1][0], f"{entries[-1][1]} {line.strip()}")
        else:
            entries.append((re.split(r"[,\s]+", first.strip(", ")), description.strip()))
    return entries


def test_the_layout_names_every_room_and_only_what_is_there() -> None:
    entries = layout_entries()
    for paths, description in entries:
        for path in paths:
            assert (ROOT / path).exists(), f"README.md's layout names {path}, which is not there"
        folder = ROOT / paths[0] if paths[0].endswith("/") else (ROOT / paths[0]).parent
        for name in re.findall(r"(?<![\w/.])(\w+\.py|\w+/)(?!\w)", description):
            assert (folder / name).exists(), f"README.md's layout names {name} in {folder}"
    named = {path for paths, _ in entries for path in paths}
    rooms = [p.name for p in sorted((ROOT / "app").iterdir()) if p.is_dir() and p.name[0] != "_"]
    missing = [room for room in rooms if f"app/{room}/" not in named]
    assert not missing, f"README.md's layout leaves out {missing} of app/"


def test_every_make_target_it_names_exists() -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    named = set(re.findall(r"`make ([\w-]+)", README.read_text(encoding="utf-8")))
    assert {"run", "test", "test-quick"} <= named
    assert named <= targets, f"README.md names make targets the Makefile lacks: {named - targets}"
