"""The dialer's handlers, one module per concern: load, decide (``domain``), store, publish.

* ``campaigns``: operators' commands (campaigns, DNC, imports, reports) and the journal;
* ``routing_side``: offers, assignments, agents logging out;
* ``record_commands``: what an agent does with the record they hold;
* ``calls``: telephony's progress reports;
* ``hopper``: picking due records into routing, refreshing them, review timers.
"""

from switchboard.dialer.handlers.base import interaction_id, record_id_of
from switchboard.dialer.handlers.calls import CallProgress
from switchboard.dialer.handlers.campaigns import CampaignHandlers
from switchboard.dialer.handlers.hopper import Hopper


class DialerHandlers(Hopper, CampaignHandlers, CallProgress):
    """Every handler of the dialer, as the app wires them to queues and timers."""


__all__ = ["DialerHandlers", "interaction_id", "record_id_of"]
