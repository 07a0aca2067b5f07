"""Fleets: a real OpenSSH server per "board" on loopback, provisioned from a local wheelhouse
with no network, host keys checked, profiling spread over the boards and surviving one that dies."""

from __future__ import annotations

import json
import platform
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, run_cli
from sshd_boards import SSHDBoard, have_sshd, keygen

from netcut import models
from netcut.cuts import analyse
from netcut_host.fleet import disagreeing
from netcut_host.inventory import InventoryError, load
from netcut_host.provision import platform_tags, wheel_version

ROOT = Path(__file__).resolve().parent.parent
TARGET = "lab"
FAST = ["--min-seconds", "0.3", "--warmup-seconds", "0", "--warmup-runs", "2", "--min-runs", "10"]

needs_sshd = pytest.mark.skipif(
    not have_sshd() and not os.environ.get("CI"),
    reason="needs OpenSSH's sshd (apt-get install openssh-server; CI installs it)",
)


# ------------------------------------------------------------------ inventory (pure)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


GOOD = """\
[targets.pi4]
runtime = "onnxruntime"
threads = 4

[[targets.pi4.boards]]
name = "pi4-lab-1"
host = "192.168.1.20"

[[targets.pi4.boards]]
name = "pi4-lab-2"
host = "pi-alias"
user = "pi"
agent_port = 50052
"""


def test_inventory_reads_targets_boards_and_defaults(tmp_path):
    inv = load(write(tmp_path, GOOD))
    t = inv.targets["pi4"]
    assert (t.runtime, t.threads, [b.name for b in t.boards]) == ("onnxruntime", 4, ["pi4-lab-1", "pi4-lab-2"])
    b1, b2 = t.boards
    assert (b1.port, b1.user, b1.agent_port, b1.python, b1.install_dir) == (
        None,
        None,
        50051,
        "python3",
        "~/.local/share/netcut-agent",
    )
    assert (b2.user, b2.agent_port) == ("pi", 50052)
    assert inv.select(["pi4-lab-2"]) == [b2] and inv.select(["pi4"]) == [b1, b2] and inv.select([]) == [b1, b2]
    with pytest.raises(InventoryError, match="no target or board named 'pi5'"):
        inv.select(["pi5"])


@pytest.mark.parametrize(
    "text, line, message",
    [
        (GOOD.replace("agent_port = 50052", "agent_prot = 50052"), 13, "unknown board key 'agent_prot'"),
        (GOOD.replace('runtime = "onnxruntime"', 'runtime = "tensorrt"'), 2, "runtime 'tensorrt'"),
        (GOOD.replace("threads = 4", 'threads = "four"'), 3, "threads of target 'pi4' must be a whole number"),
        (GOOD.replace('user = "pi"', "user = 7"), 12, "board key 'user' must be a string"),
        (GOOD.replace('name = "pi4-lab-2"', 'name = "pi4-lab-1"'), 9, "board name 'pi4-lab-1' is used twice"),
        (GOOD.replace('host = "pi-alias"', ""), 9, "needs host"),
        (GOOD.replace("threads = 4", "threads = 4\nboard = 1"), 4, "unknown key 'board' in target 'pi4'"),
        (GOOD.replace("agent_port = 50052", "agent_port = 70000"), 13, "agent_port 70000 is not a TCP port"),
        (GOOD.replace('host = "192.168.1.20"', 'host = "192.168.1.20'), 7, "not valid TOML"),
        ("[targets.pi4]\nthreads = 4\n", 1, "target 'pi4' has no boards"),
    ],
)
def test_inventory_mistakes_name_the_file_line_and_problem(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}:{line}:") or f"line {line}," in str(err.value), str(err.value)
    assert message in str(err.value)


def test_a_typo_in_the_inventory_exits_2_with_file_and_line(tmp_path):
    path = write(tmp_path, GOOD.replace("agent_port = 50052", "agent_prot = 50052"))
    out = run_cli("netcut-host", "fleet", "status", "--fleet", str(path))
    assert out.returncode == 2
    assert f"{path}:13: unknown board key 'agent_prot'" in out.stderr and "Traceback" not in out.stderr


