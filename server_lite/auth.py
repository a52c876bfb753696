"""Bearer tokens: created once, stored as sha256 hashes, checked on every route but ``/health``.

Roles: ``admin`` (everything, including tokens), ``user`` (everything but tokens), ``agent``
(what an agent needs: read tasks, take queued work, report events and heartbeats), ``task``
(minted at dequeue for one leased task; see ``leases.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from typing import Any

from fleetdeck.server_lite.store.base import Document, Store

TOKENS = "tokens"
TOKEN_PREFIX = "fd_"
ROLE_RANK = {"task": -1, "agent": 0, "user": 1, "admin": 2}
"""``task`` tokens are minted per lease for one job and reach only that task (``deps.enforce_scope``)."""


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenRegistry:
    """Issues and checks tokens; verified hashes are cached and dropped on revoke."""

    def __init__(self, store: Store, *, recheck_s: float | None = None) -> None:
        self.store = store
        self.recheck_s = recheck_s
        """Set when other server processes share the store (MongoDB): a token this process has not
        read from the store in ``recheck_s`` seconds is looked up again, so a token created or
        revoked by a peer takes effect here within that time. None: this process is the only writer."""
        self._by_hash: dict[str, Document] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()
        self._reload()

    def _reload(self) -> None:
        with self._lock:
            self._by_hash = {d["hash"]: d for d in self.store.find(TOKENS, {"revoked": False})}

    def is_empty(self) -> bool:
        return self.store.count(TOKENS) == 0

    def create(self, name: str, role: str, *, extra: dict[str, Any] | None = None) -> tuple[Document, str]:
        """A new token; the secret is returned once and never stored."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        doc = {"id": secrets.token_hex(16), "name": name, "role": role, "hash": hash_token(secret),
               "created": time.time(), "revoked": False, **(extra or {})}
        self.store.insert(TOKENS, doc)
        with self._lock:
            self._by_hash[doc["hash"]] = doc
        return doc, secret

    def verify(self, secret: str) -> Document | None:
        digest = hash_token(secret)
        with self._lock:
            doc = self._by_hash.get(digest)
            stale = self.recheck_s is not None and \
                time.monotonic() - self._checked.get(digest, -math.inf) >= self.recheck_s
        if stale:
            doc = self._lookup(digest)
        if doc is not None and hmac.compare_digest(doc["hash"], digest):
            return doc
        return None

    def _lookup(self, digest: str) -> Document | None:
        """Read one token from the store (a peer may have created or revoked it)."""
        found = self.store.find(TOKENS, {"hash": digest, "revoked": False}, limit=1)
        with self._lock:
            if not found:
                self._by_hash.pop(digest, None)
                self._checked.pop(digest, None)
                return None
            self._by_hash[digest] = found[0]
            self._checked[digest] = time.monotonic()
            return found[0]

    def list(self) -> list[Document]:
        return [public(d) for d in self.store.find(TOKENS, sort=[("created", 1)])]

    def revoke(self, token_id: str) -> bool:
        doc = self.store.update(TOKENS, token_id, {"$set": {"revoked": True, "revoked_at": time.time()}})
        self._reload()
        return doc is not None


def public(doc: Document) -> Document:
    """A token record without its hash."""
    return {k: v for k, v in doc.items() if k != "hash"}
