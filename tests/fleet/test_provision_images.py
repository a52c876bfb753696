"""``fleetdeck fleet images sync`` against a real Docker engine and a real sshd host.

The host is a Unix user on this machine, so it shares the workstation's Docker engine: an image is
therefore already "present" there; ``--force`` makes the real upload path run anyway (docker save
here, streamed over SSH, docker load there) so the transfer and the id check are exercised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.fleet.sshd import SSHHost, ssh_hosts, trust, write_inventory  # noqa: F401 - fixture

pytestmark = [pytest.mark.ssh, pytest.mark.docker]
IMAGE = "fleetdeck-test-busybox:1"


@pytest.fixture(scope="module")
def busybox_image() -> str:
    """A tiny image imported from the busybox-static rootfs, built once per machine."""
    if shutil.which("docker") is None:
        pytest.skip("docker CLI not installed")
    subprocess.run(["bash", str(Path(__file__).resolve().parents[2] / "scripts" / "start-dockerd.sh")], check=False)
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("no Docker engine answers (scripts/start-dockerd.sh starts one as root)")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0:
        return IMAGE
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox-static is not installed (scripts/system-deps.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp)
        (rootfs / "bin").mkdir()
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        (rootfs / "bin" / "sh").symlink_to("busybox")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", IMAGE], stdin=tar.stdout, check=True, capture_output=True)
        assert tar.stdout is not None
        tar.stdout.close()
        assert tar.wait() == 0
    return IMAGE


def _sync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleetdeck.app", "fleet", "images", "sync", *args],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "220"})


def test_images_sync_reports_present_uploads_and_refuses_oversized(ssh_hosts: list[SSHHost], busybox_image: str) -> None:
    host = ssh_hosts[0]
    subprocess.run(["usermod", "-aG", "docker", host.user], check=True)  # the host's user may use its engine
    trust([host])
    write_inventory([host.inventory_entry()], images={"keep": [busybox_image], "max_size_gb": 1})

    present = _sync()
    assert present.returncode == 0, present.stderr
    row = next(line for line in present.stdout.splitlines() if busybox_image in line)
    assert "ok" in row and "present" in row and "MB" in row

    uploaded = _sync("--force")
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    row = next(line for line in uploaded.stdout.splitlines() if busybox_image in line)
    assert "changed" in row and "uploaded" in row

    write_inventory([host.inventory_entry()], images={"keep": [busybox_image], "max_size_gb": 0.000001})
    refused = _sync()
    assert refused.returncode == 1 and "refused" in refused.stdout and "over the" in refused.stdout

    missing = _sync("--image", "fleetdeck-no-such-image:0")
    assert missing.returncode == 1 and "not in the local Docker engine" in missing.stdout
