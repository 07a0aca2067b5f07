"""Install, update, run and remove the agent on a board over SSH.

A board's install folder (inventory `install_dir`) holds `wheels/` (what was uploaded),
`venv/`, `store/` (the agent's models), `service` (how the agent runs there: "systemd" or
"process"), and for the process mode `agent.pid` and `agent.log`. Provisioning is
idempotent: the same version already running is left alone; another version is upgraded.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import netcut_deploy

from .client import AgentClient, AgentUnavailable
from .errors import ConfigError
from .wire import info as agent_info
from .ssh import BoardError, SSHBoard

MIN_PYTHON = (3, 9)
MIN_FREE_MB = 400  # a venv with onnxruntime, numpy and grpcio, plus room for models
UNIT = "netcut-agent.service"
HEALTH_TIMEOUT_S = 60.0

PROBE = r"""
import json, os, platform, shutil, sys
path = os.path.expanduser(sys.argv[1])
while not os.path.isdir(path):
    path = os.path.dirname(path) or "/"
print(json.dumps({"python": list(sys.version_info[:3]), "machine": platform.machine(),
                  "libc": " ".join(platform.libc_ver()), "free_mb": shutil.disk_usage(path).free / 1e6}))
"""


def wheel_version(wheel: Path) -> str:
    match = re.match(r"^netcut-([^-]+)-", Path(wheel).name)
    if not match:
        raise ConfigError(f"{wheel} is not a netcut wheel (netcut-VERSION-*.whl)")
    return match.group(1)


def source_root() -> Path | None:
    """The project checkout this host runs from, if it runs from one (an editable install)."""
    root = Path(netcut_deploy.__file__).resolve().parent.parent
    return root if (root / "setup.cfg").is_file() and (root / "agent").is_dir() else None


def build_wheel(dest: Path) -> Path:
    """Build the project's wheel from the checkout the host runs from."""
    root = source_root()
    if root is None:
        raise ConfigError(
            "this netcut-host was not installed from a checkout, so it cannot build the agent's wheel: "
            "pass --wheel FILE (e.g. `pip download --no-deps netcut`)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("netcut-*.whl"):
        old.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dest), str(root)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ConfigError(f"building the wheel failed: {done.stderr.strip().splitlines()[-1:]}")
    return next(dest.glob("netcut-*.whl"))


def platform_tags(platform: str, glibc: str) -> list[str]:
    """pip --platform tags for a board: a manylinux tag widened to every glibc up to the board's."""
    match = re.match(r"^(?:manylinux2014|manylinux_2_\d+|linux)_(\w+)$", platform)
    if not match:
        return [platform]
    arch = match.group(1)
    major, minor = (int(x) for x in glibc.split("."))
    return [platform] + [f"manylinux_{major}_{m}_{arch}" for m in range(17, minor + 1)]


