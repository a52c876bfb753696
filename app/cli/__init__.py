"""The ``fleetdeck`` command.

Sub-commands live in their own modules and are imported only when used, so ``fleetdeck --help``
and ``fleetdeck tasks list`` stay fast. A user mistake (bad flag, unreachable server, bad token,
unknown id) prints one line on stderr and exits 2; no traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from fleetdeck._version import __version__

COMMANDS: dict[str, tuple[str, str, str]] = {
    "server": ("fleetdeck.app.cli.server", "server", "Run the tracking server."),
    "tasks": ("fleetdeck.app.cli.tasks", "tasks", "List, show and act on tasks."),
    "data": ("fleetdeck.app.cli.data", "data", "Versioned datasets: create, add, upload, get, diff, verify."),
    "token": ("fleetdeck.app.cli.tokens", "token", "Create, list and revoke API tokens."),
    "demo": ("fleetdeck.app.cli.demo", "demo", "Fill a server with example experiments."),
    "version": ("fleetdeck.app.cli.misc", "version", "Print fleetdeck's version."),
    "costs": ("fleetdeck.app.cli.costs", "costs", "GPU cost and waste per project, user, host, queue or task."),
    "agent": ("fleetdeck.app.cli.agent", "agent", "Run queued tasks on this machine (venv or Docker)."),
    "queues": ("fleetdeck.app.cli.queues", "queues", "List and create queues."),
    "workers": ("fleetdeck.app.cli.workers", "workers", "List the agents heartbeating to the server."),
    "tui": ("fleetdeck.app.cli.tui", "tui", "Open the control centre (also: fleetdeck with no arguments)."),
    "serve": ("fleetdeck.app.cli.tui", "serve", "Serve the control centre to a browser on 127.0.0.1."),
    "sync": ("fleetdeck.app.cli.sync", "sync", "Upload runs left in the local spool (offline or server down)."),
    "fleet": ("fleetdeck.app.cli.fleet", "fleet", "Provision, supervise and inspect agents on SSH hosts."),
    "triage": ("fleetdeck.app.cli.triage", "triage", "Stuck or dead agents and tasks: why, evidence, fix."),
}
"""name -> (module, attribute, one-line help); each feature registers its command group here."""


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module, attr, _ = spec
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", "server_url", envvar="FLEETDECK_SERVER_URL", help="Server URL (default: from config).")
@click.option("--token", envvar="FLEETDECK_API_TOKEN", help="API token (default: from config).")
@click.version_option(__version__, prog_name="fleetdeck")
@click.pass_context
def cli(ctx: click.Context, server_url: str | None, token: str | None) -> None:
    """fleetdeck: experiments, agents and GPU fleet from one terminal."""
    ctx.obj = {"server_url": server_url, "token": token}
    if ctx.invoked_subcommand is None:
        if sys.stdin.isatty() and sys.stdout.isatty():  # a person at a terminal: open the control centre
            from fleetdeck.app.cli.tui import launch

            launch(ctx)
        else:
            click.echo(ctx.get_help())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: maps user errors to one line and exit code 2."""
    from fleetdeck.errors import FleetdeckError

    try:
        # without standalone mode click returns (not raises) the code of ctx.exit(n) / Exit(n)
        code = cli.main(args=argv, prog_name="fleetdeck", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # one line, not click's usage block
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except FleetdeckError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


def make_client(ctx: click.Context) -> Any:
    """A client for the server named on the command line, in the environment or the config."""
    from fleetdeck.client import Client

    obj = ctx.find_root().obj or {}
    return Client(url=obj.get("server_url"), token=obj.get("token"))
