"""The devnet is its own distribution (devnet/, golem-vm-devnet): the requestor's wheel
holds no server code, the devnet leans only on the requestor's light modules, and
``golem devnet`` says how to install it where it is missing."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, GolemEnv

DEVNET_PACKAGE = REPO / "devnet" / "golem_devnet"
# What the devnet may use from golem: errors, terminal-safe text, the click context.
# golem's base modules and its light click modules (the context, the lazy group
# that shows a group's help, the shared --json option): none imports services,
# the database or the network stack.
ALLOWED_REQUESTOR_MODULES = {
    "requestor.errors",
    "requestor.text",
    "requestor.cli.context",
    "requestor.cli.lazy",
    "requestor.cli.params",
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # "from requestor import services" names a module too.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_devnet_imports_no_requestor_services_or_database() -> None:
    sources = sorted(DEVNET_PACKAGE.rglob("*.py"))
    assert len(sources) >= 10  # the walk sees the package
    offending: dict[str, list[str]] = {}
    for path in sources:
        for module in _imports(path):
            if module == "requestor" or not module.startswith("requestor."):
                continue
            if not any(
                module == allowed or module.startswith(f"{allowed}.")
                for allowed in ALLOWED_REQUESTOR_MODULES
            ):
                offending.setdefault(path.name, []).append(module)
    assert offending == {}
    # The check does see a forbidden import.
    assert "requestor.services.create" in _imports(REPO / "tests" / "support" / "fleet.py")


def test_the_devnet_cli_never_exits_the_process_itself() -> None:
    """The root group alone turns errors into exit codes: no sys.exit, ctx.exit or
    SystemExit in the devnet's commands."""
    path = DEVNET_PACKAGE / "cli.py"
    calls: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr == "exit":
            calls.append(f"{node.lineno}: .exit")
        if isinstance(node, ast.Name) and node.id == "SystemExit":
            calls.append(f"{node.lineno}: SystemExit")
    assert calls == []


def _build_wheel(source: Path, out: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of ``source`` (a build writes build/ and
    egg-info next to the sources), offline: the venv's setuptools builds it."""
    copy = out / "src"
    shutil.copytree(
        source,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.egg-info", "build", ".*_cache", "devnet"
        )
        if source == REPO
        else shutil.ignore_patterns("__pycache__", "*.egg-info", "build"),
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            str(copy),
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.mark.timeout(240)
def test_the_requestor_wheel_has_no_devnet_and_the_devnet_wheel_builds(tmp_path: Path) -> None:
    requestor_out = tmp_path / "requestor"
    requestor_out.mkdir()
    names = zipfile.ZipFile(_build_wheel(REPO, requestor_out)).namelist()
    assert any(name.startswith("requestor/cli/main.py") for name in names)
    server = [
        name
        for name in names
        if name.startswith(("requestor/devnet", "golem_devnet"))
        or name in {"requestor/cli/devnet.py"}
    ]
    assert server == []

    devnet_out = tmp_path / "devnet"
    devnet_out.mkdir()
    wheel = _build_wheel(REPO / "devnet", devnet_out)
    assert wheel.name.startswith("golem_vm_devnet-")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"golem_devnet/cli.py", "golem_devnet/network.py", "golem_devnet/py.typed"} <= set(names)
    assert not [name for name in names if name.startswith(("requestor/", "tests/"))]


# Runs golem as if golem_devnet were not installed: a None entry in sys.modules
# makes every import of it fail as a missing module does.
_WITHOUT_DEVNET = (
    "import sys; sys.modules['golem_devnet'] = None; sys.argv = ['golem', *sys.argv[1:]]; "
    "from requestor.cli.main import main; main()"
)


@pytest.mark.parametrize(
    "args", [("devnet",), ("devnet", "--help"), ("devnet", "up", "--providers", "2")]
)
def test_without_the_devnet_golem_devnet_says_how_to_install_it(
    golem_env: GolemEnv, args: tuple[str, ...]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_DEVNET, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=golem_env.env,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: 'golem devnet' is not installed")
    assert "pip install 'golem-vm-requestor[devnet]'" in lines[0]
    assert "pip install ./devnet" in lines[0]


def test_without_the_devnet_golem_help_still_works(golem_env: GolemEnv) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_DEVNET, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=golem_env.env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "devnet" in done.stdout and "not installed" in done.stdout
    assert "vm " in done.stdout


def test_golem_help_loads_only_the_devnet_cli_module(golem_env: GolemEnv) -> None:
    """``golem --help`` shows the devnet's one-line help: that takes golem_devnet.cli
    (click, the standard library and the plain route table), never the servers or
    their libraries."""
    # -X importtime does not see a module loaded by importlib.import_module (the
    # lazy group's way), so the process reports what it holds at exit instead.
    code = (
        "import atexit, sys; atexit.register(lambda: print(*sorted(m for m in sys.modules "
        "if m.startswith(('golem_devnet', 'aiohttp', 'asyncssh', 'pydantic'))), "
        "file=sys.stderr)); sys.argv = ['golem', '--help']; "
        "from requestor.cli.main import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=golem_env.env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Run a local Golem network" in done.stdout
    assert done.stderr.split() == ["golem_devnet", "golem_devnet.cli", "golem_devnet.routes"]


def test_the_two_distributions_pin_each_other_at_their_versions() -> None:
    """Released together from one repository: golem-vm-requestor[devnet] wants this
    golem-vm-devnet, which wants this golem-vm-requestor (make's one pip call
    resolves both from the checkout only while these agree)."""
    import tomllib

    root = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    devnet = tomllib.loads((REPO / "devnet" / "pyproject.toml").read_text())["project"]
    assert (root["name"], devnet["name"]) == ("golem-vm-requestor", "golem-vm-devnet")
    assert root["optional-dependencies"]["devnet"] == [f"golem-vm-devnet=={devnet['version']}"]
    assert f"golem-vm-requestor=={root['version']}" in devnet["dependencies"]
