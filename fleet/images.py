"""Keep Docker images ready on fleet hosts without a registry: ``docker save`` here, streamed over
the host's SSH connection into ``docker load`` there (no temporary file on either side).

Images over the inventory's ``max_size_gb`` are refused with a message before anything moves: the
seed's agents crashed pulling images over 10 GB, and a 30 GB upload would block a host for hours.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleetdeck.errors import FleetdeckError
from fleetdeck.fleet.ssh import Connection, SSHError

CHUNK = 1 << 20


class ImageError(FleetdeckError):
    """An image cannot be synced (missing locally, too large, docker failed)."""


@dataclass
class ImageResult:
    host: str
    image: str
    status: str
    """ok (already there), changed (uploaded), refused or failed."""
    size_bytes: int = 0
    detail: str = ""
    seconds: float = 0.0


def local_image(image: str) -> tuple[str, int]:
    """(image id, size in bytes) of an image in the local Docker engine."""
    try:
        result = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise ImageError("docker is not installed on this workstation") from None
    except subprocess.TimeoutExpired:
        raise ImageError("the local Docker engine did not answer in 30s") from None
    if result.returncode != 0:
        raise ImageError(f"image {image!r} is not in the local Docker engine "
                         f"({(result.stderr.strip().splitlines() or ['?'])[-1]}); build or pull it here first")
    info = json.loads(result.stdout)[0]
    return str(info["Id"]), int(info["Size"])


def remote_image_id(conn: Connection, image: str) -> str | None:
    result = conn.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], timeout=30)
    if result.exit_code == 127:
        raise ImageError(f"docker is not installed on {conn.host.name}")
    return result.stdout.strip() if result.ok else None


def sync_image(conn: Connection, image: str, max_bytes: int, force: bool = False,
               progress: Callable[[int], None] | None = None) -> ImageResult:
    """Make ``image`` present on the host with the same id as here; upload it when it is not."""
    started = time.monotonic()
    result = ImageResult(conn.host.name, image, "failed")
    try:
        image_id, size = local_image(image)
        result.size_bytes = size
        if size > max_bytes:
            result.status = "refused"
            result.detail = (f"{size / 1e9:.1f} GB is over the {max_bytes / 1e9:.1f} GB limit (images.max_size_gb); "
                             "slim the image or raise the limit")
            return result
        if not force and remote_image_id(conn, image) == image_id:
            result.status, result.detail = "ok", "present"
            return result
        sent = _upload(conn, image, progress)
        if remote_image_id(conn, image) != image_id:
            raise ImageError(f"after docker load, {image} on {conn.host.name} does not have id {image_id[:19]}")
        result.status, result.detail = "changed", f"uploaded {sent / 1e6:.1f} MB"
    except (ImageError, SSHError) as exc:
        result.detail = str(exc)
    finally:
        result.seconds = time.monotonic() - started
    return result


def _upload(conn: Connection, image: str, progress: Callable[[int], None] | None) -> int:
    channel = conn.transport().open_session(timeout=conn.timeout)
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sent = 0
    try:
        channel.exec_command(shlex.join(["docker", "load", "-q"]))
        assert save.stdout is not None
        while chunk := save.stdout.read(CHUNK):
            channel.sendall(chunk)
            sent += len(chunk)
            if progress:
                progress(len(chunk))
        channel.shutdown_write()
        save_err = save.stderr.read().decode(errors="replace") if save.stderr else ""
        if save.wait() != 0:
            raise ImageError(f"docker save {image} failed: {save_err.strip()[-200:]}")
        output = b""
        while data := channel.recv(65536):
            output += data
        errors = b""
        while channel.recv_stderr_ready():
            errors += channel.recv_stderr(65536)
        if channel.recv_exit_status() != 0:
            raise ImageError(f"docker load on {conn.host.name} failed: "
                             f"{(errors or output).decode(errors='replace').strip()[-200:]}")
    finally:
        if save.poll() is None:
            save.kill()
            save.wait()
        for stream in (save.stdout, save.stderr):
            if stream:
                stream.close()
        channel.close()
    return sent
