"""Start a server process: own the data dir, bootstrap the first admin token, run uvicorn."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from fleetdeck.config import data_home, load_file, save_server
from fleetdeck.server_lite.auth import TokenRegistry
from fleetdeck.server_lite.blobs import BlobStore
from fleetdeck.server_lite.events import FileEventStore
from fleetdeck.server_lite.state import ServerState
from fleetdeck.server_lite.tasks import repair_metric_summaries
from fleetdeck.server_lite.store.base import Store

log = logging.getLogger("fleetdeck.server")


def default_data_dir() -> Path:
    return Path(os.environ.get("FLEETDECK_DATA_DIR") or data_home() / "server")


def open_store(data_dir: Path, store_uri: str | None = None) -> Store:
    """The document store: embedded in ``data_dir`` unless ``store_uri`` names MongoDB."""
    if store_uri and store_uri.startswith(("mongodb://", "mongodb+srv://")):
        from fleetdeck.server_lite.store.mongo import MongoStore  # optional backend

        return MongoStore(store_uri)
    if store_uri:
        raise ValueError(f"unsupported store {store_uri!r}: use mongodb://… or leave it out for the embedded store")
    from fleetdeck.server_lite.store.embedded import EmbeddedStore

    return EmbeddedStore(data_dir / "docs")


def open_state(data_dir: Path, store_uri: str | None = None) -> ServerState:
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    store = open_store(data_dir, store_uri)
    if store_uri:
        return shared_state(store, data_dir)
    return ServerState(store=store, events=FileEventStore(data_dir / "events"), blobs=BlobStore(data_dir / "blobs"),
                       tokens=TokenRegistry(store), data_dir=data_dir)


PEER_RECHECK_S = 2.0
"""With a shared MongoDB: how soon a token, revocation or enqueue made by another server process
takes effect in this one (token cache re-check, waiting dequeue re-poll)."""


def shared_state(store: Store, data_dir: Path) -> ServerState:
    """State of one of several API servers sharing a MongoDB store: nothing shared lives only here.

    Documents, events (``MongoEventStore``) and volatile state are in the database; blobs stay
    content-addressed files under ``data_dir/blobs``, which every server must mount from the same
    shared filesystem (see docs/deploy-mongodb.md).
    """
    from fleetdeck.server_lite.store.mongo import MongoStore
    from fleetdeck.server_lite.store.mongo_events import MongoEventStore

    assert isinstance(store, MongoStore)
    try:
        events = MongoEventStore(store)
    except BaseException:
        store.close()
        raise
    return ServerState(store=store, events=events, blobs=BlobStore(data_dir / "blobs"),
                       tokens=TokenRegistry(store, recheck_s=PEER_RECHECK_S), data_dir=data_dir,
                       peer_poll_s=PEER_RECHECK_S)


def bootstrap_admin(state: ServerState, url: str) -> Path | None:
    """On first start, create an admin token and hand it to the local user.

    The secret goes to ``<data_dir>/admin-token`` (mode 600) and, unless the user config already
    names another server's token, into the client config, so a local user needs no manual step.
    Returns the config path written, if any.
    """
    if not state.tokens.is_empty():
        return None
    _doc, secret = state.tokens.create("bootstrap-admin", "admin")
    assert state.data_dir is not None
    token_file = state.data_dir / "admin-token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    existing = load_file().get("server", {})
    if existing.get("token") and existing.get("url", url).rstrip("/") != url.rstrip("/"):
        log.warning("admin token written to %s (the client config points at another server)", token_file)
        return None
    return save_server(url, secret)


def serve(data_dir: Path, host: str = "127.0.0.1", port: int = 8008, store_uri: str | None = None,
          log_level: str = "warning", announce: bool = True, max_body_bytes: int | None = None) -> None:
    """Run the server until SIGINT/SIGTERM; the store is compacted and released on the way out.

    Args:
        max_body_bytes: largest request body accepted (413 above it); the state's default if None.
    """
    import uvicorn

    from fleetdeck.server_lite.app import create_app

    sock = bind_socket(host, port)
    try:
        state = open_state(data_dir, store_uri)
    except BaseException:
        sock.close()
        raise
    if max_body_bytes is not None:
        state.max_body_bytes = max_body_bytes
    try:
        repaired = repair_metric_summaries(state)
        if repaired:
            log.warning("repaired the metric summaries of %d tasks interrupted by a crash", repaired)
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        written = bootstrap_admin(state, url)
        if announce:
            print(f"fleetdeck server {url}  data: {data_dir}", flush=True)
            if written:
                print(f"admin token saved to {written} (mode 600)", flush=True)
        config = uvicorn.Config(create_app(state), host=host, port=port, log_level=log_level,
                                access_log=False, timeout_graceful_shutdown=5, lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        state.events.close()
        state.store.close()


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so a taken port is a clear error, not a log line and exit 1."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # Nagle's algorithm plus delayed ACKs add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
