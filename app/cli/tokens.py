"""``fleetdeck token create|list|revoke``."""

from __future__ import annotations

import click

from fleetdeck.app.cli import make_client
from fleetdeck.app.cli.render import ago, console, table


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (admin)."""


@token.command("create")
@click.option("--name", required=True, help="Who or what uses the token, e.g. gpu-host-3.")
@click.option("--role", type=click.Choice(["admin", "user", "agent"]), default="user", show_default=True)
@click.pass_context
def create(ctx: click.Context, name: str, role: str) -> None:
    """Create a token; its secret is printed once."""
    with make_client(ctx) as client:
        doc = client.create_token(name, role)
    click.echo(doc["token"])
    click.echo(f"token {doc['id']} ({role}) for {name}: store it now, it is not shown again", err=True)


@token.command("list")
@click.pass_context
def list_tokens(ctx: click.Context) -> None:
    """List tokens (never their secrets)."""
    with make_client(ctx) as client:
        items = client.list_tokens()
    console.print(table(["ID", "NAME", "ROLE", "CREATED", "STATE"],
                        ((t["id"], t["name"], t["role"], ago(t["created"]), "revoked" if t["revoked"] else "active")
                         for t in items)))


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
def revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token; requests with it are refused at once."""
    with make_client(ctx) as client:
        client.revoke_token(token_id)
    click.echo(f"revoked {token_id}")
