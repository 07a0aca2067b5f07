"""SSH to a board with paramiko: verified host keys, commands, file uploads, and a port forward.

Host keys are checked against known_hosts (default ~/.ssh/known_hosts). An unknown host is
refused with its fingerprint unless `accept_new` (OpenSSH's StrictHostKeyChecking=accept-new),
which records it; a changed key is always refused. The agent on the board listens on its
loopback only: `tunnel()` forwards a local loopback port to it over the same connection.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import select
import shlex
import socket
import threading
from pathlib import Path
from typing import Iterator

import paramiko

from .errors import TargetError
from .inventory import Board

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


class BoardError(TargetError):
    """A board cannot be reached or refused what was asked; the message says which board and why."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -l` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def default_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path, accept_new: bool, board: Board):
        self.known_hosts, self.accept_new, self.board = known_hosts, accept_new, board

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if not self.accept_new:
            raise BoardError(
                f"board {self.board.name}: unknown host key for {hostname} ({key.get_name()} "
                f"{fingerprint(key)}); check it on the board with `ssh-keygen -lf "
                f"/etc/ssh/ssh_host_{key.get_name().split('-')[-1]}_key.pub`, then rerun with "
                "--accept-new to record it"
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.known_hosts, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.warning(
            "board %s: recorded new host key %s for %s in %s",
            self.board.name,
            fingerprint(key),
            hostname,
            self.known_hosts,
        )


def _ssh_config(host: str) -> dict:
    path = Path("~/.ssh/config").expanduser()
    if not path.is_file():
        return {"hostname": host}
    return paramiko.SSHConfig.from_path(str(path)).lookup(host)


class SSHBoard:
    """One SSH connection to one board."""

    def __init__(
        self,
        board: Board,
        known_hosts: Path | None = None,
        accept_new: bool = False,
        timeout: float = CONNECT_TIMEOUT_S,
    ):
        self.board = board
        config = _ssh_config(board.host)
        self.hostname = config.get("hostname", board.host)
        self.port = board.port or int(config.get("port", 22))
        self.user = board.user or config.get("user") or os.environ.get("USER") or "root"
        key = board.key or (config.get("identityfile") or [None])[0]
        self.known_hosts = Path(known_hosts) if known_hosts else default_known_hosts()
        self.client = paramiko.SSHClient()
        if self.known_hosts.is_file():
            self.client.load_host_keys(str(self.known_hosts))
        self.client.set_missing_host_key_policy(_HostKeyPolicy(self.known_hosts, accept_new, board))
        where = f"{self.user}@{self.hostname}:{self.port}"
        try:
            self.client.connect(
                self.hostname,
                self.port,
                self.user,
                key_filename=os.path.expanduser(key) if key else None,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                look_for_keys=key is None,
            )
        except BoardError:
            raise
        except paramiko.BadHostKeyException as exc:
            name = self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"
            raise BoardError(
                f"board {board.name}: the host key of {where} CHANGED (now {fingerprint(exc.key)}, "
                f"known_hosts has {fingerprint(exc.expected_key)}); refusing to connect. If the board "
                f"was reinstalled, remove the old key with `ssh-keygen -R '{name}' -f {self.known_hosts}`"
            ) from None
        except paramiko.AuthenticationException:
            raise BoardError(
                f"board {board.name}: authentication failed for {where}: check user and key "
                f"({key or 'default keys and the SSH agent'})"
            ) from None
        except FileNotFoundError:
            raise BoardError(f"board {board.name}: key file {key} not found") from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise BoardError(f"board {board.name}: cannot reach {where}: {exc or type(exc).__name__}") from None
        self._home: str | None = None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "SSHBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ commands and files

    def run(self, command: str, timeout: float = 600.0) -> tuple[int, str, str]:
        try:
            _, stdout, stderr = self.client.exec_command(command, timeout=timeout)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            return stdout.channel.recv_exit_status(), out, err
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise BoardError(f"board {self.board.name}: lost the connection: {exc or type(exc).__name__}") from None

    def check(self, command: str, what: str, timeout: float = 600.0) -> str:
        """Run a command; on failure raise with the board's own error (its last lines)."""
        rc, out, err = self.run(command, timeout)
        if rc != 0:
            tail = "\n".join((err.strip() or out.strip()).splitlines()[-12:])
            raise BoardError(f"board {self.board.name}: {what} failed (exit {rc}):\n{tail}")
        return out

    @property
    def home(self) -> str:
        if self._home is None:
            self._home = self.check('printf %s "$HOME"', "reading $HOME").strip()
        return self._home

    def path(self, remote: str) -> str:
        """A remote path with ~ expanded (SFTP does not expand it)."""
        if remote == "~" or remote.startswith("~/"):
            return self.home + remote[1:]
        return remote

    def put(self, local: Path, remote: str) -> None:
        try:
            with self.client.open_sftp() as sftp:
                sftp.put(str(local), self.path(remote))
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise BoardError(f"board {self.board.name}: uploading {Path(local).name} failed: {exc}") from None

    def write(self, remote: str, text: str, mode: int = 0o644) -> None:
        try:
            with self.client.open_sftp() as sftp:
                with sftp.open(self.path(remote), "w") as f:
                    f.write(text)
                sftp.chmod(self.path(remote), mode)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise BoardError(f"board {self.board.name}: writing {remote} failed: {exc}") from None

    def sizes(self, folder: str) -> dict[str, int]:
        """File sizes in a remote folder ({} if it does not exist)."""
        try:
            with self.client.open_sftp() as sftp:
                return {a.filename: a.st_size for a in sftp.listdir_attr(self.path(folder))}
        except FileNotFoundError:
            return {}
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise BoardError(f"board {self.board.name}: listing {folder} failed: {exc}") from None

    @staticmethod
    def quote(path: str) -> str:
        """Quote a remote path for the shell, keeping a leading ~/ expandable."""
        if path.startswith("~/"):
            return '"$HOME"/' + shlex.quote(path[2:])
        return shlex.quote(path)

    # ------------------------------------------------------------ port forward

    def port_in_use(self, port: int) -> bool:
        """Whether something accepts connections on the board's 127.0.0.1:port."""
        try:
            channel = self.client.get_transport().open_channel(
                "direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=5
            )
        except (paramiko.SSHException, OSError, EOFError):
            return False
        channel.close()
        return True

    @contextlib.contextmanager
    def tunnel(self, remote_port: int) -> Iterator[str]:
        """Forward a free local loopback port to the board's 127.0.0.1:remote_port; yields HOST:PORT."""
        forward = _Forward(self.client.get_transport(), remote_port)
        try:
            yield forward.address
        finally:
            forward.close()


class _Forward:
    """Accepts local connections and carries each over its own direct-tcpip channel."""

    def __init__(self, transport: paramiko.Transport, remote_port: int):
        self.transport, self.remote_port = transport, remote_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.closed = threading.Event()
        threading.Thread(target=self._accept, name=f"tunnel-{self.address}", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            try:
                channel = self.transport.open_channel("direct-tcpip", ("127.0.0.1", self.remote_port), peer, timeout=10)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                log.info("tunnel to port %d refused: %s", self.remote_port, exc)
                conn.close()
                continue
            threading.Thread(target=self._pump, args=(conn, channel), daemon=True).start()

    def _pump(self, conn: socket.socket, channel: paramiko.Channel) -> None:
        try:
            while not self.closed.is_set():
                ready, _, _ = select.select([conn, channel], [], [], 0.5)
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        break
                    channel.sendall(data)
                if channel in ready:
                    data = channel.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
        except (OSError, paramiko.SSHException, EOFError):
            pass
        finally:
            channel.close()
            conn.close()

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
