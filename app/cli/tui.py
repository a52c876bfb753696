"""``fleetdeck`` (no arguments), ``fleetdeck tui`` and ``fleetdeck serve``: the control centre.

With no server named on the command line, in the environment or the config, the embedded server
is started in the background (:func:`fleetdeck.app.embedded.ensure_server`), which says where its
data lives. ``fleetdeck serve`` runs the same app in a browser through textual-serve, bound to
loopback only; the token reaches the app through the environment, never a command line.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import sys

import click

from fleetdeck.config import ClientSettings

VIEW_CHOICE = click.Choice(["experiments", "fleet", "queues", "triage", "costs", "datasets", "log"])


def _settings(ctx: click.Context) -> ClientSettings:
    """The server named on the command line, in the environment or the config; a loopback one
    that does not answer is started as the embedded server."""
    from fleetdeck.app.embedded import ensure_server

    obj = ctx.find_root().obj or {}
    return ensure_server(url=obj.get("server_url"), token=obj.get("token"))


def launch(ctx: click.Context, readonly: bool = False, view: str = "experiments", view_filter: str = "") -> None:
    """Open the TUI on the configured server (or the embedded one, started if needed)."""
    from fleetdeck.app.tui.app import FleetdeckApp, binding_ids
    from fleetdeck.app.tui.data import DataSource
    from fleetdeck.app.tui.settings import load_settings
    from fleetdeck.client import Client

    tui_settings = load_settings(binding_ids())
    settings = _settings(ctx)
    from fleetdeck.app.embedded import STARTED

    with Client(settings=settings) as client:
        app = FleetdeckApp(DataSource(client, readonly=readonly), tui_settings, view=view, view_filter=view_filter,
                           notice=STARTED[-1] if STARTED else "")
        app.run()


@click.command()
@click.option("--readonly", is_flag=True, help="Remove every action (abort, requeue, restart, …).")
@click.option("--view", type=VIEW_CHOICE, default="experiments", show_default=True, help="View to open first.")
@click.option("--filter", "view_filter", default="", help="Filter for that view, as typed after '/'.")
@click.pass_context
def tui(ctx: click.Context, readonly: bool, view: str, view_filter: str) -> None:
    """Open the control centre in this terminal."""
    launch(ctx, readonly=readonly, view=view, view_filter=view_filter)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", default=8010, show_default=True, type=click.IntRange(1, 65535))
@click.option("--readonly", is_flag=True, help="Remove every action in the served app.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, readonly: bool) -> None:
    """Serve the control centre to a browser on this machine (textual-serve)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise click.BadParameter(f"{host!r} is not a loopback address: the served app can act with your token; "
                                 "reach it from elsewhere through an SSH tunnel", param_hint="--host")
    settings = _settings(ctx)
    from textual_serve.server import Server

    os.environ["FLEETDECK_SERVER_URL"] = settings.url
    if settings.token:
        os.environ["FLEETDECK_API_TOKEN"] = settings.token
    command = shlex.join([sys.executable, "-m", "fleetdeck.app", "tui", *(["--readonly"] if readonly else [])])
    click.echo(f"serving the control centre on http://{host}:{port} (server {settings.url})")
    Server(command, host=host, port=port, title="fleetdeck").serve()
