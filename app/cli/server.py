"""``fleetdeck server``."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(invoke_without_command=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FLEETDECK_DATA_DIR",
              help="Where the embedded store keeps its data (default: $XDG_DATA_HOME/fleetdeck/server).")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="FLEETDECK_HOST",
              help="Address to bind; anything but loopback exposes the server to the network.")
@click.option("--port", default=8008, show_default=True, type=click.IntRange(1, 65535), envvar="FLEETDECK_PORT")
@click.option("--store", "store_uri", envvar="FLEETDECK_STORE",
              help="mongodb://… to use MongoDB instead of the embedded store.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--max-body-mb", default=64, show_default=True, type=click.IntRange(1, 4096),
              envvar="FLEETDECK_MAX_BODY_MB", help="Largest request body accepted; bigger ones get 413.")
def server(data_dir: Path | None, host: str, port: int, store_uri: str | None, log_level: str,
           max_body_mb: int) -> None:
    """Run the tracking server (embedded store by default); `server migrate` copies it into MongoDB."""
    if click.get_current_context().invoked_subcommand is not None:
        return  # a sub-command (``fleetdeck server migrate``) runs instead of the server
    from fleetdeck.errors import FleetdeckError
    from fleetdeck.server_lite.runner import default_data_dir, serve
    from fleetdeck.server_lite.store.base import StoreError

    try:
        serve(data_dir or default_data_dir(), host=host, port=port, store_uri=store_uri, log_level=log_level,
              max_body_bytes=max_body_mb * 1024 * 1024)
    except (StoreError, ValueError) as exc:
        raise FleetdeckError(str(exc)) from None
    except OSError as exc:
        raise FleetdeckError(f"cannot start the server: {exc.strerror or exc}") from None


def _add_subcommands() -> None:
    from fleetdeck.app.cli.server_migrate import migrate

    server.add_command(migrate)


_add_subcommands()
