"""The dialer's MongoDB collections (whole-document writes guarded by a version field, no
positional updates, no TTL index, ``$group`` with ``$sum`` only: what every supported server
runs the same way).

* ``campaigns``: one document per campaign, its spec.
* ``records``: every calling record with its attempts and history, the one authority on a
  record: every change is one ``replace_one`` filtered on ``_id`` and the version read
  (``next_at`` of a pending record is its timer).
* ``live``: the working set, a copy of each record that is ``ready``, ``offered`` or ``held``
  (routing and agents query these few, never the big ``records``; ``review_due`` of a held one
  is its timer). It is derived from ``records`` after each write, keyed by record id and
  guarded by version so an older copy never replaces a newer one; a copy found older than its
  record (a crash between the two writes, a re-import) is refreshed or dropped when met.
* ``backlog_slots``: ``<campaign>|<n>`` for n below the campaign's ``preview_backlog``, one per
  record in routing: a pick inserts a free slot before it routes a record (a unique insert, so
  replicas together never exceed the backlog); released when the record leaves routing.
* ``hopper``: records found ready now (due, in their window, attempts left, not DNC), one
  entry per record, refilled in batches by a background task; a pick takes entries from here
  and re-checks the record before routing it.
* ``dnc``: dynamic do-not-call entries (global or per campaign); the campaign spec's own list
  is consulted too.
* ``skips``: one document per skip (natural key record/skip number) for reports.
* ``imports`` and ``import_errors``: progress and every bad row of each import.
* ``journal``: the record events the dialer published.
"""

from switchboard.dialer.store.base import GLOBAL, Conflict, Document
from switchboard.dialer.store.campaigns import CampaignStore
from switchboard.dialer.store.hopper import HopperStore
from switchboard.dialer.store.imports import ImportStore


class DialerStore(HopperStore, CampaignStore, ImportStore):
    """The dialer's one store adapter, one part per concern."""


__all__ = ["GLOBAL", "Conflict", "DialerStore", "Document"]
