"""'Boards' for fleet tests: one real OpenSSH server per board on a loopback port, each with its
own host key, home directory and authorized key (Debian's openssh-server; CI installs it)."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def have_sshd() -> bool:
    return os.path.isfile(SSHD) and os.access(SSHD, os.X_OK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class SSHDBoard:
    def __init__(self, root: Path, name: str):
        self.name, self.dir = name, root / name
        self.home = self.dir / "home"
        self.home.mkdir(parents=True)
        self.host_key = keygen(self.dir / "host_key")
        self.client_key = keygen(self.dir / "client_key")  # only this board accepts it
        (self.dir / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        self.port = free_port()
        self.agent_port = free_port()
        self.config = self.dir / "sshd_config"
        self.config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
AuthorizedKeysFile {self.dir / "authorized_keys"}
PidFile {self.dir / "sshd.pid"}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
Subsystem sftp internal-sftp
SetEnv HOME={self.home}
LogLevel ERROR
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SSHDBoard":
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "sshd.log", "a"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd for {self.name} exited: {(self.dir / 'sshd.log').read_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"sshd for {self.name} did not listen on {self.port}")

    def kill(self) -> None:
        """Kill the board's sshd and every session under it: the board drops off the network."""
        if self.proc and self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait()

    def signal_all(self, sig: int) -> None:
        """Signal the board's SSH sessions (not its listener) and its agent's process group."""
        for pid in descendants(self.proc.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        pid = self.agent_pid()
        if pid:
            os.killpg(pid, sig)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    def agent_pid(self, install_dir: str = "agent") -> int | None:
        pid = self.home / install_dir / "agent.pid"
        return int(pid.read_text()) if pid.is_file() else None

    def kill_agent(self, install_dir: str = "agent") -> None:
        pid = self.agent_pid(install_dir)
        if pid:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:  # gone already (a test killed it): the pid file is stale
                pass

    def inventory(self, target: str, **overrides) -> str:
        values = {
            "name": self.name,
            "host": "127.0.0.1",
            "port": self.port,
            "user": getpass.getuser(),
            "agent_port": self.agent_port,
            "python": overrides.pop("python", sys._base_executable),
            "install_dir": "~/agent",
            "key": str(self.client_key),
            **overrides,
        }
        lines = [f"[[targets.{target}.boards]]"]
        for k, v in values.items():
            lines.append(f"{k} = {v}" if isinstance(v, int) else f'{k} = "{v}"')
        return "\n".join(lines) + "\n"
