"""The MongoDB document store: the scale path behind the same ``Store`` contract.

Several stateless API servers can share one MongoDB (a replica set or a sharded cluster behind a
load balancer): every document and every piece of volatile state lives in the database, none in a
server's memory. The store's query language is already a subset of MongoDB's, so queries pass
through; the translation below only

* maps the ``id`` field to MongoDB's ``_id`` (so a ``get`` is a primary-key lookup),
* turns ``$contains`` into an escaped, case-insensitive ``$regex``,
* makes ``$all`` need an array, as the contract says (MongoDB's also matches a lone scalar), and
* makes ``$pull`` remove exact values (MongoDB reads a sub-document as a condition).

Durability: an acknowledged write is journaled on a majority of the replica set (``w=majority``,
``journal=true``) unless the URI says otherwise (``?w=1``, ``?journal=false``, ``?wtimeoutMS=``),
and pymongo retries a write once across a primary election (retryable writes). No multi-document
transactions are used: every store operation is a single-document atomic operation, which is what
the contract promises and what a sharded cluster does cheaply.

Volatile state (worker heartbeats) lives in the ``_volatile`` collection with a TTL index on its
expiry time; MongoDB's TTL monitor deletes expired entries about once a minute, so reads also
filter on the expiry time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fleetdeck.server_lite.store.base import (
    BadDocument, Document, DuplicateId, Query, Sort, Store, StoreError, StoreFull, Update,
)

DEFAULT_DATABASE = "fleetdeck"
VOLATILE = "_volatile"

_FIELD_OPS = {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$all", "$contains"}
_UPDATE_OPS = {"$set", "$unset", "$inc", "$push", "$pull"}
_OUT_OF_DISK = {14031}
"""MongoDB error codes that mean the server's disk is full (``OutOfDiskSpace``)."""

Index = tuple[list[tuple[str, int]], dict[str, Any]]

INDEXES: dict[str, list[Index]] = {
    "tasks": [
        # The task listing filters on project / status / user / tags and sorts by created
        # (newest first) by default: each filter field leads an index that ends in created, so
        # a filtered page is read in index order and stops after ``limit`` documents.
        ([("project", 1), ("created", -1)], {}),
        ([("project", 1), ("status", 1), ("created", -1)], {}),
        ([("status", 1), ("created", -1)], {}),
        ([("user", 1), ("created", -1)], {}),
        ([("tags", 1), ("created", -1)], {}),
        ([("created", -1)], {}),
        ([("parent", 1)], {"sparse": True}),
        # Every server's lease reaper asks for expired leases once a second: without this index
        # that is a scan of every task, per server, per second.
        ([("lease.expires", 1)], {"sparse": True}),
        ([("events_pending", 1)], {"sparse": True}),
        ([("runtime.host", 1), ("ended", -1)], {"sparse": True}),
        # Sorting by a metric's last value (``metrics.<key>.last``) has no index: the keys are
        # per-project and unbounded. Such sorts run on the project-filtered set; see
        # docs/deploy-mongodb.md.
    ],
    "queue_entries": [
        # Exactly the dequeue order: first entry by priority (high first), then FIFO.
        ([("queue", 1), ("priority", -1), ("seq", 1)], {}),
    ],
    "artifacts": [
        ([("task", 1), ("created", 1)], {}),
        ([("kind", 1), ("project", 1), ("created", -1)], {}),
    ],
    "datasets": [
        ([("project", 1), ("name", 1), ("created", -1)], {}),
        ([("created", -1)], {}),
    ],
    "dataset_readers": [([("dataset", 1), ("last_read", -1)], {})],
    "gpu_waste": [([("end", 1), ("start", 1)], {}), ([("host", 1), ("gpu", 1), ("kind", 1)], {})],
    "fleet_restarts": [([("host", 1), ("ts", -1)], {})],
    "fleet_findings": [([("state", 1), ("host", 1), ("created", -1)], {}), ([("created", -1)], {})],
    "tokens": [
        ([("hash", 1)], {}),
        ([("revoked", 1)], {}),
    ],
    "projects": [
        ([("name", 1)], {}),
    ],
    VOLATILE: [
        ([("ns", 1), ("expires", 1)], {}),
        ([("expires", 1)], {"expireAfterSeconds": 0}),
    ],
}
"""Indexes created on open (``create_index`` is idempotent). A feature whose listing filters or
sorts on other fields adds its entry here."""


