"""Real SSH test hosts on loopback: one ``sshd`` process and one Unix user per host.

Each host is a real OpenSSH server on 127.0.0.1 with its own port, host key and PidFile, logging
in as its own user (``fdhost0``, ``fdhost1``, ...), so each host has its own home directory.
Creating users needs root; without root or without ``sshd`` the fixture skips with the reason.

Import the fixture into a test module with ``from tests.fleet.sshd import ssh_hosts``; however
many modules import it, the hosts are made once per test session (module-level cache) and torn
down (sshd processes and everything the tests started as those users) at the end of the session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

HOST_COUNT = 4
USER_PREFIX = "fdhost"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
BASE = Path("/tmp/fleetdeck-test-sshd")


@dataclass
class SSHHost:
    """One test host: where it listens and how to log in."""

    name: str
    user: str
    port: int
    home: Path
    host_key_pub: Path
    identity_file: Path
    process: subprocess.Popen[bytes]

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    def inventory_entry(self, **extra: object) -> dict[str, object]:
        """A ``[[hosts]]`` table for this host (extra keys override)."""
        return {"name": self.name, "address": "127.0.0.1", "port": self.port, "user": self.user,
                "identity_file": str(self.identity_file), **extra}

    def known_hosts_line(self) -> str:
        kind, key = self.host_key_pub.read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def kill_user_processes(self) -> None:
        """End what tests started as this host's user (supervisors, agents, tasks), by pid."""
        uid = self.uid
        victims = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
        for proc in victims:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(victims, timeout=5)

    def reset(self) -> None:
        """Back to a clean host: no fleetdeck processes, no fleetdeck files in the home."""
        self.kill_user_processes()
        for child in self.home.iterdir():
            if child.name == ".ssh":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


_HOSTS: list[SSHHost] | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_user(user: str) -> Path:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", user], check=True, capture_output=True)
        entry = pwd.getpwnam(user)
    # '*' unlocks the account for key logins ('!' would lock it) without allowing any password.
    subprocess.run(["usermod", "-p", "*", user], check=True, capture_output=True)
    return Path(entry.pw_dir)


def _start_host(index: int, client_pub: str) -> SSHHost:
    user = f"{USER_PREFIX}{index}"
    home = _ensure_user(user)
    entry = pwd.getpwnam(user)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(client_pub)
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    (ssh_dir / "authorized_keys").chmod(0o600)
    run_dir = BASE / f"host{index}"
    run_dir.mkdir(parents=True, exist_ok=True)
    host_key = run_dir / "host_key"
    if not host_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    port = _free_port()
    config = run_dir / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {run_dir}/sshd.pid
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
MaxSessions 64
MaxStartups 64
Subsystem sftp internal-sftp
LogLevel ERROR
SetEnv PATH={run_dir / "bin"}:/usr/local/bin:/usr/bin:/bin
""")
    _fake_nvidia_smi(run_dir / "bin", home)
    Path("/run/sshd").mkdir(exist_ok=True)
    with open(run_dir / "sshd.log", "ab") as log_file:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=log_file)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (run_dir / "sshd.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"sshd for {user} did not start: {log}") from None
            time.sleep(0.05)
    host = SSHHost(name=f"host{index}", user=user, port=port, home=home, host_key_pub=run_dir / "host_key.pub",
                   identity_file=BASE / "client_key", process=process)
    host.reset()
    return host


FAKE_NVIDIA_SMI = """#!/bin/sh
# Test host's nvidia-smi: replays the real output recorded on an H200 (shared/data/gpu-traces)
# when ~/.fake-gpu exists, hangs like a wedged driver when ~/.hang-nvidia-smi exists, and is
# otherwise absent (exit 127, as the shell reports a missing command).
if [ -e "$HOME/.hang-nvidia-smi" ]; then exec sleep 3600; fi
if [ -e "$HOME/.fake-gpu" ]; then
  echo "NVIDIA H200, 143771 MiB, 580.159.04"
  exit 0
fi
echo "nvidia-smi: command not found" >&2
exit 127
"""


def _fake_nvidia_smi(bin_dir: Path, home: Path) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI)
    script.chmod(0o755)
    bin_dir.chmod(0o755)
    BASE.chmod(0o755)
    bin_dir.parent.chmod(0o755)


def _stop(hosts: list[SSHHost]) -> None:
    for host in hosts:
        host.kill_user_processes()
        host.process.terminate()
    for host in hosts:
        try:
            host.process.wait(5)
        except subprocess.TimeoutExpired:
            host.process.kill()
            host.process.wait()


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "SSH test hosts need root (useradd, sshd); run ./scripts/test.sh as root"
    if not os.path.exists(SSHD):
        return "sshd is not installed (scripts/system-deps.sh installs openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed"
    return None


def start_hosts(count: int = HOST_COUNT) -> list[SSHHost]:
    """Start ``count`` hosts (users and keys are made once per machine and reused)."""
    BASE.mkdir(parents=True, exist_ok=True)
    client_key = BASE / "client_key"
    if not client_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client_key)], check=True)
    client_pub = (BASE / "client_key.pub").read_text()
    hosts: list[SSHHost] = []
    try:
        for index in range(count):
            hosts.append(_start_host(index, client_pub))
    except Exception:
        stop_hosts(hosts)
        raise
    return hosts


def stop_hosts(hosts: list[SSHHost]) -> None:
    """Stop the sshd processes and everything that ran as the hosts' users."""
    _stop(hosts)


def skip_reason() -> str | None:
    return _skip_reason()


@pytest.fixture(scope="session")
def ssh_hosts() -> Iterator[list[SSHHost]]:
    """``HOST_COUNT`` real sshd hosts on 127.0.0.1, made once per session."""
    global _HOSTS
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if _HOSTS is not None:
        yield _HOSTS
        return
    hosts = start_hosts()
    _HOSTS = hosts
    try:
        yield hosts
    finally:
        _HOSTS = None
        _stop(hosts)


def trust(hosts: list[SSHHost]) -> None:
    """Pin the hosts' real keys in this test's fleetdeck known_hosts (what ``fleet trust`` does)."""
    from fleetdeck.fleet.ssh import known_hosts_path

    path = known_hosts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for host in hosts:
            fh.write(host.known_hosts_line())


def write_inventory(entries: list[dict[str, object]], **top: object) -> Path:
    """Write this test's inventory file from host tables."""
    from fleetdeck.fleet import inventory

    inv = inventory.from_dict({**top, "hosts": entries})
    return inventory.save(inv, inventory.inventory_path())
