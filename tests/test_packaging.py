"""The package's shape: pure core, torch-free agent, current stubs, explanatory --help."""

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_core_imports_no_network_ssh_or_database():
    code = (
        "import sys, netcut, netcut.models, netcut.graph, netcut.cost, netcut.cuts, netcut.trn, netcut.export, "
        "netcut.features, netcut.estimate\n"
        "bad = {'grpc', 'paramiko', 'sqlite3'} & set(sys.modules)\n"
        "assert not bad, bad\nprint('pure')"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure"


def test_agent_does_not_need_torch():
    code = (
        "import sys, netcut_agent.cli, netcut_agent.server, netcut_agent.benchmark, netcut_agent.store\n"
        "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules\nprint('light')"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "light"


def test_import_names_are_not_generic(tmp_path):
    """From outside the checkout, only netcut-prefixed packages are importable."""
    code = (
        "import importlib.util as u\n"
        "print([n for n in ('agent', 'host', 'protos') if u.find_spec(n)],"
        " [n for n in ('netcut', 'netcut_agent', 'netcut_host', 'netcut_protos.agent.v1.agent_pb2')"
        " if u.find_spec(n) is None])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] []"


def test_generated_stubs_match_the_proto(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools comes with the dev extra")
    sys.path.insert(0, str(ROOT / "scripts"))
    import gen_protos

    written = gen_protos.generate(tmp_path)
    assert written, "no stubs generated"
    for path in written:
        committed = ROOT / "protos" / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run python scripts/gen_protos.py"
        assert filecmp.cmp(path, committed, shallow=False), (
            f"{committed.name} is out of date with the .proto: run python scripts/gen_protos.py"
        )


@pytest.mark.parametrize(
    "argv",
    [
        ["netcut-agent", "--help"],
        ["netcut-agent", "serve", "--help"],
        ["netcut-agent", "bench", "--help"],
        ["netcut-agent", "info", "--help"],
        ["netcut-host", "--help"],
        ["netcut-host", "info", "--help"],
        ["netcut-host", "bench", "--help"],
        ["netcut-host", "cuts", "--help"],
        ["netcut-host", "export", "--help"],
    ],
)
def test_help_explains_every_command(argv):
    result = run_cli(*argv)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) > 5
    assert "usage:" in result.stdout
