"""In-memory evaluation of the store's MongoDB-subset queries, updates and sorts.

Queries are compiled once into Python closures so that scanning 100,000 documents costs one
function call per document, not a walk of the query dict.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable, Mapping
from typing import Any

from fleetdeck.server_lite.store.base import Document, Query, Sort, StoreError, Update

Predicate = Callable[[Document], bool]

_MISSING = object()
_FIELD_OPS = {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$all", "$contains"}
_UPDATE_OPS = {"$set", "$unset", "$inc", "$push", "$pull"}


def get_path(doc: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted path, or the ``_MISSING`` sentinel."""
    if "." not in path:
        return doc.get(path, _MISSING)
    current: Any = doc
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return _MISSING
        current = current.get(part, _MISSING)
        if current is _MISSING:
            return _MISSING
    return current


def validate_query(query: Query) -> None:
    """Raise StoreError if the query uses anything outside the supported subset."""
    compile_query(query)


def compile_query(query: Query | None) -> Predicate:
    if not query:
        return lambda doc: True
    preds: list[Predicate] = []
    for key, cond in query.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, list) or not cond:
                raise StoreError(f"{key} needs a non-empty list")
            subs = [compile_query(q) for q in cond]
            if key == "$and":
                preds.append(lambda d, subs=subs: all(p(d) for p in subs))
            else:
                preds.append(lambda d, subs=subs: any(p(d) for p in subs))
        elif key.startswith("$"):
            raise StoreError(f"unsupported query operator {key}")
        else:
            preds.append(_field_predicate(key, cond))
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:  # the common listing shape; avoids a generator per document
        first, second = preds
        return lambda doc: first(doc) and second(doc)
    return lambda doc: all(p(doc) for p in preds)


def _field_predicate(path: str, cond: Any) -> Predicate:
    if isinstance(cond, Mapping) and cond and all(k.startswith("$") for k in cond):
        parts = [_op_predicate(op, arg) for op, arg in cond.items()]
        if len(parts) == 1:
            op_pred = parts[0]
        else:
            op_pred = lambda v: all(p(v) for p in parts)  # noqa: E731
        return lambda doc: op_pred(get_path(doc, path))
    if "." not in path and isinstance(cond, (str, int, float)) and not isinstance(cond, bool):
        # equality on a top-level scalar: the hot path of listings (also matches inside arrays)
        def eq_top(doc: Document) -> bool:
            value = doc.get(path, _MISSING)
            if value.__class__ is bool:  # True == 1 in Python, not in MongoDB
                return False
            if isinstance(value, list):
                return any(_eq(item, cond) for item in value)
            return value == cond
        return eq_top
    return lambda doc: _eq(get_path(doc, path), cond)


def _eq(value: Any, expected: Any) -> bool:
    if expected is None:  # as in MongoDB, null matches a null or a missing field
        return value is _MISSING or value is None
    if isinstance(value, list) and not isinstance(expected, list):
        return any(_eq(item, expected) for item in value)
    if isinstance(value, bool) != isinstance(expected, bool):  # True == 1 in Python, not in MongoDB
        return False
    return value is not _MISSING and value == expected


def _comparable(value: Any, arg: Any) -> bool:
    if value is _MISSING or value is None:
        return False
    numeric = (int, float)
    if isinstance(arg, numeric) and not isinstance(arg, bool):
        return isinstance(value, numeric) and not isinstance(value, bool)
    return type(value) is type(arg)


def _op_predicate(op: str, arg: Any) -> Callable[[Any], bool]:
    if op not in _FIELD_OPS:
        raise StoreError(f"unsupported query operator {op}")
    if op == "$eq":
        return lambda v: _eq(v, arg)
    if op == "$ne":
        return lambda v: not _eq(v, arg)
    if op in ("$in", "$nin", "$all"):
        if not isinstance(arg, (list, tuple, set)):
            raise StoreError(f"{op} needs a list")
        values = list(arg)
        if op == "$in":
            return lambda v: any(_eq(v, x) for x in values)
        if op == "$nin":
            return lambda v: not any(_eq(v, x) for x in values)
        return lambda v: isinstance(v, list) and all(x in v for x in values)
    if op == "$exists":
        return (lambda v: v is not _MISSING) if arg else (lambda v: v is _MISSING)
    if op == "$contains":
        if not isinstance(arg, str):
            raise StoreError("$contains needs a string")
        needle = arg.casefold()
        return lambda v: isinstance(v, str) and needle in v.casefold()
    if op == "$gt":
        return lambda v: _comparable(v, arg) and v > arg
    if op == "$gte":
        return lambda v: _comparable(v, arg) and v >= arg
    if op == "$lt":
        return lambda v: _comparable(v, arg) and v < arg
    return lambda v: _comparable(v, arg) and v <= arg


