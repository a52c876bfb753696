"""The inventory file, prices, and the ``fleetdeck fleet add|list|trust`` commands as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetdeck.errors import ConfigError
from fleetdeck.fleet import inventory
from fleetdeck.fleet.inventory import price_per_gpu_hour
from fleetdeck.server_lite.process import ServerProcess
from tests.fleet.sshd import SSHHost, ssh_hosts  # noqa: F401 - fixture

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "fleet.example.toml"


def _fleet(*args: str, server: ServerProcess | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    head = ["--server", server.url, "--token", server.admin_token] if server else []
    return subprocess.run([sys.executable, "-m", "fleetdeck.app", *head, "fleet", *args], capture_output=True,
                          text=True, timeout=60, input=stdin, env={**os.environ, "COLUMNS": "250"})


def test_example_inventory_is_valid_and_documents_every_key() -> None:
    inv = inventory.load(EXAMPLE)
    assert len(inv.hosts) >= 2 and inv.max_image_gb == 10
    text = EXAMPLE.read_text()
    documented = {"name", "address", "port", "user", "identity_file", "jump", "labels", "queues", "gpus",
                  "gpu_model", "price_per_hour", "install_dir", "images", "memory_limit_mb", "hard_limit_mb",
                  "leak_slope_mb_per_min", "leak_window_s", "backoff_initial_s", "backoff_max_s",
                  "backoff_reset_s", "silent_window_s", "phase_timeouts", "max_size_gb", "server_url"}
    assert not [k for k in documented if f"{k} =" not in text and f"{k}=" not in text]
    jumped = next(h for h in inv.hosts if h.jump)
    assert inv.jump_host(jumped).name == jumped.jump


def test_round_trip_keeps_hosts_and_changed_limits(tmp_path: Path) -> None:
    inv = inventory.from_dict({"server_url": "http://10.0.0.5:8008", "images": {"keep": ["py:3.11"], "max_size_gb": 4},
                               "limits": {"memory_limit_mb": 2048},
                               "hosts": [{"name": "a", "address": "10.0.0.1", "user": "ml", "labels": ["x y", "$(z)"],
                                          "gpus": 8, "gpu_model": "H100", "limits": {"silent_window_s": 120}}]})
    path = inventory.save(inv, tmp_path / "fleet.toml")
    again = inventory.load(path)
    assert again.hosts[0] == inv.hosts[0] and again.server_url == inv.server_url and again.images == ("py:3.11",)
    assert again.hosts[0].limits.memory_limit_mb == 2048 and again.hosts[0].limits.silent_window_s == 120


@pytest.mark.parametrize(("host", "message"), [
    ({"name": "a", "address": "h", "user": "u", "port": 0}, "port must be 1-65535"),
    ({"name": "a/b", "address": "h", "user": "u"}, "must not contain '/'"),
    ({"name": "a", "address": "h"}, "user is required"),
    ({"name": "a", "address": "h", "user": "u", "colour": "red"}, "unknown key(s) colour"),
    ({"name": "a", "address": "h", "user": "u", "limits": {"memory_limit_mb": -1}}, "memory_limit_mb must be a positive"),
    ({"name": "a", "address": "h", "user": "u", "limits": {"hard_limit_mb": 10}}, "hard_limit_mb (10) is below"),
    ({"name": "a", "address": "h", "user": "u", "jump": "nowhere"}, "no host 'nowhere'"),
    ({"name": "a", "address": "h", "user": "u", "python": "python3; rm -rf ~"}, "python 'python3; rm -rf ~' may only"),
])
def test_bad_hosts_are_refused_naming_host_and_key(host: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        inventory.from_dict({"hosts": [host]})
    assert message in str(err.value)


def test_price_per_gpu_hour_from_host_price_or_pricing_file(tmp_path: Path) -> None:
    pricing = tmp_path / "pricing.toml"
    pricing.write_text('[gpus]\n"H100-80GB" = 2.5\n[gpus.A10]\nprice_per_hour = 0.75\n')
    prices = inventory.gpu_prices(pricing)
    host = inventory.from_dict({"hosts": [{"name": "a", "address": "h", "user": "u", "gpus": 8,
                                           "gpu_model": "h100-80gb"}]}).hosts[0]
    assert price_per_gpu_hour(host, prices) == 2.5
    own = inventory.from_dict({"hosts": [{"name": "a", "address": "h", "user": "u", "gpus": 4, "gpu_model": "A10",
                                          "price_per_hour": 10.0}]}).hosts[0]
    assert price_per_gpu_hour(own, prices) == 2.5  # the host's own price wins, split over its GPUs
    assert prices["a10"] == 0.75


def test_fleet_add_and_list(server: ServerProcess) -> None:
    added = _fleet("add", "gpu-1", "--host", "ml@10.1.2.3:2222", "--label", "a100", "--queue", "train",
                   "--gpus", "8", "--price-per-hour", "16")
    assert added.returncode == 0, added.stderr
    assert "fleetdeck fleet trust gpu-1" in added.stdout
    inv = inventory.load()
    assert inv.host("gpu-1").port == 2222 and inv.host("gpu-1").queues == ("train",)

    dup = _fleet("add", "gpu-1", "--host", "ml@10.1.2.4")
    assert dup.returncode == 2 and "already in the inventory; pass --replace" in dup.stderr
    bad = _fleet("add", "gpu-2", "--host", "not-a-target")
    assert bad.returncode == 2 and "must look like user@address[:port]" in bad.stderr and "Traceback" not in bad.stderr

    listing = _fleet("list", server=server)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "gpu-1" in line)
    assert "ml@10.1.2.3:2222" in row and "2.00" in row and "never provisioned" in row


@pytest.mark.ssh
def test_fleet_trust_shows_the_fingerprint_asks_and_pins(ssh_hosts: list[SSHHost]) -> None:
    host = ssh_hosts[1]
    assert _fleet("add", "h1", "--host", f"{host.user}@127.0.0.1:{host.port}", "--identity",
                  str(host.identity_file)).returncode == 0
    expected = subprocess.run(["ssh-keygen", "-lf", str(host.host_key_pub)], capture_output=True, text=True,
                              check=True).stdout.split()[1]
    refused = _fleet("trust", "h1", stdin="n\n")
    assert refused.returncode == 2 and expected in refused.stdout and "not trusted" in refused.stderr
    status = _fleet("status", "h1")
    assert status.returncode == 1 and "unreachable" in status.stdout
    assert "is not trusted yet" in status.stderr and "fleetdeck fleet trust h1" in status.stderr

    pinned = _fleet("trust", "h1", stdin="y\n")
    assert pinned.returncode == 0 and "trusted h1" in pinned.stdout
    assert _fleet("trust", "h1", "--yes").stdout.startswith("h1 is already trusted")
    status = _fleet("status", "h1")
    assert status.returncode == 0 and "supervisor down" in status.stdout  # reachable; nothing started yet

    # The host is "reinstalled" (new key): trust refuses without --replace, ssh refuses outright.
    from fleetdeck.fleet.ssh import known_hosts_path

    other = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(known_hosts_path().parent / "k")],
                           check=True)
    assert other.returncode == 0
    kind, blob = (known_hosts_path().parent / "k.pub").read_text().split()[:2]
    known_hosts_path().write_text(f"[127.0.0.1]:{host.port} {kind} {blob}\n")
    changed = _fleet("trust", "h1", "--yes")
    assert changed.returncode == 2 and "--replace" in changed.stderr and "Traceback" not in changed.stderr
    logs = _fleet("logs", "h1")
    assert logs.returncode == 2 and "DIFFERENT" in logs.stderr
