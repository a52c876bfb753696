"""SSH to fleet hosts with paramiko: verified host keys, one reused connection per host.

Host keys are checked against fleetdeck's own known_hosts file (``$XDG_CONFIG_HOME/fleetdeck/
known_hosts``); the user's ``~/.ssh/known_hosts`` is read too but never written. An unknown host is
refused (:class:`UnknownHostKey`) until ``fleetdeck fleet trust NAME`` pins its key; a key that
differs from the pinned one is a hard failure (:class:`HostKeyChanged`). paramiko's
``AutoAddPolicy`` is never used: a tool that silently trusts the first key it sees hands every
token it uploads to whoever answers first.

Remote commands are always argv lists joined with :func:`shlex.join`, so a host name, label or path
holding ``$(...)`` or ``;`` reaches the remote as a literal string and never runs.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import select
import socket
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import paramiko

from fleetdeck.config import config_path
from fleetdeck.errors import FleetdeckError

if TYPE_CHECKING:
    from fleetdeck.fleet.inventory import Host, Inventory

CONNECT_TIMEOUT_S = 10.0


class SSHError(FleetdeckError):
    """A host could not be reached, refused our key, or a remote command failed to run."""


class HostUnreachable(SSHError):
    """TCP connect or SSH handshake failed (down, firewalled, wrong port)."""


class AuthFailed(SSHError):
    """The host refused the user or identity file."""


class UnknownHostKey(SSHError):
    """The host's key is not pinned yet; ``fleetdeck fleet trust NAME`` pins it."""


class HostKeyChanged(SSHError):
    """The host presented a key that differs from the pinned one: possible man-in-the-middle."""


class RemoteTimeout(SSHError):
    """A remote command did not finish within its timeout."""


def known_hosts_path() -> Path:
    """fleetdeck's own known_hosts file (pinned by ``fleetdeck fleet trust``)."""
    return config_path().parent / "known_hosts"


