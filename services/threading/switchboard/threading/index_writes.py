"""What a change of cases writes to the case index: pure, from the entries before and after and
the index documents they touch as they are now (``postings`` shapes).

Every write is a statement of one ordered ``update`` command (``posting_store.Postings.write``):
the heads naming new parts first, then the parts, activity and agents' documents, each guarded
by its version (``v``) and written as an upsert, so a document another writer changed since it
was read makes the upsert collide on ``_id`` (a duplicate key) and the command stops there;
the entries come last. A stopped command therefore never replaces an entry whose postings are
not all written: the caller reads again and repeats the same change (adding or taking a number
is idempotent), and a crash part way leaves the old entry, so the next refresh does it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from switchboard.threading import postings as p
from switchboard.threading.postings import Document


@dataclass
class Changes:
    """The index documents a change of cases touches, and how."""

    parts: dict[str, dict[int, bool]] = field(default_factory=dict)
    """Part key -> case number -> present."""
    heads: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Part key -> (term, part name), for parts a case is added to."""
    activity: dict[int, dict[int, int]] = field(default_factory=dict)
    """Bucket -> case number -> last activity (0: no such case)."""
    agents: dict[str, dict[int, Document]] = field(default_factory=dict)
    """Agent -> case number -> the case's new entry (its mark and row)."""
    entries: list[Document] = field(default_factory=list)

    def keys(self) -> list[str]:
        """The documents to read before writing."""
        return [
            *self.parts,
            *(p.activity_key(b) for b in self.activity),
            *(p.agent_key(a) for a in self.agents),
        ]


def changes_of(pairs: Iterable[tuple[int, Document | None, Document | None]]) -> Changes:
    """The changes for (case number, entry before or None, entry after or None) of each case."""
    found = Changes()
    for number, old, new in pairs:
        before = {(t, str(old["service"])) for t in p.terms_of(old)} if old else set()
        after = {(t, str(new["service"])) for t in p.terms_of(new)} if new else set()
        bucket = p.bucket_of(number)
        for term, service in before - after:
            found.parts.setdefault(p.part_key(term, service, bucket), {})[number] = False
        for term, service in after - before:
            key = p.part_key(term, service, bucket)
            found.parts.setdefault(key, {})[number] = True
            found.heads[key] = (term, p.part_name(service, bucket))
        at = p.seconds(new["last_activity"]) if new else 0
        if old is None or new is None or p.seconds(old["last_activity"]) != at:
            found.activity.setdefault(bucket, {})[number] = at
        if new is not None:
            for agent_id in new["agents"]:
                found.agents.setdefault(agent_id, {})[number] = new
            found.entries.append(new)
    return found


def _guarded(key: str, current: Document | None, fields: Document) -> Document:
    version = int((current or {}).get("v", 0))
    return {
        "q": {"_id": key, "v": version},
        "u": {"$set": {**fields, "v": version + 1}},
        "upsert": True,
    }


def agent_rows_missing(changes: Changes, current: Mapping[str, Document | None]) -> set[int]:
    """Cases entering an agent's first My Cases rows whose row is not at hand (read them)."""
    missing: set[int] = set()
    for agent_id, cases in changes.agents.items():
        doc = current.get(p.agent_key(agent_id)) or {}
        marks = p.unpack_marks(doc.get("n")) | {n: _mark(e) for n, e in cases.items()}
        rows = doc.get("rows") or {}
        missing |= {
            n for n in p.my_order(marks)[: p.MY_TOP] if n not in cases and str(n) not in rows
        }
    return missing


def statements(
    changes: Changes, current: Mapping[str, Document | None], rows: Mapping[int, Document]
) -> list[Document]:
    """The update statements, in order (see the module's docstring); ``current`` holds the
    documents of ``changes.keys()`` as read, ``rows`` the rows ``agent_rows_missing`` named."""
    heads: list[Document] = []
    writes: list[Document] = []
    for key, numbers in changes.parts.items():
        doc = current.get(key)
        data = p.unpack((doc or {}).get("n"))
        changed = set(data)
        for number, present in numbers.items():
            (changed.add if present else changed.discard)(number)
        if doc is not None and changed == set(data):
            continue
        if doc is None and key in changes.heads:
            term, name = changes.heads[key]
            heads.append({"q": {"_id": term}, "u": {"$addToSet": {"parts": name}}, "upsert": True})
        writes.append(_guarded(key, doc, {"n": p.pack(changed)}))
    for bucket, ats in changes.activity.items():
        key = p.activity_key(bucket)
        doc = current.get(key)
        slots: bytes | None = (doc or {}).get("n")
        for number, at in ats.items():
            slots = p.with_activity(slots, number, at)
        writes.append(_guarded(key, doc, {"n": slots}))
        if any(ats.values()):
            low, high = min(a for a in ats.values() if a), max(ats.values())
            writes.append(
                {
                    "q": {"_id": p.ACTIVITY},
                    "u": {"$max": {f"hi.{bucket}": high}, "$min": {f"lo.{bucket}": low}},
                    "upsert": True,
                }
            )
    for agent_id, cases in changes.agents.items():
        key = p.agent_key(agent_id)
        doc = current.get(key) or {}
        marks = p.unpack_marks(doc.get("n"))
        before = {int(n): r for n, r in (doc.get("rows") or {}).items()}
        new_marks = marks | {n: _mark(e) for n, e in cases.items()}
        known = before | dict(rows) | {n: row_of(e) for n, e in cases.items()}
        top = p.my_order(new_marks)[: p.MY_TOP]
        if new_marks == marks and {n: known.get(n) for n in top} == {n: before.get(n) for n in top}:
            continue
        fresh = p.agent_document(agent_id, new_marks, known)
        writes.append(_guarded(key, current.get(key), {"n": fresh["n"], "rows": fresh["rows"]}))
    entries = [{"q": {"_id": e["_id"]}, "u": e, "upsert": True} for e in changes.entries]
    return heads + writes + entries


def row_of(entry: Document) -> Document:
    """What a result row shows of an entry (a search result, a My Cases line)."""
    row = dict(entry.get("row") or {})
    at: datetime = entry["last_activity"]
    row["last_activity"] = (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()
    row["new_mail_waiting"] = bool(entry.get("new_mail_waiting"))
    row["holder"] = entry.get("holder")
    return row


def _mark(entry: Document) -> tuple[int, bool]:
    return p.seconds(entry["last_activity"]), bool(entry["open"])