def wheelhouse(
    dest: Path, wheel: Path, platform: str | None, python_version: str, glibc: str, extras: str = "agent"
) -> list[Path]:
    """Download the wheels `netcut[extras]` needs on a board into dest (with the project wheel)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        f"netcut[{extras}] @ {Path(wheel).resolve().as_uri()}",
    ]
    for tag in platform_tags(platform, glibc) if platform else []:
        cmd += ["--platform", tag]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [l for l in done.stderr.splitlines() if l.startswith("ERROR")]
        raise ConfigError(f"preparing the wheelhouse failed: {' '.join(errors) or done.stderr.strip()[-300:]}")
    if not (dest / Path(wheel).name).is_file():
        (dest / Path(wheel).name).write_bytes(Path(wheel).read_bytes())
    return sorted(dest.glob("*.whl"))


@dataclass
class Facts:
    python: tuple[int, int, int]
    machine: str
    libc: str
    free_mb: float
    systemd: bool


class Installation:
    """The agent's installation on one board, reached over SSH."""

    def __init__(self, ssh: SSHBoard):
        self.ssh, self.board = ssh, ssh.board
        self.dir = self.board.install_dir.rstrip("/")
        self.q = SSHBoard.quote

    def _p(self, name: str = "") -> str:
        return self.q(f"{self.dir}/{name}" if name else self.dir)

    # ------------------------------------------------------------ facts

    def probe(self) -> Facts:
        rc, out, err = self.ssh.run(f"{self.board.python} -c {shlex.quote(PROBE)} {self._p()}")
        if rc == 127 or "not found" in err:
            raise BoardError(
                f"board {self.board.name}: {self.board.python} not found; install Python "
                f'{MIN_PYTHON[0]}.{MIN_PYTHON[1]}+ there or set python = "..." for the board'
            )
        if rc != 0:
            raise BoardError(f"board {self.board.name}: probing {self.board.python} failed: {err.strip()[-300:]}")
        data = json.loads(out.strip().splitlines()[-1])
        systemd = self.ssh.run("systemctl --user show-environment >/dev/null 2>&1")[0] == 0
        facts = Facts(tuple(data["python"]), data["machine"], data["libc"], data["free_mb"], systemd)
        if facts.python[:2] < MIN_PYTHON:
            raise BoardError(
                f"board {self.board.name}: {self.board.python} is Python "
                f"{'.'.join(map(str, facts.python))}; the agent needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+ "
                '(install a newer one and set python = "python3.X" for the board)'
            )
        return facts

    def installed_version(self) -> str | None:
        rc, out, _ = self.ssh.run(
            f"{self._p('venv/bin/python')} -c 'import netcut_agent; print(netcut_agent.__version__)' 2>/dev/null"
        )
        return out.strip() if rc == 0 and out.strip() else None

    def mode(self) -> str | None:
        rc, out, _ = self.ssh.run(f"cat {self._p('service')} 2>/dev/null")
        return out.strip() if rc == 0 and out.strip() else None

    # ------------------------------------------------------------ the service

    def unit_text(self) -> str:
        text = netcut_deploy.read(UNIT)
        install = self.ssh.path(self.dir)
        text = text.replace("%h/.local/share/netcut-agent", install)
        return text.replace(
            "--listen 127.0.0.1:50051", f"--listen 127.0.0.1:{self.board.agent_port} --store {install}/store"
        )

    def running(self) -> bool:
        if self.mode() == "systemd":
            return self.ssh.run(f"systemctl --user is-active --quiet {UNIT}")[0] == 0
        pid = self._p("agent.pid")
        return self.ssh.run(f'test -f {pid} && kill -0 "$(cat {pid})" 2>/dev/null')[0] == 0

    def start(self) -> None:
        if self.running():
            return
        if self.ssh.port_in_use(self.board.agent_port):
            raise BoardError(
                f"board {self.board.name}: port {self.board.agent_port} on the board is taken by another "
                "process (an agent of another install_dir?); stop it, or set agent_port for the board"
            )
        if self.mode() == "systemd":
            self.ssh.check(
                f"systemctl --user daemon-reload && systemctl --user enable --now {UNIT}", "starting the agent"
            )
            return
        d = self.ssh.path(self.dir)
        # `;` not `&&`: only the supervisor goes to the background, holding none of the session's pipes.
        self.ssh.check(
            f"cd {shlex.quote(d)} || exit 1; setsid sh netcut-agent-supervise.sh {shlex.quote(d)} "
            f"--listen 127.0.0.1:{self.board.agent_port} --store {shlex.quote(d + '/store')} "
            ">> agent.log 2>&1 < /dev/null &",
            "starting the agent",
        )

    def stop(self) -> None:
        mode = self.mode()
        if mode == "systemd":
            self.ssh.check(f"systemctl --user stop {UNIT}", "stopping the agent")
            return
        if mode is None or not self.running():
            return
        pid = self._p("agent.pid")
        # The supervisor leads its own process group (setsid): stop it and the agent together.
        self.ssh.run(
            f'kill -TERM -- -"$(cat {pid})"; for i in $(seq 50); do '
            f'kill -0 "$(cat {pid} 2>/dev/null)" 2>/dev/null || exit 0; sleep 0.2; done; '
            f'kill -KILL -- -"$(cat {pid})"; rm -f {pid}'
        )

    def logs(self, lines: int = 50) -> str:
        if self.mode() == "systemd":
            return self.ssh.run(f"journalctl --user -u {UNIT} -n {lines} --no-pager")[1]
        return self.ssh.run(f"tail -n {lines} {self._p('agent.log')} 2>/dev/null")[1]

    def uninstall(self) -> None:
        mode = self.mode()
        self.stop()
        if mode == "systemd":
            self.ssh.run(
                f"systemctl --user disable {UNIT}; rm -f ~/.config/systemd/user/{UNIT}; systemctl --user daemon-reload"
            )
        self.ssh.check(f"rm -rf {self._p()}", "removing the install folder")

    def healthy(self, version: str | None = None, timeout: float = HEALTH_TIMEOUT_S) -> str:
        """Wait until the agent answers through the tunnel; returns its version."""
        deadline = time.monotonic() + timeout
        with self.ssh.tunnel(self.board.agent_port) as address:
            while True:
                try:
                    with AgentClient(address, connect_timeout=3) as client:
                        info = agent_info(client)
                    if version is None or info.agent_version == version:
                        return info.agent_version
                except AgentUnavailable:
                    pass
                if time.monotonic() > deadline:
                    log = "\n".join(self.logs(8).strip().splitlines()[-8:])
                    raise BoardError(
                        f"board {self.board.name}: the agent did not answer within {timeout:.0f} s"
                        f"{' as version ' + version if version else ''}; its log ends:\n{log}"
                    )
                time.sleep(1.0)

    # ------------------------------------------------------------ provisioning

    def provision(
        self,
        wheel: Path,
        wheels: list[Path],
        dry_run: bool = False,
        say: Callable[[str], None] = print,
        extra_wheels: tuple[Path, ...] = (),
    ) -> str:
        """Make the board run the agent of `wheel`; returns what was done (installed/upgraded/up to date/...).
        `extra_wheels` (NVIDIA's onnxruntime-gpu for a Jetson, say) are installed after it, without their
        dependencies; an onnxruntime-gpu wheel replaces onnxruntime (they share the import name)."""
        if extra_wheels:
            done = self.provision(wheel, wheels, dry_run, say)
            names = ", ".join(p.name for p in extra_wheels)
            if dry_run:
                return f"{done}; would install {names}"
            self._install_extra(extra_wheels, say)
            return f"{done}; installed {names}"
        version = wheel_version(wheel)
        facts = self.probe()
        need_mb = MIN_FREE_MB + sum(p.stat().st_size for p in wheels) / 1e6
        installed = self.installed_version()
        if installed != version and facts.free_mb < need_mb:
            raise BoardError(
                f"board {self.board.name}: only {facts.free_mb:.0f} MB free under {self.dir}; "
                f"the agent needs about {need_mb:.0f} MB (free some space or set install_dir)"
            )
        say(
            f"{self.board.name}: Python {'.'.join(map(str, facts.python))}, {facts.machine}, {facts.libc}, "
            f"{facts.free_mb:.0f} MB free, {'systemd' if facts.systemd else 'no systemd: supervised process'}; "
            f"installed: {installed or 'nothing'}"
        )
        if installed == version:
            if dry_run:
                return f"up to date ({version}){'' if self.running() else ', would start it'}"
            if self.running():
                self.healthy(version)
                return f"up to date ({version})"
            self.start()
            self.healthy(version)
            return f"up to date ({version}), started"
        action = "upgraded" if installed else "installed"
        if dry_run:
            return (
                f"would install {version}"
                + (f" over {installed}" if installed else "")
                + f" ({len(wheels)} wheels, {'offline' if len(wheels) > 1 else 'dependencies from PyPI'})"
            )
        self._upload(wheels)
        extras = ("agent-gpu" if self.board.gpu else "agent") + (",tflite" if self.board.tflite else "")
        offline = "--no-index " if len(wheels) > 1 else ""
        say(f"{self.board.name}: installing netcut[{extras}]=={version}")
        self.ssh.check(
            f"test -x {self._p('venv/bin/python')} || {self.board.python} -m venv {self._p('venv')}",
            "creating the virtual environment",
        )
        self.ssh.check(
            f"{self._p('venv/bin/python')} -m pip install -q --disable-pip-version-check {offline}"
            f"--find-links {self._p('wheels')} 'netcut[{extras}]=={version}'",
            "pip install",
        )
        self.stop()
        self._install_service(facts.systemd)
        self.start()
        self.healthy(version)
        return f"{action} {version}" + (f" (was {installed})" if installed else "")

    def _install_extra(self, extra: tuple[Path, ...], say: Callable[[str], None]) -> None:
        self._upload(list(extra))
        pip = f"{self._p('venv/bin/python')} -m pip"
        if any(p.name.lower().startswith("onnxruntime_gpu") for p in extra):
            self.ssh.check(f"{pip} uninstall -q -y onnxruntime", "removing onnxruntime for onnxruntime-gpu")
        files = " ".join(self._p(f"wheels/{p.name}") for p in extra)
        say(f"{self.board.name}: installing {', '.join(p.name for p in extra)}")
        self.ssh.check(
            f"{pip} install -q --disable-pip-version-check --no-deps --force-reinstall {files}", "pip install"
        )
        self.stop()
        self.start()
        self.healthy(self.installed_version())

    def _upload(self, wheels: list[Path]) -> None:
        self.ssh.check(f"mkdir -p {self._p('wheels')} {self._p('store')}", "creating the install folder")
        have = self.ssh.sizes(f"{self.dir}/wheels")
        for path in wheels:
            if have.get(path.name) != path.stat().st_size:
                self.ssh.put(path, f"{self.dir}/wheels/{path.name}")

    def _install_service(self, systemd: bool) -> None:
        if systemd:
            self.ssh.check("mkdir -p ~/.config/systemd/user", "creating the systemd user folder")
            self.ssh.write(f"~/.config/systemd/user/{UNIT}", self.unit_text())
            self.ssh.run('loginctl enable-linger "$USER" 2>/dev/null')  # keep running after logout, where allowed
        else:
            self.ssh.write(
                f"{self.dir}/netcut-agent-supervise.sh", netcut_deploy.read("netcut-agent-supervise.sh"), 0o755
            )
        self.ssh.write(f"{self.dir}/service", "systemd\n" if systemd else "process\n")


def default_wheels(
    wheel: Path | None, wheelhouse_dir: Path | None, workdir: Path | None = None
) -> tuple[Path, list[Path]]:
    """The wheel to install and every file to upload: the wheel alone, or a wheelhouse with it."""
    if wheel is None:
        wheel = build_wheel(workdir or Path(tempfile.mkdtemp(prefix="netcut-wheel-")))
    elif not Path(wheel).is_file():
        raise ConfigError(f"no such wheel: {wheel}")
    wheel = Path(wheel)
    wheel_version(wheel)
    if wheelhouse_dir is None:
        return wheel, [wheel]
    if not Path(wheelhouse_dir).is_dir():
        raise ConfigError(f"no such wheelhouse folder: {wheelhouse_dir} (make one with `netcut-host fleet wheelhouse`)")
    files = [p for p in sorted(Path(wheelhouse_dir).glob("*.whl")) if not p.name.startswith("netcut-")]
    if not files:
        raise ConfigError(
            f"the wheelhouse {wheelhouse_dir} holds no wheels (make one with `netcut-host fleet wheelhouse`)"
        )
    return wheel, [wheel] + files