class MongoStore(Store):
    """Documents in MongoDB collections, one collection per store collection.

    Args:
        uri: a ``mongodb://`` or ``mongodb+srv://`` URI; its path names the database
            (default ``fleetdeck``) and its options may set the write concern.
        client: an already-built pymongo-compatible client (tests pass ``mongomock``); the
            store then does not own, ping or close it.
        database: database name, overriding the URI's.
        server_selection_timeout_s: how long to wait for a usable server before failing.

    Raises:
        StoreError: the URI is invalid or no server answered in time.
    """

    def __init__(self, uri: str, *, client: Any = None, database: str | None = None,
                 server_selection_timeout_s: float = 10.0) -> None:
        self.uri = uri
        self.display_uri = redact_uri(uri)
        self._owns_client = client is None
        if client is None:
            client = _connect(uri, server_selection_timeout_s)
        self.client = client
        try:
            with self.translate_errors("open"):
                self.db = client[database] if database else client.get_default_database(default=DEFAULT_DATABASE)
                if self._owns_client:
                    client.admin.command("ping")
                self.ensure_indexes()
        except BaseException:
            self.close()
            raise

    # -- setup -----------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Create the indexes listed in :data:`INDEXES` (a no-op for those that exist)."""
        for collection, indexes in INDEXES.items():
            for keys, options in indexes:
                self.db[collection].create_index(keys, **options)

    @contextmanager
    def translate_errors(self, what: str) -> Iterator[None]:
        """Map pymongo's exceptions onto the store's: the API turns those into 503/507 answers."""
        from bson.errors import InvalidDocument
        from pymongo.errors import (
            ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError,
        )

        try:
            yield
        except DuplicateKeyError:
            raise DuplicateId(f"{what}: a document with this id exists") from None
        except OperationFailure as exc:
            if exc.code in _OUT_OF_DISK:
                raise StoreFull(f"MongoDB's disk is full: {what} was not stored") from None
            message = (exc.details or {}).get("errmsg") or str(exc)
            raise StoreError(f"MongoDB refused {what}: {message}") from None
        except ConnectionFailure as exc:
            raise StoreError(f"MongoDB at {self.display_uri} is unreachable ({what}): "
                             f"{str(exc).split(',')[0]}") from None
        except (InvalidDocument, OverflowError) as exc:
            raise BadDocument(f"{what}: a value cannot be stored: {exc}") from None
        except PyMongoError as exc:
            raise StoreError(f"MongoDB error during {what}: {exc}") from None

    # -- documents -------------------------------------------------------------------------

    def insert(self, collection: str, doc: Document) -> Document:
        if not isinstance(doc.get("id"), str) or not doc["id"]:
            raise StoreError("a document needs a non-empty string id")
        with self.translate_errors(f"insert of {collection}/{doc['id']}"):
            self.db[collection].insert_one(to_mongo(doc))
        return doc

    def get(self, collection: str, doc_id: str) -> Document | None:
        with self.translate_errors(f"read of {collection}"):
            found = self.db[collection].find_one({"_id": doc_id})
        return from_mongo(found) if found is not None else None

    def find(self, collection: str, query: Query | None = None, *, sort: Sort | None = None,
             skip: int = 0, limit: int | None = None, fields: Iterable[str] | None = None) -> list[Document]:
        filt = translate_query(query)
        projection = None
        if fields is not None:
            projection = {_field(f): True for f in fields}
            projection["_id"] = True
        with self.translate_errors(f"query of {collection}"):
            cursor = self.db[collection].find(filt, projection)
            if sort:
                cursor = cursor.sort(translate_sort(sort))
            if skip:
                cursor = cursor.skip(skip)
            if limit is not None:
                if limit <= 0:
                    return []
                cursor = cursor.limit(limit)
            return [from_mongo(d) for d in cursor]

    def count(self, collection: str, query: Query | None = None) -> int:
        filt = translate_query(query)
        with self.translate_errors(f"count of {collection}"):
            return int(self.db[collection].count_documents(filt))

    def update(self, collection: str, doc_id: str, update: Update, *, where: Query | None = None) -> Document | None:
        filt: dict[str, Any] = {"_id": doc_id}
        if where:
            filt = {"$and": [filt, translate_query(where)]}
        return self._find_one_and_update(collection, filt, update, None)

    def find_one_and_update(self, collection: str, query: Query, update: Update, *,
                            sort: Sort | None = None) -> Document | None:
        return self._find_one_and_update(collection, translate_query(query), update, sort)

    def _find_one_and_update(self, collection: str, filt: dict[str, Any], update: Update,
                             sort: Sort | None) -> Document | None:
        from pymongo import ReturnDocument

        change = translate_update(update)
        with self.translate_errors(f"update of {collection}"):
            found = self.db[collection].find_one_and_update(
                filt, change, sort=translate_sort(sort) if sort else None,
                return_document=ReturnDocument.AFTER)
        return from_mongo(found) if found is not None else None

    def find_one_and_delete(self, collection: str, query: Query, *, sort: Sort | None = None) -> Document | None:
        filt = translate_query(query)
        with self.translate_errors(f"delete from {collection}"):
            found = self.db[collection].find_one_and_delete(filt, sort=translate_sort(sort) if sort else None)
        return from_mongo(found) if found is not None else None

    def delete(self, collection: str, doc_id: str) -> bool:
        with self.translate_errors(f"delete from {collection}"):
            return bool(self.db[collection].delete_one({"_id": doc_id}).deleted_count)

    def collections(self) -> list[str]:
        """Names of the document collections (internal ones, starting with ``_`` or ``events.``, left out)."""
        with self.translate_errors("listing collections"):
            names = self.db.list_collection_names()
        return sorted(n for n in names if not n.startswith(("_", "events.", "system.")))

    # -- volatile state --------------------------------------------------------------------

    def put_volatile(self, namespace: str, key: str, value: Document, ttl_s: float) -> None:
        expires = _utcnow() + timedelta(seconds=ttl_s)
        with self.translate_errors("heartbeat"):
            self.db[VOLATILE].replace_one({"_id": _volatile_id(namespace, key)},
                                          {"ns": namespace, "key": key, "value": value, "expires": expires},
                                          upsert=True)

    def list_volatile(self, namespace: str) -> dict[str, Document]:
        with self.translate_errors("heartbeat listing"):
            found = self.db[VOLATILE].find({"ns": namespace, "expires": {"$gt": _utcnow()}})
            return {d["key"]: d["value"] for d in found}

    def delete_volatile(self, namespace: str, key: str) -> None:
        with self.translate_errors("heartbeat removal"):
            self.db[VOLATILE].delete_one({"_id": _volatile_id(namespace, key)})

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


