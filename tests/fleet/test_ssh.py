"""SSH against real sshd hosts on loopback: host-key pinning, command quoting, connection reuse."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetdeck.fleet import inventory
from fleetdeck.fleet.ssh import (AuthFailed, Connection, ConnectionPool, HostKeyChanged, HostUnreachable,
                                 UnknownHostKey, known_hosts_path, pin_host_key, pinned_key, scan_host_key)
from tests.fleet.sshd import SSHHost, ssh_hosts, trust  # noqa: F401 - fixture

pytestmark = pytest.mark.ssh

PAYLOADS = ["$(touch /tmp/fd-pwned-1)", "`touch /tmp/fd-pwned-2`", "a; touch /tmp/fd-pwned-3",
            "x' && touch /tmp/fd-pwned-4 && '", "| touch /tmp/fd-pwned-5", "$HOME", "\\\"quoted\\\"", "\n"]


def _host(h: SSHHost, **extra: object) -> inventory.Host:
    return inventory.from_dict({"hosts": [h.inventory_entry(**extra)]}).hosts[0]


def test_unknown_host_key_is_refused_with_the_fix(ssh_hosts: list[SSHHost]) -> None:
    host = _host(ssh_hosts[0])
    with pytest.raises(UnknownHostKey) as err:
        Connection(host).run(["true"])
    message = str(err.value)
    assert "fleetdeck fleet trust host0" in message and "SHA256:" in message


def test_pinned_key_connects_and_a_changed_key_is_a_hard_failure(ssh_hosts: list[SSHHost], tmp_path: Path) -> None:
    host = _host(ssh_hosts[0])
    key = scan_host_key(host)
    pin_host_key(host, key)
    assert pinned_key(host) is not None and known_hosts_path().stat().st_mode & 0o077 == 0
    with Connection(host) as conn:
        assert conn.run(["whoami"]).stdout.strip() == ssh_hosts[0].user

    # Pin a different key for the same address, as if the host had been replaced by an impostor.
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, blob = (tmp_path / "other.pub").read_text().split()[:2]
    known_hosts_path().write_text(f"[127.0.0.1]:{host.port} {kind} {blob}\n")
    with pytest.raises(HostKeyChanged) as err:
        Connection(host).run(["true"])
    assert "DIFFERENT" in str(err.value) and "Refusing to connect" in str(err.value)
    with pytest.raises(HostKeyChanged):
        pin_host_key(host, key)  # trusting the new key needs an explicit --replace
    pin_host_key(host, key, replace=True)
    with Connection(host) as conn:
        assert conn.run(["true"]).ok


def test_payloads_in_arguments_arrive_literally(ssh_hosts: list[SSHHost]) -> None:
    trust(ssh_hosts[:1])
    with Connection(_host(ssh_hosts[0])) as conn:
        result = conn.run(["python3", "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", *PAYLOADS])
    import json

    assert json.loads(result.stdout) == PAYLOADS
    assert not any(Path(f"/tmp/fd-pwned-{i}").exists() for i in range(1, 6))


def test_hostile_user_name_cannot_run_a_command(ssh_hosts: list[SSHHost]) -> None:
    trust(ssh_hosts[:1])
    with pytest.raises(AuthFailed):
        Connection(_host(ssh_hosts[0], user="$(touch /tmp/fd-pwned-user)")).run(["true"])
    assert not Path("/tmp/fd-pwned-user").exists()


def test_unreachable_host_names_the_address() -> None:
    host = inventory.from_dict({"hosts": [{"name": "gone", "address": "127.0.0.1", "port": 1, "user": "x"}]}).hosts[0]
    with pytest.raises(HostUnreachable, match="127.0.0.1:1"):
        scan_host_key(host, timeout=2)


def test_pool_reuses_one_connection_and_jumps_through_another_host(ssh_hosts: list[SSHHost]) -> None:
    trust(ssh_hosts[:2])
    inv = inventory.from_dict({"hosts": [ssh_hosts[0].inventory_entry(),
                                         ssh_hosts[1].inventory_entry(jump="host0")]})
    with ConnectionPool(inv) as pool:
        for _ in range(5):
            assert pool.get("host0").run(["true"]).ok
        assert pool.get("host0").connects == 1
        assert pool.get("host1").run(["whoami"]).stdout.strip() == ssh_hosts[1].user
        assert pool.get("host0").connects == 1  # the jump reused host0's connection


def test_remote_timeout_kills_a_hanging_command(ssh_hosts: list[SSHHost]) -> None:
    from fleetdeck.fleet.ssh import RemoteTimeout

    trust(ssh_hosts[:1])
    with Connection(_host(ssh_hosts[0])) as conn:
        with pytest.raises(RemoteTimeout, match="did not finish in 1s"):
            conn.run(["sleep", "30"], timeout=1)
        assert conn.run(["true"]).ok


def test_a_refused_session_leaves_the_shared_connection_to_the_others(ssh_hosts: list[SSHHost]) -> None:
    """More concurrent commands than sshd's MaxSessions (64 here): the extra ones fail with a clear
    error, and the commands already running on the same connection finish normally."""
    from concurrent.futures import ThreadPoolExecutor

    trust(ssh_hosts[:1])
    with Connection(_host(ssh_hosts[0])) as conn:
        assert conn.run(["true"]).ok

        def one(_: int) -> str:
            try:
                return "ok" if conn.run(["sleep", "2"], timeout=20).ok else "failed"
            except HostUnreachable as exc:
                return str(exc)

        with ThreadPoolExecutor(max_workers=72) as pool:
            outcomes = list(pool.map(one, range(72)))
        refused = [o for o in outcomes if o != "ok"]
        assert outcomes.count("ok") >= 64 - 1 and len(refused) <= 72 - 63, outcomes
        assert all("refused a new session" in o and "MaxSessions" in o for o in refused), refused
        assert conn.connects == 1 and conn.run(["true"]).ok
