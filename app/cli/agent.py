"""``fleetdeck agent``: run queued tasks on this machine, in a venv or a pre-built Docker image."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import click

from fleetdeck.app.cli import make_client

_SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_gpu_sets(gpus: tuple[str, ...], cpu_only: bool) -> list[list[str]] | None:
    """``--gpus 0,1 --gpus 2`` → [["0", "1"], ["2"]]; ``--cpu-only`` → [[]]; neither → None."""
    if cpu_only and gpus:
        raise click.UsageError("--gpus and --cpu-only exclude each other")
    if cpu_only:
        return [[]]
    if not gpus:
        return None
    sets = []
    for spec in gpus:
        ids = [part.strip() for part in spec.split(",")]
        if not all(part.isdigit() or _is_uuid(part) for part in ids):
            raise click.BadParameter(f"{spec!r} is not a comma-separated list of GPU indexes or UUIDs",
                                     param_hint="--gpus")
        sets.append(ids)
    seen = [g for s in sets for g in s]
    if len(seen) != len(set(seen)):
        raise click.BadParameter("a GPU appears in more than one set", param_hint="--gpus")
    return sets


def _is_uuid(text: str) -> bool:
    return text.startswith(("GPU-", "MIG-")) and len(text) > 8


def parse_size(text: str) -> int:
    """``20g`` → bytes."""
    value = text.strip().lower()
    unit = _SIZE_UNITS.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in _SIZE_UNITS else value
    try:
        return int(float(number) * unit)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size like 512m or 20g") from None


def parse_phase_timeouts(items: tuple[str, ...]) -> dict[str, float | None]:
    from fleetdeck.fleet.agent import DEFAULT_PHASE_TIMEOUTS

    timeouts = dict(DEFAULT_PHASE_TIMEOUTS)
    for item in items:
        phase, sep, value = item.partition("=")
        if not sep or phase not in timeouts:
            raise click.BadParameter(f"{item!r} must be PHASE=SECONDS with PHASE one of {', '.join(timeouts)}",
                                     param_hint="--phase-timeout")
        try:
            seconds = float(value) if value not in ("", "none") else None
        except ValueError:
            raise click.BadParameter(f"{item!r}: {value!r} is not a number of seconds",
                                     param_hint="--phase-timeout") from None
        if seconds is not None and seconds <= 0:
            raise click.BadParameter(f"{item!r}: the timeout must be positive", param_hint="--phase-timeout")
        timeouts[phase] = seconds
    return timeouts


@click.command(context_settings={"auto_envvar_prefix": "FLEETDECK_AGENT", "show_default": True})
@click.option("--queue", "-q", multiple=True, required=True,
              help="Queue to serve (repeatable; the first listed is served first).")
@click.option("--name", default=None, help="Worker name (default: this host's name).")
@click.option("--docker", metavar="IMAGE",
              help="Run tasks in containers of this pre-built image (default: a venv per requirement set).")
@click.option("--gpus", multiple=True, metavar="IDS",
              help="GPU set for one slot, e.g. 0,1; repeat for more slots (one task at a time per set).")
@click.option("--cpu-only", is_flag=True, help="Hide every GPU from jobs.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where task checkouts go (default: $XDG_DATA_HOME/fleetdeck/agent/NAME).")
@click.option("--venv-cache", type=click.Path(file_okay=False, path_type=Path),
              help="Venv cache folder (default: $XDG_CACHE_HOME/fleetdeck/venvs).")
@click.option("--venv-cache-size", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Venvs kept in the cache (least recently used evicted).")
@click.option("--min-free", default="2g", show_default=True, help="Free-space floor for the venv cache disk.")
@click.option("--lease", default=15.0, show_default=True, type=click.FloatRange(2, 3600),
              help="Seconds a task stays leased without a heartbeat (a dead agent's task returns after this).")
@click.option("--heartbeat", default=2.0, show_default=True, type=click.FloatRange(0.2, 60))
@click.option("--abort-grace", default=5.0, show_default=True, type=click.FloatRange(0, 60),
              help="Seconds between SIGTERM and SIGKILL when a task is aborted.")
@click.option("--phase-timeout", multiple=True, metavar="PHASE=SECONDS",
              help="Time limit of a phase (cloning, installing, pulling, starting, running, uploading).")
@click.option("--memory", default="8g", show_default=True, help="Docker: memory limit per container.")
@click.option("--cpus", default=2.0, show_default=True, type=click.FloatRange(0.1, 1024),
              help="Docker: CPU limit per container.")
@click.option("--max-image-size", default="30g", show_default=True, help="Docker: refuse larger images.")
@click.option("--docker-python", default="python3", show_default=True, help="Docker: interpreter in the image.")
@click.option("--registry", default=None, help="Docker: pull missing images from this registry.")
@click.option("--max-tasks", type=click.IntRange(1), default=None, help="Exit after this many tasks.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"]))
@click.pass_context
def agent(ctx: click.Context, queue: tuple[str, ...], name: str | None, docker: str | None,
          gpus: tuple[str, ...], cpu_only: bool, work_dir: Path | None, venv_cache: Path | None,
          venv_cache_size: int, min_free: str, lease: float, heartbeat: float, abort_grace: float,
          phase_timeout: tuple[str, ...], memory: str, cpus: float, max_image_size: str, docker_python: str,
          registry: str | None, max_tasks: int | None, log_level: str) -> None:
    """Run queued tasks on this machine until stopped (SIGTERM/ctrl-c).

    Every option can also come from the environment: FLEETDECK_AGENT_<OPTION>, e.g.
    FLEETDECK_AGENT_QUEUE="gpu default" or FLEETDECK_AGENT_LEASE=30.
    """
    from fleetdeck.config import data_home
    from fleetdeck.fleet.agent import Agent, AgentConfig
    from fleetdeck.server_lite.names import BadName, check_name

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the agent's own log
    name = name or socket.gethostname()
    try:
        for queue_name in queue:
            check_name(queue_name, "queue name")
        check_name(name, "worker name")
    except BadName as exc:
        raise click.BadParameter(str(exc)) from None
    config = AgentConfig(
        queues=list(queue), name=name, gpu_sets=parse_gpu_sets(gpus, cpu_only),
        work_dir=work_dir or data_home() / "agent" / name, lease_s=lease, heartbeat_s=heartbeat,
        abort_grace_s=abort_grace, phase_timeouts=parse_phase_timeouts(phase_timeout))
    if docker:
        from fleetdeck.fleet.executors.docker import DockerExecutor, DockerSettings

        executor = DockerExecutor(DockerSettings(image=docker, python=docker_python, memory=memory, cpus=cpus,
                                                 max_image_bytes=parse_size(max_image_size), registry=registry))
        executor.check_image(docker)
    else:
        from fleetdeck.fleet.executors.venv import VenvExecutor
        from fleetdeck.fleet.venv_cache import VenvCache

        cache_root = venv_cache or _cache_home() / "venvs"
        executor = VenvExecutor(VenvCache(cache_root, max_entries=venv_cache_size, min_free_bytes=parse_size(min_free)))
    with make_client(ctx) as probe:
        probe.list_workers()  # fails early, in one line, on a wrong URL or token
    worker = Agent(config, executor, client_factory=lambda: make_client(ctx), max_tasks=max_tasks)
    worker.install_signal_handlers()
    worker.run()


def _cache_home() -> Path:
    import os

    value = os.environ.get("XDG_CACHE_HOME")
    return (Path(value) if value else Path.home() / ".cache") / "fleetdeck"
