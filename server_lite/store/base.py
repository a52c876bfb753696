"""The ``Store`` contract: what every document backend must provide.

Queries and updates use a small, documented subset of MongoDB's language so that the MongoDB
backend passes them through unchanged and the embedded backend implements them in memory
(``query.py``). Every document has a string ``id``. Writes return only once durable.

Query operators: equality, ``$eq $ne $in $nin $gt $gte $lt $lte $exists $all`` and ``$contains``
(case-insensitive substring; MongoDB receives an escaped ``$regex``); top-level ``$and``/``$or``.
Update operators: ``$set``, ``$unset``, ``$inc``, ``$push``, ``$pull`` on dotted paths.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import Any

Document = dict[str, Any]
Query = Mapping[str, Any]
Update = Mapping[str, Any]
Sort = list[tuple[str, int]]
"""Sort keys, e.g. ``[("created", -1), ("id", 1)]``; missing values sort first ascending."""


class StoreError(Exception):
    """A store could not do what was asked (not a user error)."""


class DataDirLocked(StoreError):
    """Another server process owns the data directory."""


class StoreFull(StoreError):
    """The disk is full: the write was not acknowledged and nothing changed."""


class DuplicateId(StoreError):
    """A document with this id already exists in the collection."""


class BadDocument(StoreError):
    """A document holds a value the store cannot represent (e.g. an integer beyond 64 bits).

    The caller sent it, so the server answers 422; nothing was written.
    """


class Store(abc.ABC):
    """Documents by collection, plus volatile key/value state with a time to live.

    Implementations must make every acknowledged write durable and every single-document
    operation atomic; ``find_one_and_update``/``find_one_and_delete`` are the primitives that
    queues and leases build on.
    """

    # -- documents -------------------------------------------------------------------------

    @abc.abstractmethod
    def insert(self, collection: str, doc: Document) -> Document:
        """Insert a document with a new ``id``; raises DuplicateId if it exists."""

    def insert_many(self, collection: str, docs: list[Document]) -> list[Document]:
        """Insert several documents; backends override this to make it one durable write.

        Raises:
            DuplicateId: a document's id exists (backends that override this check every id
                before writing anything).
        """
        return [self.insert(collection, doc) for doc in docs]

    @abc.abstractmethod
    def get(self, collection: str, doc_id: str) -> Document | None:
        """The document with this id, or None."""

    @abc.abstractmethod
    def find(self, collection: str, query: Query | None = None, *, sort: Sort | None = None,
             skip: int = 0, limit: int | None = None, fields: Iterable[str] | None = None) -> list[Document]:
        """Documents matching ``query`` in ``sort`` order; ``fields`` limits the top-level keys."""

    @abc.abstractmethod
    def count(self, collection: str, query: Query | None = None) -> int:
        """How many documents match."""

    @abc.abstractmethod
    def update(self, collection: str, doc_id: str, update: Update, *, where: Query | None = None) -> Document | None:
        """Apply ``update`` to one document if it exists and matches ``where``; the new document or None."""

    @abc.abstractmethod
    def find_one_and_update(self, collection: str, query: Query, update: Update, *,
                            sort: Sort | None = None) -> Document | None:
        """Atomically update the first matching document and return it after the update."""

    @abc.abstractmethod
    def find_one_and_delete(self, collection: str, query: Query, *, sort: Sort | None = None) -> Document | None:
        """Atomically delete the first matching document and return it."""

    @abc.abstractmethod
    def delete(self, collection: str, doc_id: str) -> bool:
        """Delete one document; True if it existed."""

    def upsert(self, collection: str, doc: Document) -> Document:
        """Insert or replace a whole document by id."""
        if self.get(collection, doc["id"]) is None:
            try:
                return self.insert(collection, doc)
            except DuplicateId:
                pass
        fields = {k: v for k, v in doc.items() if k != "id"}
        result = self.update(collection, doc["id"], {"$set": fields})
        assert result is not None
        return result

    # -- volatile state (heartbeats, live stats) -------------------------------------------

    @abc.abstractmethod
    def put_volatile(self, namespace: str, key: str, value: Document, ttl_s: float) -> None:
        """Keep ``value`` for ``ttl_s`` seconds; not journaled (lost on restart, like Redis in ClearML)."""

    @abc.abstractmethod
    def list_volatile(self, namespace: str) -> dict[str, Document]:
        """Every live (not expired) value in a namespace."""

    @abc.abstractmethod
    def delete_volatile(self, namespace: str, key: str) -> None:
        """Forget a volatile value."""

    # -- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release the store (and its lock)."""

    def compact(self) -> None:  # noqa: B027 - optional hook
        """Fold the write journal into the snapshot; a no-op where the backend has none."""
