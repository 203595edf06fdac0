"""README.md's API examples, run against the real server: the Python (httpx) example as it is,
and each curl command with its URL pointed at the server and the files it uploads made here.

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
CNN_EXPLORER = Path(sys.executable).parent / "cnn-explorer"
CURL = shutil.which("curl") or "/usr/bin/curl"
README_URL = "http://127.0.0.1:8000"


def fenced_block(heading: str, language: str) -> str:
    """The first ```language block in README.md under `heading` (a whole heading line), before
    the next heading."""
    text = README.read_text(encoding="utf-8")
    start = re.search(rf"^{re.escape(heading)}$", text, re.MULTILINE)
    assert start, f"README.md has no heading {heading!r}"
    fence = re.compile(rf"^```{re.escape(language)}\n(.*?)^```$", re.MULTILINE | re.DOTALL)
    block = fence.search(text, start.end())
    assert block, f"README.md has no ```{language} block after {heading!r}"
    between = text[start.end() : block.start()]
    assert not re.search(r"^#", between, re.MULTILINE), (
        f"the first ```{language} block after {heading!r} is under another heading"
    )
    return block.group(1)


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


def test_the_python_example_prints_the_worked_example(
    server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = fenced_block("### With Python (httpx)", "python")
    assert "CNN_EXPLORER_URL" in source, "the example must take its server from CNN_EXPLORER_URL"
    monkeypatch.setenv("CNN_EXPLORER_URL", server_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the example's client honours proxy variables
    exec(compile(source, "README.md (With Python)", "exec"), {"__name__": "readme_example"})
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


def test_every_setting_is_documented_with_its_environment_variable() -> None:
    from app.settings import Settings

    text = README.read_text()
    missing = [n for n in Settings.model_fields if f"`CNN_EXPLORER_{n.upper()}`" not in text]
    assert not missing, f"README.md's settings table lacks {missing}"