def test_boards_that_disagree_on_the_reference_are_flagged():
    assert disagreeing({"a": 10.0, "b": 10.4, "c": 9.8}) == {}
    flagged = disagreeing({"a": 10.0, "b": 10.4, "c": 14.0}, tolerance=0.2)
    assert list(flagged) == ["c"] and flagged["c"] == pytest.approx(14.0 / 10.4)
    assert disagreeing({"a": 10.0}) == {}  # one board has nothing to agree with


def test_platform_tags_widen_manylinux_to_the_boards_glibc():
    tags = platform_tags("manylinux2014_aarch64", "2.36")
    assert (
        tags[0] == "manylinux2014_aarch64" and "manylinux_2_28_aarch64" in tags and tags[-1] == "manylinux_2_36_aarch64"
    )
    assert platform_tags("macosx_11_0_arm64", "2.36") == ["macosx_11_0_arm64"]


# ------------------------------------------------------------------ real boards over SSH


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """The project's wheel and a wheelhouse of its agent's dependencies (from the package registry's cache),
    and an older version's wheel to upgrade from."""
    root = tmp_path_factory.mktemp("wheels")
    out = run_cli("netcut-host", "fleet", "wheelhouse", str(root / "house"), timeout=600)
    assert out.returncode == 0, out.stderr
    current = next((root / "house").glob("netcut-*.whl"))
    src = root / "old-src"
    for name in ("netcut", "agent", "host", "protos", "deploy"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("*.pt", "__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    init = src / "netcut" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]+"', '__version__ = "0.0.1"', init.read_text()))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(root / "old"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    old = next((root / "old").glob("netcut-*.whl"))
    assert wheel_version(old) == "0.0.1" and wheel_version(current) != "0.0.1"
    return {"house": root / "house", "current": current, "old": old}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not have_sshd():
        pytest.fail("sshd is missing: apt-get install openssh-server")
    root = tmp_path_factory.mktemp("lab")
    boards = [SSHDBoard(root, f"board-{i}").start() for i in (1, 2, 3)]
    header = f'[targets.{TARGET}]\nruntime = "onnxruntime"\nthreads = 1\n\n'
    fleet = root / "fleet.toml"
    fleet.write_text(header + "\n".join(b.inventory(TARGET) for b in boards))
    lab = Lab(root, boards, fleet, root / "known_hosts")
    yield lab
    for b in boards:
        b.kill_agent()
        b.stop()


class Lab:
    def __init__(self, root, boards, fleet, known_hosts):
        self.root, self.boards, self.fleet, self.known_hosts = root, boards, fleet, known_hosts

    def fleet_cmd(self, *argv, fleet=None, timeout=600):
        return run_cli(
            "netcut-host",
            "fleet",
            *argv,
            "--fleet",
            str(fleet or self.fleet),
            "--known-hosts",
            str(self.known_hosts),
            timeout=timeout,
        )

    def status(self, *names) -> dict:
        out = self.fleet_cmd("status", "--json", *names)
        return {r["name"]: r for r in json.loads(out.stdout)}


@pytest.fixture(scope="module")
def provisioned(lab, wheels):
    """Unknown host keys are refused first; then every board is provisioned with the older version, offline."""
    out = lab.fleet_cmd("status")
    assert out.returncode == 4
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", f"{lab.boards[0].host_key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert "unknown host key" in out.stdout and fingerprint in out.stdout and "--accept-new" in out.stdout
    assert not lab.known_hosts.exists()

    out = lab.fleet_cmd(
        "provision", "--accept-new", "--wheel", str(wheels["old"]), "--wheelhouse", str(wheels["house"])
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("installed 0.0.1") == 3, out.stdout
    assert len(lab.known_hosts.read_text().splitlines()) == 3
    return lab


@needs_sshd
def test_provision_upgrades_then_does_nothing(provisioned, wheels):
    lab = provisioned
    version = wheel_version(wheels["current"])
    assert {r["agent_version"] for r in lab.status().values()} == {"0.0.1"}
    out = lab.fleet_cmd("provision", "--wheelhouse", str(wheels["house"]))  # the current wheel, offline
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(f"upgraded {version} (was 0.0.1)") == 3, out.stdout
    pids = {b.name: b.agent_pid() for b in lab.boards}
    out = lab.fleet_cmd("provision", "--wheelhouse", str(wheels["house"]))
    assert out.returncode == 0 and out.stdout.count(f"up to date ({version})") == 3, out.stdout
    assert {b.name: b.agent_pid() for b in lab.boards} == pids  # nothing restarted
    status = lab.status()
    assert all(r["reachable"] and r["healthy"] and r["agent_version"] == version for r in status.values()), status
    assert set(status) == {b.name for b in lab.boards} and {r["target"] for r in status.values()} == {TARGET}
    # Nothing listens beyond the board's loopback: the agent is reached only through the tunnel.
    assert "127.0.0.1:" in (lab.boards[0].home / "agent" / "agent.log").read_text()


def tiny_wheel(dest: Path) -> Path:
    """A wheel of one empty module: an extra wheel to install on a board (as NVIDIA's onnxruntime-gpu would be)."""
    src = dest / "probe-src"
    (src / "netcut_probe").mkdir(parents=True)
    (src / "netcut_probe" / "__init__.py").write_text("INSTALLED = True\n")
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "netcut-probe"\nversion = "0.1"\ndependencies = ["a-package-that-does-not-exist"]\n'
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dest), str(src)],
        check=True,
        capture_output=True,
    )
    return next(dest.glob("netcut_probe-*.whl"))


@needs_sshd
def test_extra_wheels_are_installed_after_netcut_without_their_dependencies(provisioned, wheels, tmp_path):
    lab, board = provisioned, provisioned.boards[0]
    extra = tiny_wheel(tmp_path)
    missing = lab.fleet_cmd("provision", board.name, "--extra-wheel", str(tmp_path / "none.whl"))
    assert missing.returncode == 2 and "--extra-wheel" in missing.stderr and "no such wheel" in missing.stderr
    out = lab.fleet_cmd("provision", board.name, "--wheelhouse", str(wheels["house"]), "--extra-wheel", str(extra))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"installed {extra.name}" in out.stdout  # its dependency (absent everywhere) was not asked for
    python = board.home / "agent" / "venv" / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import netcut_probe; print(netcut_probe.INSTALLED)"], capture_output=True, text=True
    )
    assert probe.stdout.strip() == "True", probe.stderr
    assert lab.status(board.name)[board.name]["healthy"]  # the agent came back after the install


