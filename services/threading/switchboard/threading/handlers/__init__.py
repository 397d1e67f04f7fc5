"""Threading's handlers, one module per concern: load, decide (``domain``), store, publish.

* ``intake``: filing received mail under a case, automatic answers, delivery reports;
* ``assignments``: routing's assignments and the preamble of every agent command;
* ``outbound``: replies, forwards, follow-ups, new outbound cases;
* ``drafts``: an agent's drafts;
* ``case_commands``: dispositions and closing, notes, transfers, service changes, masking;
* ``reply_templates``: supervisors' reply templates;
* ``views``: a case and its thread as people read them.
"""

from switchboard.threading.handlers.case_commands import CaseCommands
from switchboard.threading.handlers.drafts import Drafts
from switchboard.threading.handlers.intake import MailIntake
from switchboard.threading.handlers.outbound import Outbound
from switchboard.threading.handlers.reply_templates import ReplyTemplates
from switchboard.threading.handlers.views import Views


class ThreadingHandlers(MailIntake, Outbound, Drafts, CaseCommands, ReplyTemplates, Views):
    """Every handler of threading, as the app wires them to queues and timers."""


__all__ = ["ThreadingHandlers"]