def matches(doc: Document, query: Query | None) -> bool:
    """Whether ``doc`` satisfies ``query`` (uncompiled; for one-off checks)."""
    return compile_query(query)(doc)


def sort_key(sort: Sort) -> Callable[[Document], tuple[Any, ...]]:
    """A key function for ``sorted``; handles missing values and mixed types, one direction.

    Mixed directions are handled by :func:`sort_docs` with stable multi-pass sorting.
    """
    def key(doc: Document) -> tuple[Any, ...]:
        out: list[Any] = []
        for path, _ in sort:
            value = get_path(doc, path)
            if value is _MISSING or value is None:
                out.append((0, 0))
            elif isinstance(value, bool):
                out.append((1, int(value)))
            elif isinstance(value, (int, float)):
                out.append((1, value))
            else:
                out.append((2, str(value)))
        return tuple(out)
    return key


def sort_docs(docs: list[Document], sort: Sort) -> list[Document]:
    """Sort by several keys with mixed directions (stable, last key first)."""
    for path, direction in reversed(sort):
        docs.sort(key=sort_key([(path, direction)]), reverse=direction < 0)
    return docs


def first_sorted(docs: list[Document], sort: Sort, count: int) -> list[Document]:
    """The first ``count`` documents in ``sort`` order, same result as ``sort_docs(docs, sort)[:count]``.

    A page of 50 out of thousands needs no full sort: a heap over one combined key picks it, when
    every component running against the first one's direction can be negated (numbers, booleans,
    missing values). The usual listing sort, a field then ``created`` descending, qualifies.
    """
    if count * 8 >= len(docs):
        return sort_docs(docs, sort)[:count]
    primary = sort[0][1]

    def key(doc: Document) -> tuple[Any, ...]:
        out = []
        for path, direction in sort:
            rank, value = _ranked(get_path(doc, path))
            if (direction < 0) != (primary < 0):
                if rank == 2:
                    raise _NotNegatable
                rank, value = -rank, -value
            out.append((rank, value))
        return tuple(out)

    pick = heapq.nsmallest if primary > 0 else heapq.nlargest
    try:
        return pick(count, docs, key=key)
    except _NotNegatable:
        return sort_docs(docs, sort)[:count]


class _NotNegatable(Exception):
    pass


def _ranked(value: Any) -> tuple[int, Any]:
    """Type bracket and comparable value, as :func:`sort_key` orders them."""
    if value is _MISSING or value is None:
        return 0, 0
    if isinstance(value, bool):
        return 1, int(value)
    if isinstance(value, (int, float)):
        return 1, value
    return 2, str(value)


def apply_update(doc: Document, update: Update) -> Document:
    """A new document with ``update`` applied; ``doc`` itself is not modified."""
    if not update:
        raise StoreError("empty update")
    unknown = set(update) - _UPDATE_OPS
    if unknown:
        raise StoreError(f"unsupported update operator(s): {', '.join(sorted(unknown))}")
    new = dict(doc)  # copy-on-write: dicts along each written path are copied, the rest shared
    for path, value in update.get("$set", {}).items():
        _set_path(new, path, copy.deepcopy(value))
    for path in update.get("$unset", {}):
        _unset_path(new, path)
    for path, delta in update.get("$inc", {}).items():
        current = get_path(new, path)
        base = 0 if current is _MISSING or current is None else current
        _set_path(new, path, base + delta)
    for path, value in update.get("$push", {}).items():
        current = get_path(new, path)
        items = [] if current is _MISSING else list(current)
        items.append(copy.deepcopy(value))
        _set_path(new, path, items)
    for path, value in update.get("$pull", {}).items():
        current = get_path(new, path)
        if isinstance(current, list):
            _set_path(new, path, [x for x in current if x != value])
    if new.get("id") != doc.get("id"):
        raise StoreError("an update cannot change a document's id")
    return new


def _set_path(doc: Document, path: str, value: Any) -> None:
    parts = path.split(".")
    current = doc
    for part in parts[:-1]:
        nxt = current.get(part)
        nxt = dict(nxt) if isinstance(nxt, dict) else {}
        current[part] = nxt
        current = nxt
    current[parts[-1]] = value


def _unset_path(doc: Document, path: str) -> None:
    parts = path.split(".")
    current: Any = doc
    for part in parts[:-1]:
        nxt = current.get(part)
        if not isinstance(nxt, dict):
            return
        nxt = dict(nxt)
        current[part] = nxt
        current = nxt
    current.pop(parts[-1], None)
