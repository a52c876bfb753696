"""``fleetdeck server migrate``: copy an embedded server's data into MongoDB."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--from", "source", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The embedded server's data directory (stop that server first).")
@click.option("--to", "target_uri", required=True, envvar="FLEETDECK_STORE",
              help="mongodb://… or mongodb+srv://… URI of the target database (write concern via the URI).")
@click.option("--blobs-to", type=click.Path(file_okay=False, path_type=Path),
              help="Shared blob folder the MongoDB-backed servers will use; blob files are copied there. "
                   "Default: leave them in DATA_DIR/blobs.")
@click.option("--no-verify", is_flag=True, help="Skip the verification pass (counts and checksums).")
def migrate(source: Path, target_uri: str, blobs_to: Path | None, no_verify: bool) -> None:
    """Copy documents, events and blob references into MongoDB; resumable, then verified.

    Run it again after an interruption: work already copied is skipped.
    """
    from fleetdeck.errors import FleetdeckError
    from fleetdeck.server_lite.store.base import StoreError

    if not target_uri.startswith(("mongodb://", "mongodb+srv://")):
        raise click.BadParameter("must be a mongodb:// or mongodb+srv:// URI", param_hint="--to")
    if not source.is_dir():
        raise click.BadParameter(f"{source} is not a directory", param_hint="--from")
    from fleetdeck.server_lite.migrate import MigrationError, migrate as run_migration
    from fleetdeck.server_lite.store.mongo import MongoStore

    try:
        target = MongoStore(target_uri)
    except StoreError as exc:
        raise FleetdeckError(str(exc)) from None
    try:
        with _ProgressBars() as bars:
            report = run_migration(source, target, blobs_to=blobs_to, verify=not no_verify, progress=bars.update)
    except (MigrationError, StoreError) as exc:
        raise FleetdeckError(f"{exc} (run the command again to resume)") from None
    finally:
        target.close()
    copied = sum(report.documents.values())
    click.echo(f"copied {copied} documents, events of {report.event_tasks} tasks "
               f"({report.resumed_tasks} already done), {report.blobs_copied} blob files to {target.display_uri}")
    for check in report.checks:
        state = "ok" if check.ok else "MISMATCH"
        click.echo(f"  {state:8} {check.what}: {check.source_count} in the source, {check.target_count} in MongoDB")
    if report.missing_blobs:
        click.echo(f"  MISSING  {len(report.missing_blobs)} referenced blob(s), e.g. {report.missing_blobs[0]}")
    if report.checks and not report.ok:
        raise FleetdeckError("verification failed: the copy differs from the source (see above)")
    if report.checks:
        click.echo("verified: counts and checksums match")


class _ProgressBars:
    """One rich progress bar per migration phase."""

    def __enter__(self) -> _ProgressBars:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description:20}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), transient=False)
        self._tasks: dict[str, int] = {}
        self._progress.__enter__()
        return self

    def update(self, phase: str, done: int, total: int) -> None:
        task = self._tasks.get(phase)
        if task is None:
            task = self._tasks[phase] = self._progress.add_task(phase, total=total)
        self._progress.update(task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)
