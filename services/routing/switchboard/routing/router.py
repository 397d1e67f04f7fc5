"""The routing engine: every concern of ``handlers/`` put together in one object.

The message consumers (``handlers/consumers.py``) and the periodic jobs (``app.py``) call into
it; the rules are in ``domain.py`` and every MongoDB access goes through ``store.py``.
"""

from __future__ import annotations

from switchboard.routing.handlers.agents import AgentsProjection
from switchboard.routing.handlers.core import Catalog
from switchboard.routing.handlers.dispatch import Dispatch
from switchboard.routing.handlers.interactions import Interactions
from switchboard.routing.handlers.offers import Offers
from switchboard.routing.handlers.queues import Queues
from switchboard.routing.handlers.timers import Timers
from switchboard.routing.handlers.views import Views

__all__ = ["Catalog", "Router"]


class Router(Interactions, Dispatch, Offers, Timers, AgentsProjection, Queues, Views):
    """Route requests, dispatch, offers, timers, the agents' projection, queues and views."""