# -- connection ------------------------------------------------------------------------------

def _connect(uri: str, server_selection_timeout_s: float) -> Any:
    """A pymongo client with durable defaults; the URI's own options win."""
    try:
        import pymongo
        from pymongo.errors import ConfigurationError, InvalidURI
    except ImportError:
        raise StoreError("the MongoDB store needs pymongo: pip install 'fleetdeck[mongo]'") from None
    given = {k.lower() for k, _ in parse_qsl(urlsplit(uri).query)}
    options: dict[str, Any] = {"retryWrites": True, "tz_aware": False}
    if "w" not in given:
        options["w"] = "majority"
    if not given & {"journal", "j"}:
        options["journal"] = True
    if "serverselectiontimeoutms" not in given:
        options["serverSelectionTimeoutMS"] = int(server_selection_timeout_s * 1000)
    try:
        return pymongo.MongoClient(uri, **options)
    except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
        raise StoreError(f"invalid MongoDB URI {redact_uri(uri)}: {exc}") from None


def redact_uri(uri: str) -> str:
    """The URI with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    userinfo, hosts = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{hosts}").geturl()


# -- translation -----------------------------------------------------------------------------

def _field(path: str) -> str:
    return "_id" if path == "id" else path


def to_mongo(doc: Document) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "id"}
    out["_id"] = doc["id"]
    return out


def from_mongo(doc: Mapping[str, Any]) -> Document:
    out: Document = {"id": doc["_id"]}
    out.update((k, v) for k, v in doc.items() if k != "_id")
    return out


def translate_query(query: Query | None) -> dict[str, Any]:
    """The MongoDB filter for a store query; raises StoreError outside the supported subset."""
    if not query:
        return {}
    out: dict[str, Any] = {}
    for key, cond in query.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, list) or not cond:
                raise StoreError(f"{key} needs a non-empty list")
            out[key] = [translate_query(q) for q in cond]
        elif key.startswith("$"):
            raise StoreError(f"unsupported query operator {key}")
        elif isinstance(cond, Mapping) and cond and all(k.startswith("$") for k in cond):
            out[_field(key)] = _translate_ops(cond)
        else:
            out[_field(key)] = cond
    return out


def _translate_ops(cond: Mapping[str, Any]) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    for op, arg in cond.items():
        if op not in _FIELD_OPS:
            raise StoreError(f"unsupported query operator {op}")
        if op in ("$in", "$nin", "$all"):
            if not isinstance(arg, (list, tuple, set)):
                raise StoreError(f"{op} needs a list")
            arg = list(arg)
        if op == "$contains":
            if not isinstance(arg, str):
                raise StoreError("$contains needs a string")
            ops["$regex"] = re.escape(arg)
            ops["$options"] = "i"
        elif op == "$exists":
            ops["$exists"] = bool(arg)
        elif op == "$all":
            ops["$all"] = arg
            ops["$type"] = "array"
        else:
            ops[op] = arg
    return ops


def translate_sort(sort: Sort) -> list[tuple[str, int]]:
    return [(_field(path), 1 if direction >= 0 else -1) for path, direction in sort]


def translate_update(update: Update) -> dict[str, Any]:
    """The MongoDB update document; raises StoreError outside the supported subset."""
    if not update:
        raise StoreError("empty update")
    unknown = set(update) - _UPDATE_OPS
    if unknown:
        raise StoreError(f"unsupported update operator(s): {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for op, fields in update.items():
        if not isinstance(fields, Mapping):
            raise StoreError(f"{op} needs a mapping of paths")
        if not fields:
            continue
        for path in fields:
            if path == "id" or path.startswith("id."):
                raise StoreError("an update cannot change a document's id")
        if op == "$unset":
            out[op] = {path: "" for path in fields}
        elif op == "$pull":
            out[op] = {path: {"$in": [value]} for path, value in fields.items()}
        else:
            out[op] = dict(fields)
    if not out:
        raise StoreError("empty update")
    return out


def _volatile_id(namespace: str, key: str) -> str:
    return f"{namespace}\x1f{key}"


def _utcnow() -> datetime:
    """Naive UTC, as BSON dates come back without a zone."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