def host_key_id(address: str, port: int) -> str:
    """The known_hosts entry name OpenSSH uses: ``addr`` on port 22, else ``[addr]:port``."""
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class CommandResult:
    """What one remote command did."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self, what: str) -> CommandResult:
        """Raise :class:`SSHError` naming ``what`` and the remote's last stderr line on failure."""
        if not self.ok:
            detail = (self.stderr.strip() or self.stdout.strip()).splitlines()
            raise SSHError(f"{what} failed (exit {self.exit_code}): {detail[-1] if detail else 'no output'}")
        return self


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys with a message that names the fix (paramiko's RejectPolicy, clearer)."""

    def __init__(self, host_label: str) -> None:
        self.host_label = host_label

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise UnknownHostKey(
            f"host {self.host_label} ({hostname}) is not trusted yet: its {key.get_name()} key "
            f"{fingerprint(key)} is not in {known_hosts_path()}; check it and run "
            f"`fleetdeck fleet trust {self.host_label}`")


def _load_host_keys(client: paramiko.SSHClient) -> None:
    user_file = Path.home() / ".ssh" / "known_hosts"
    if user_file.is_file():
        try:
            client.load_system_host_keys(str(user_file))
        except (OSError, paramiko.SSHException):
            pass  # an unreadable user file only means fewer known keys; ours is authoritative
    ours = known_hosts_path()
    if ours.is_file():
        client.load_host_keys(str(ours))


def _identity(host: Host) -> dict[str, object]:
    if host.identity_file:
        path = Path(os.path.expanduser(host.identity_file))
        if not path.is_file():
            raise AuthFailed(f"host {host.name}: identity file {path} does not exist")
        return {"key_filename": str(path), "look_for_keys": False, "allow_agent": False}
    return {"look_for_keys": True, "allow_agent": True}


class Connection:
    """One SSH connection to a host, reused for every command and file transfer.

    Thread-safe: paramiko multiplexes channels over one transport, so parallel commands share it.
    The connection reconnects once when the transport died (host rebooted, network blip).
    """

    def __init__(self, host: Host, jump: Connection | None = None, timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.host = host
        self.jump = jump
        self.timeout = timeout
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self.connects = 0
        """How many SSH handshakes this connection made (health checks assert it stays 1)."""

    # -- connection ------------------------------------------------------------------------

    def _open(self) -> paramiko.SSHClient:
        host = self.host
        client = paramiko.SSHClient()
        _load_host_keys(client)
        client.set_missing_host_key_policy(_KnownHostsPolicy(host.name))
        sock = None
        if self.jump is not None:
            try:
                transport = self.jump.transport()
                sock = transport.open_channel("direct-tcpip", (host.address, host.port), ("127.0.0.1", 0),
                                              timeout=self.timeout)
            except (paramiko.SSHException, OSError) as exc:
                raise HostUnreachable(f"host {host.name}: jump via {self.jump.host.name} to "
                                      f"{host.address}:{host.port} failed: {exc}") from None
        try:
            client.connect(host.address, port=host.port, username=host.user, timeout=self.timeout,
                           banner_timeout=self.timeout, auth_timeout=self.timeout, sock=sock,
                           **_identity(host))  # type: ignore[arg-type]
        except SSHError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyChanged(
                f"host {host.name} ({host.address}:{host.port}) presented a DIFFERENT {exc.key.get_name()} key "
                f"{fingerprint(exc.key)} than the pinned {fingerprint(exc.expected_key)}: someone may be "
                f"intercepting the connection, or the host was reinstalled. Refusing to connect; if the "
                f"change is expected, run `fleetdeck fleet trust {host.name} --replace`") from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthFailed(f"host {host.name}: {host.user}@{host.address} refused our key ({exc})") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise HostUnreachable(f"host {host.name}: cannot connect to {host.address}:{host.port}: "
                                  f"{exc or type(exc).__name__}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        self.connects += 1
        return client

    def client(self) -> paramiko.SSHClient:
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                self.close()
                self._client = self._open()
            return self._client  # type: ignore[return-value]

    def transport(self) -> paramiko.Transport:
        transport = self.client().get_transport()
        if transport is None:  # pragma: no cover - client() just made it active
            raise HostUnreachable(f"host {self.host.name}: connection closed")
        return transport

    def sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            client = self.client()
            if self._sftp is None or self._sftp.get_channel() is None or self._sftp.get_channel().closed:
                self._sftp = client.open_sftp()
            return self._sftp

    def close(self) -> None:
        with self._lock:
            if self._sftp is not None:
                self._sftp.close()
                self._sftp = None
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- commands --------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, timeout: float = 60.0, stdin: bytes | None = None,
            env_path: str | None = None) -> CommandResult:
        """Run one command from an argv list; never through a shell string we did not quote.

        Args:
            argv: program and arguments; each is quoted with :func:`shlex.quote`.
            timeout: seconds; the remote side is also wrapped in ``timeout`` so a hanging
                program (a stuck ``nvidia-smi``) is killed on the host, not just abandoned.
            stdin: bytes written to the command's standard input.
            env_path: extra directory prepended to ``PATH`` (e.g. a venv's ``bin``).

        Raises:
            RemoteTimeout: the command ran past ``timeout``.
            HostUnreachable: the connection failed.
        """
        command = shlex.join(["timeout", "-k", "2", f"{max(1, int(timeout))}", *argv])
        if env_path:
            command = f"PATH={shlex.quote(env_path)}:\"$PATH\" {command}"
        channel = self._open_channel()
        channel.settimeout(timeout + 5)
        try:
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = _drain(channel, time.monotonic() + timeout + 5)
            code = channel.recv_exit_status()
        except socket.timeout:
            raise RemoteTimeout(f"host {self.host.name}: {shlex.join(argv)[:80]} did not finish in "
                                f"{timeout:.0f}s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostUnreachable(f"host {self.host.name}: connection lost while running "
                                  f"{shlex.join(argv)[:80]}: {exc}") from None
        finally:
            channel.close()
        if code == 124:
            raise RemoteTimeout(f"host {self.host.name}: {shlex.join(argv)[:80]} did not finish in "
                                f"{timeout:.0f}s")
        return CommandResult(tuple(argv), code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def _open_channel(self) -> paramiko.Channel:
        """A session channel, reconnecting once when the connection died.

        Several threads share one connection (preflight runs its probes in parallel), so a
        channel refused or slow to open on a live connection must not close it under the others.
        """
        try:
            return self.transport().open_session(timeout=self.timeout)
        except (paramiko.SSHException, OSError, EOFError):
            self._close_if_dead()
        try:
            return self.transport().open_session(timeout=self.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if self._close_if_dead():
                raise HostUnreachable(f"host {self.host.name}: connection lost: {exc}") from None
            raise HostUnreachable(f"host {self.host.name}: sshd refused a new session on a live connection "
                                  f"({exc or type(exc).__name__}); too many concurrent commands for its "
                                  "MaxSessions?") from None

    def _close_if_dead(self) -> bool:
        """Close the connection if its transport has died; True when it had."""
        with self._lock:
            transport = self._client.get_transport() if self._client is not None else None
            if transport is not None and transport.is_active():
                return False
            self.close()
            return True

    def stream(self, argv: Sequence[str], write: Callable[[bytes], None]) -> int:
        """Run a long command (``tail -F``) and pass its output to ``write`` until it ends."""
        channel = self._open_channel()
        try:
            channel.exec_command(shlex.join(list(argv)))
            channel.shutdown_write()
            while True:
                data = channel.recv(65536)
                if not data:
                    break
                write(data)
            return channel.recv_exit_status()
        finally:
            channel.close()

    # -- files -----------------------------------------------------------------------------

    def home(self) -> str:
        """The remote user's home directory (where SFTP starts)."""
        return self.sftp().normalize(".")

    def put_file(self, local: Path, remote: str, mode: int = 0o644,
                 progress: Callable[[int], None] | None = None) -> None:
        """Upload to ``remote.part`` then rename, so a half-uploaded file is never seen whole."""
        sftp = self.sftp()
        part = remote + ".part"
        last = 0

        def callback(done: int, total: int) -> None:
            nonlocal last
            if progress:
                progress(done - last)
            last = done

        sftp.put(str(local), part, callback=callback, confirm=True)
        sftp.chmod(part, mode)
        sftp.posix_rename(part, remote)

    def write_file(self, remote: str, data: bytes, mode: int = 0o644) -> None:
        """Write a small file atomically with ``mode`` set before any content is written."""
        sftp = self.sftp()
        part = remote + ".part"
        with sftp.open(part, "wb") as fh:
            fh.chmod(mode)
            fh.write(data)
        sftp.posix_rename(part, remote)

    def read_file(self, remote: str) -> bytes | None:
        """A small remote file's content, or None if it does not exist."""
        try:
            with self.sftp().open(remote, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def stat(self, remote: str) -> paramiko.SFTPAttributes | None:
        try:
            return self.sftp().stat(remote)
        except FileNotFoundError:
            return None

    def listdir(self, remote: str) -> dict[str, int]:
        """File name -> size of the regular files in a remote directory (empty if missing)."""
        try:
            return {a.filename: a.st_size or 0 for a in self.sftp().listdir_attr(remote)
                    if a.st_mode is not None and stat.S_ISREG(a.st_mode)}
        except FileNotFoundError:
            return {}

    def readlink(self, remote: str) -> str | None:
        try:
            return self.sftp().readlink(remote)
        except (FileNotFoundError, OSError):
            return None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain(channel: paramiko.Channel, deadline: float) -> tuple[bytes, bytes]:
    """Read stdout and stderr until the command exits; a channel is selectable, so no polling."""
    out, err = bytearray(), bytearray()
    while True:
        while channel.recv_ready():
            out += channel.recv(65536)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            return bytes(out), bytes(err)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        select.select([channel], [], [], min(remaining, 1.0))


class ConnectionPool:
    """One :class:`Connection` per host name, made on first use and reused after.

    Health checks and provisioning go through a pool so a host sees one SSH session, not one per
    probe (a fresh connection every few seconds killed jobs in dstack#2346).
    """

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._connections: dict[str, Connection] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Connection:
        with self._lock:
            conn = self._connections.get(name)
            if conn is None:
                host = self.inventory.host(name)
                jump = None
                if host.jump:
                    jump_host = self.inventory.jump_host(host)
                    jump = self._connections.get(jump_host.name)
                    if jump is None:
                        jump = Connection(jump_host)
                        self._connections[jump_host.name] = jump
                conn = Connection(host, jump=jump)
                self._connections[name] = conn
            return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._connections.values():
                conn.close()
            self._connections.clear()

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scan_host_key(host: Host, timeout: float = CONNECT_TIMEOUT_S,
                  jump: Connection | None = None) -> paramiko.PKey:
    """Fetch the key a host presents, without authenticating (for ``fleetdeck fleet trust``)."""
    try:
        if jump is not None:
            sock: object = jump.transport().open_channel("direct-tcpip", (host.address, host.port),
                                                         ("127.0.0.1", 0), timeout=timeout)
        else:
            sock = socket.create_connection((host.address, host.port), timeout=timeout)
    except (OSError, paramiko.SSHException) as exc:
        raise HostUnreachable(f"host {host.name}: cannot connect to {host.address}:{host.port}: {exc}") from None
    transport = paramiko.Transport(sock)  # type: ignore[arg-type]
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise HostUnreachable(f"host {host.name}: SSH handshake with {host.address}:{host.port} failed: "
                              f"{exc or type(exc).__name__}") from None
    finally:
        transport.close()


def pinned_key(host: Host) -> paramiko.PKey | None:
    """The key pinned for this host in fleetdeck's known_hosts, if any."""
    path = known_hosts_path()
    if not path.is_file():
        return None
    keys = paramiko.HostKeys(str(path)).lookup(host_key_id(host.address, host.port))
    if not keys:
        return None
    return next(iter(keys.values()))


def pin_host_key(host: Host, key: paramiko.PKey, replace: bool = False) -> None:
    """Add (or with ``replace``, swap) the host's key in fleetdeck's known_hosts (mode 600).

    Raises:
        HostKeyChanged: a different key is already pinned and ``replace`` is False.
    """
    path = known_hosts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = paramiko.HostKeys(str(path)) if path.is_file() else paramiko.HostKeys()
    entry = host_key_id(host.address, host.port)
    existing = keys.lookup(entry)
    if existing and not replace and any(k.asbytes() != key.asbytes() for k in existing.values()):
        old = next(iter(existing.values()))
        raise HostKeyChanged(f"host {host.name}: pinned key {fingerprint(old)} differs from the presented "
                             f"{fingerprint(key)}; pass --replace only if you know why it changed")
    if replace and entry in keys:
        del keys[entry]
    keys.add(entry, key.get_name(), key)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    keys.save(str(tmp))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
