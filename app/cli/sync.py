"""``fleetdeck sync``: upload runs left in the local spool (offline runs, or a server that was down)."""

from __future__ import annotations

import fcntl
from pathlib import Path

import click

from fleetdeck.app.cli import make_client


@click.command()
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def sync(ctx: click.Context, folders: tuple[Path, ...]) -> None:
    """Upload spooled runs (FOLDERS, or every run under the spool directory), exactly once.

    A run whose helper process is still uploading it is skipped; run the command again later.
    """
    from fleetdeck._reporter import remove_uploaded
    from fleetdeck._uploader import Retry, Uploader
    from fleetdeck.errors import FleetdeckError
    from fleetdeck.spool import pending, run_folders, spool_root

    targets = list(folders) or run_folders()
    if not targets:
        click.echo(f"nothing to sync in {spool_root()}")
        return
    failed = 0
    with make_client(ctx) as client:
        for folder in targets:
            if not (folder / "run.json").exists():
                raise click.BadParameter(f"{folder} is not a fleetdeck run folder (no run.json)",
                                         param_hint="FOLDERS")
            with open(folder / "upload.lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    click.echo(f"{folder.name}: still being uploaded by its run's helper; skipped")
                    continue
                uploader = Uploader(folder, client, log=lambda line: click.echo(line, err=True))
                try:
                    sent = uploader.upload(include_close=True)
                except Retry as exc:
                    raise FleetdeckError(f"{folder.name}: {exc}") from None
                left = len(pending(folder))
                if left:
                    failed += 1
                else:
                    remove_uploaded(folder)
                click.echo(f"{folder.name}: {sent} record(s) uploaded to task {uploader.task_id}"
                           + (f", {left} left" if left else ""))
    if failed:
        raise FleetdeckError(f"{failed} run(s) could not be uploaded completely")