@needs_sshd
def test_profile_spreads_over_boards_and_survives_one_dying(provisioned, tmp_path):
    lab = provisioned
    db = tmp_path / "fleet.sqlite"
    cmd = [
        str(BIN / "netcut-host"),
        "profile",
        "--target",
        TARGET,
        "--fleet",
        str(lab.fleet),
        "--known-hosts",
        str(lab.known_hosts),
        "--model",
        "mobilenet_v3_small",
        "--cuts",
        "all",
        "--mode",
        "e2e",
        "--input-size",
        "32",
        "--db",
        str(db),
        "--json",
        # This test is about failover: a loaded machine's noise must not leave a board out by the agreement
        # check before it could fail (test_boards_that_disagree... covers that check).
        "--agreement",
        "5",
        *FAST,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, frozen = lab.boards[2], lab.boards[1]

    def rows() -> int:
        if not db.exists():
            return 0
        try:
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    deadline = time.monotonic() + 300
    while rows() < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    victim.kill_agent()  # the board's agent and its sshd die mid-run: it drops off the network
    victim.kill()
    frozen.signal_all(signal.SIGSTOP)  # this one hangs without closing anything (power cut, cable pulled)
    at_failure = rows()
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        frozen.signal_all(signal.SIGCONT)
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    with sqlite3.connect(db) as conn:
        keys = conn.execute("SELECT cut, mode FROM measurements").fetchall()
        boards = [json.loads(b)["fleet_board"] for (b,) in conn.execute("SELECT board FROM measurements")]
    jobs = len(keys)
    assert report["measured"] == jobs and report["failed"] == [] and len(set(keys)) == jobs  # each row once
    assert jobs == len(analyse(models.build("mobilenet_v3_small"), "m", 32).cuts) + 1  # none lost
    assert sum(report["boards"].values()) == jobs and set(boards) <= {b.name for b in lab.boards}
    # The healthy board took over the rest (the others may each have finished the job in flight).
    assert report["boards"][lab.boards[0].name] >= jobs - at_failure - 2
    assert set(report["reference_ms"]) == {b.name for b in lab.boards}
    for failed in (victim, frozen):  # each one's job moved on
        assert failed.name in report["board_errors"] and f"board {failed.name} failed" in stderr, stderr
    # The fleet target answers estimates from the rows its boards measured.
    out = run_cli(
        "netcut-host",
        "estimate",
        "--target",
        TARGET,
        "--fleet",
        str(lab.fleet),
        "--known-hosts",
        str(lab.known_hosts),
        "--model",
        "mobilenet_v3_small",
        "--input-size",
        "32",
        "--db",
        str(db),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    estimates = json.loads(out.stdout)["estimates"]
    assert len(estimates) == jobs and all(e["estimated_ms"] > 0 and "measured" in e["evidence"] for e in estimates)
    victim.start()  # the board comes back
    out = lab.fleet_cmd("start", victim.name)
    assert out.returncode == 0 and "running" in out.stdout, out.stdout + out.stderr


@needs_sshd
def test_stop_start_restart_logs_and_uninstall(provisioned):
    lab = provisioned
    b = lab.boards[0]
    assert lab.fleet_cmd("stop", b.name).returncode == 0
    status = lab.status(b.name)[b.name]
    assert status["reachable"] and not status["healthy"] and "no agent answers" in status["error"]
    out = lab.fleet_cmd("start", b.name)
    assert out.returncode == 0 and f"{b.name}: running" in out.stdout, out.stdout + out.stderr
    before = b.agent_pid()
    assert lab.fleet_cmd("restart", b.name).returncode == 0 and b.agent_pid() != before
    out = lab.fleet_cmd("logs", b.name, "-n", "5")
    assert out.returncode == 0 and "listening on 127.0.0.1:" in out.stdout
    # A board whose sshd is gone is reported unreachable; the others answer.
    lab.boards[2].stop()
    try:
        out = lab.fleet_cmd("status", "--json")
        rows = {r["name"]: r for r in json.loads(out.stdout)}
        assert out.returncode == 4 and not rows[lab.boards[2].name]["reachable"]
        assert "cannot reach" in rows[lab.boards[2].name]["error"]
        assert rows[lab.boards[0].name]["healthy"] and rows[lab.boards[1].name]["healthy"]
        up = rows[lab.boards[0].name]  # each board's machine, Python and runtimes, for scripts
        assert up["machine"] == platform.machine() and up["python"] == platform.python_version()
        assert any(r.startswith("onnxruntime ") for r in up["runtimes"])
    finally:
        lab.boards[2].start()
    out = lab.fleet_cmd("uninstall", lab.boards[1].name)
    assert out.returncode == 0 and "uninstalled" in out.stdout
    assert not (lab.boards[1].home / "agent").exists()
    out = lab.fleet_cmd("status")
    assert out.returncode == 4 and re.search(rf"{lab.boards[1].name}\s+{TARGET}\s+yes\s+board", out.stdout)


@needs_sshd
def test_bad_boards_are_reported_and_the_others_carry_on(provisioned, wheels, tmp_path):
    lab = provisioned
    fake = tmp_path / "python38"
    fake.write_text(
        '#!/bin/sh\necho \'{"python": [3, 8, 10], "machine": "armv7l", "libc": "glibc 2.28", "free_mb": 9000}\'\n'
    )
    fake.chmod(0o755)
    full = tmp_path / "python-full-disk"
    full.write_text(
        '#!/bin/sh\necho \'{"python": [3, 11, 2], "machine": "aarch64", "libc": "glibc 2.36", "free_mb": 55}\'\n'
    )
    full.chmod(0o755)
    b1, b2, b3 = lab.boards
    text = (
        f"[targets.{TARGET}]\n\n"
        + b1.inventory(TARGET)
        + b2.inventory(TARGET, user="nobody-here")
        + b3.inventory(TARGET, python=str(fake))
        + b1.inventory(TARGET, name="board-1-wrong-key", key=str(b2.client_key))
    )
    fleet = write(tmp_path, text)
    out = lab.fleet_cmd("provision", "--dry-run", fleet=fleet)
    assert out.returncode == 4
    assert f"{b2.name}: FAILED: board {b2.name}: authentication failed for nobody-here@127.0.0.1" in out.stdout
    assert f"{b3.name}: FAILED: board {b3.name}: {fake} is Python 3.8.10; the agent needs 3.9+" in out.stdout
    assert "board-1-wrong-key: FAILED: board board-1-wrong-key: authentication failed for" in out.stdout
    assert re.search(rf"{b1.name}: (up to date|would install)", out.stdout), out.stdout
    text = f"[targets.{TARGET}]\n\n" + b1.inventory(TARGET, python=str(full), install_dir="~/elsewhere")
    out = lab.fleet_cmd("provision", "--dry-run", "--wheel", str(wheels["current"]), fleet=write(tmp_path, text))
    assert out.returncode == 4 and f"board {b1.name}: only 55 MB free under ~/elsewhere" in out.stdout, out.stdout

    # A pip install that fails on the board shows the board's own error.
    house = tmp_path / "house"
    house.mkdir()
    for wheel in wheels["house"].glob("platformdirs-*.whl"):
        shutil.copy(wheel, house)
    text = f"[targets.{TARGET}]\n\n" + b1.inventory(TARGET, install_dir="~/broken")
    out = lab.fleet_cmd(
        "provision", "--wheel", str(wheels["current"]), "--wheelhouse", str(house), fleet=write(tmp_path, text)
    )
    assert out.returncode == 4 and f"{b1.name}: FAILED: board {b1.name}: pip install failed" in out.stdout
    assert "No matching distribution found" in out.stdout, out.stdout

    # A second install on the board whose agent port is taken is refused rather than mistaken for the first.
    text = f"[targets.{TARGET}]\n\n" + b1.inventory(TARGET, install_dir="~/other")
    out = lab.fleet_cmd(
        "provision",
        "--wheel",
        str(wheels["current"]),
        "--wheelhouse",
        str(wheels["house"]),
        fleet=write(tmp_path, text),
    )
    assert out.returncode == 4 and f"port {b1.agent_port} on the board is taken by another process" in out.stdout

    # A changed host key is refused, with or without --accept-new.
    b1.stop()
    b1.host_key.unlink()
    Path(f"{b1.host_key}.pub").unlink()
    keygen(b1.host_key)
    b1.start()
    for extra in ([], ["--accept-new"]):
        out = lab.fleet_cmd("status", b1.name, *extra)
        assert out.returncode == 4 and "host key of" in out.stdout and "CHANGED" in out.stdout, out.stdout


def test_direct_boards_are_reached_with_their_token(agent_factory, tmp_path):
    token = tmp_path / "token"
    token.write_text("a-long-enough-s3cret-token\n")
    agent = agent_factory("--token-file", str(token))
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-right-token-at-all\n")
    text = (
        f'[targets.{TARGET}]\n\n[[targets.{TARGET}.boards]]\nname = "direct-1"\nagent = "{agent.address}"\n'
        f'token_file = "{token}"\n\n[[targets.{TARGET}.boards]]\nname = "direct-2"\nagent = "{agent.address}"\n'
        f'token_file = "{wrong}"\n'
    )
    fleet = write(tmp_path, text)
    out = run_cli("netcut-host", "fleet", "status", "--json", "--fleet", str(fleet))
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert out.returncode == 4  # direct-2's token is refused
    assert rows["direct-1"]["healthy"] and rows["direct-1"]["agent_version"]
    assert not rows["direct-2"]["healthy"] and "UNAUTHENTICATED" in rows["direct-2"]["error"]
    out = run_cli(
        "netcut-host", "fleet", "provision", "direct-1", "--fleet", str(fleet), "--wheel", str(tmp_path / "none.whl")
    )
    assert out.returncode == 2 and "no such wheel" in out.stderr


def test_the_systemd_unit_from_deploy_runs_the_boards_agent_on_its_port():
    from netcut_host.inventory import Board
    from netcut_host.provision import Installation

    class Paths:  # what Installation needs of an SSH connection to render the unit
        board = Board("pi4-lab-1", "pi4", "pi.local", agent_port=50099, install_dir="~/netcut")

        @staticmethod
        def path(remote):
            return remote.replace("~", "/home/pi", 1)

    unit = Installation(Paths()).unit_text()
    exec_start = [l for l in unit.splitlines() if l.startswith("ExecStart=")]
    assert exec_start == [
        "ExecStart=/home/pi/netcut/venv/bin/netcut-agent serve --listen 127.0.0.1:50099 --store /home/pi/netcut/store"
    ]
    assert "Restart=on-failure" in unit and "WantedBy=default.target" in unit
