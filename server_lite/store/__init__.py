"""Document stores behind one interface: the embedded journal+TinyDB store and (optionally) MongoDB."""

from fleetdeck.server_lite.store.base import BadDocument, Store, StoreError, DataDirLocked, StoreFull, Document
from fleetdeck.server_lite.store.query import matches, validate_query

__all__ = sorted(["BadDocument", "Store", "StoreError", "DataDirLocked", "StoreFull", "Document", "matches", "validate_query"])
