"""Every agent and supervisor action of the seeds, as a row: endpoint -> command -> owner."""

from __future__ import annotations

from switchboard.contracts import agents, campaigns, casebook, cases, routing
from switchboard.gateway import answers
from switchboard.gateway.routes import ME, MY_NAME, ROLE, Action, Const, PathParam, Source

AGENT_STATE = "agent-state"
ROUTING = "routing"
THREADING = "threading"
DIALER = "dialer"

CASE = PathParam("case_number", int)
RECORD = PathParam("record_id")
OFFER = PathParam("offer_id")
AGENT = PathParam("agent_id")
CAMPAIGN = PathParam("campaign_id")
DRAFT = PathParam("draft_id")
TEMPLATE = PathParam("template_id")
SERVICE = PathParam("name")
IMPORT = PathParam("import_id")

_me_agent: dict[str, Source] = {"agent_id": ME, "actor_id": ME, "actor_role": ROLE}
_case: dict[str, Source] = {"case_number": CASE, "agent_id": ME, "acting_role": ROLE}
_signed_case: dict[str, Source] = {**_case, "agent_name": MY_NAME}
_record: dict[str, Source] = {"record_id": RECORD, "agent_id": ME, "acting_role": ROLE}

# fmt: off
ACTIONS: tuple[Action, ...] = (
    # -- the agent's own state ----------------------------------------------------------------
    Action("POST", "/me/log-in", agents.LogIn, AGENT_STATE, "Start the working session",
           _me_agent, tag="state"),
    Action("POST", "/me/log-out", agents.LogOut, AGENT_STATE, "End the working session",
           _me_agent, tag="state"),
    Action("POST", "/me/ready", agents.SetReady, AGENT_STATE, "Make myself Ready",
           _me_agent, tag="state"),
    Action("POST", "/me/not-ready", agents.SetNotReady, AGENT_STATE,
           "Make myself Not Ready with a reason", _me_agent, tag="state"),
    Action("GET", "/me/state", agents.AgentStatesRequested, AGENT_STATE, "My current state",
           {"actor_id": ME, "actor_role": ROLE, "agent_ids": Const([]), "team": Const(None)},
           tag="state", answer=answers.AgentStates),
    # -- offers and queues ----------------------------------------------------------------------
    Action("POST", "/offers/{offer_id}/accept", routing.OfferAnswer, ROUTING, "Accept an offer",
           {"offer_id": OFFER, "agent_id": ME, "accept": Const(True), "reason": Const("")},
           tag="work"),
    Action("POST", "/offers/{offer_id}/reject", routing.OfferAnswer, ROUTING, "Reject an offer",
           {"offer_id": OFFER, "agent_id": ME, "accept": Const(False)}, tag="work"),
    Action("GET", "/queues/team", routing.TeamQueueListRequested, ROUTING,
           "The team queue: emails waiting in my services", {"agent_id": ME}, tag="work",
           answer=answers.WaitingList),
    Action("POST", "/queues/team/pull", routing.TeamQueuePull, ROUTING,
           "Take an email from the team queue", {"agent_id": ME}, tag="work"),
    Action("GET", "/queues/personal", routing.PersonalQueueListRequested, ROUTING,
           "My personal queue", {"agent_id": ME}, tag="work", answer=answers.WaitingList),
    Action("POST", "/queues/personal/pull", routing.PersonalQueuePull, ROUTING,
           "Take an email from my personal queue", {"agent_id": ME}, tag="work"),
    Action("GET", "/services", routing.ServicesListRequested, ROUTING,
           "The services (queues), e.g. to transfer to", {}, tag="work",
           answer=answers.ServiceList),
    # -- my cases, search, contact history (before /cases/{case_number}: literal paths first) ---
    Action("GET", "/me/cases", casebook.ListMyCases, THREADING,
           "My Cases: the cases I hold or worked, open first, by last activity",
           {"agent_id": ME, "acting_role": ROLE}, tag="cases", answer=answers.CasePage),
    Action("GET", "/cases/search", casebook.SearchCases, THREADING,
           "Search the cases I may see (words, contact, status, service, dates, disposition)",
           {"agent_id": ME, "acting_role": ROLE}, tag="cases", answer=answers.CasePage),
    Action("GET", "/contacts/history", casebook.GetContactHistory, THREADING,
           "Every case of a contact address, newest first",
           {"agent_id": ME, "acting_role": ROLE, "case_number": Const(None)}, tag="cases",
           answer=answers.CasePage),
    Action("GET", "/cases/{case_number}/history", casebook.GetContactHistory, THREADING,
           "Every case of this case's contact and participants, newest first",
           {**_case, "address": Const(None)}, tag="cases", answer=answers.CasePage),
    Action("POST", "/cases/by-hand", casebook.OpenCaseByHand, THREADING,
           "Open a case without mail (a phone call, a letter), with its first note",
           {"agent_id": ME, "acting_role": ROLE}, tag="cases"),
    Action("POST", "/cases/{case_number}/status", casebook.SetCaseStatus, THREADING,
           "Set the case's work status (a pending one pauses the service-level clock)",
           _case, tag="cases"),
    # -- cases -------------------------------------------------------------------------------------
    Action("GET", "/cases/{case_number}", cases.GetCaseThread, THREADING,
           "The case and its thread view", {"case_number": CASE, "agent_id": ME,
                                             "acting_role": ROLE}, tag="cases",
           answer=answers.CaseThread),
    Action("GET", "/cases", cases.LookUpCase, THREADING,
           "Find a case by number or thread identifier",
           {"agent_id": ME, "acting_role": ROLE}, tag="cases"),
    Action("POST", "/cases/{case_number}/reply", cases.ReplyToCase, THREADING, "Reply",
           _signed_case, tag="cases"),
    Action("POST", "/cases/{case_number}/forward", cases.ForwardEmail, THREADING,
           "Forward an email", _case, tag="cases"),
    Action("POST", "/cases/{case_number}/follow-up", cases.SendFollowUp, THREADING,
           "Send a follow-up outbound email", _signed_case, tag="cases"),
    Action("POST", "/cases", cases.SendNewOutbound, THREADING,
           "Send a new outbound email (opens a case)",
           {"agent_id": ME, "acting_role": ROLE, "agent_name": MY_NAME}, tag="cases"),
    Action("GET", "/templates", cases.ListReplyTemplates, THREADING,
           "The reply templates I may use (optionally of one service)",
           {"agent_id": ME}, tag="cases", answer=answers.TemplateList),
    Action("POST", "/cases/{case_number}/drafts", cases.SaveDraft, THREADING, "Save a draft",
           _case, tag="cases", answer=answers.DraftSaved),
    Action("PUT", "/cases/{case_number}/drafts/{draft_id}", cases.UpdateDraft, THREADING,
           "Change a draft", {**_case, "draft_id": DRAFT}, tag="cases"),
    Action("DELETE", "/cases/{case_number}/drafts/{draft_id}", cases.DiscardDraft, THREADING,
           "Discard a draft", {**_case, "draft_id": DRAFT}, tag="cases"),
    Action("POST", "/cases/{case_number}/close", cases.CloseCase, THREADING,
           "Close without replying", _case, tag="cases"),
    Action("POST", "/cases/{case_number}/transfer", cases.TransferCase, THREADING,
           "Transfer to another service or agent", _case, tag="cases"),
    Action("POST", "/cases/{case_number}/service", cases.ChangeCaseService, THREADING,
           "Change the assigned service", _case, tag="cases"),
    Action("POST", "/cases/{case_number}/mask", cases.MaskCaseData, THREADING,
           "Mask sensitive data", _case, tag="cases"),
    Action("POST", "/cases/{case_number}/disposition", cases.SetDisposition, THREADING,
           "Set a disposition (a final one closes the case)", _case, tag="cases"),
    Action("POST", "/cases/{case_number}/notes", cases.AddCaseNote, THREADING, "Add a note",
           _case, tag="cases"),
    # -- preview records -------------------------------------------------------------------------
    Action("GET", "/records/{record_id}", campaigns.GetRecord, DIALER,
           "The preview record: customer, numbers, history", _record, tag="records",
           answer=answers.RecordPreview),
    Action("POST", "/records/{record_id}/accept", campaigns.AcceptRecord, DIALER,
           "Accept the preview", _record, tag="records"),
    Action("POST", "/records/{record_id}/reject", campaigns.RejectRecord, DIALER,
           "Reject the preview", _record, tag="records"),
    Action("POST", "/records/{record_id}/complete", campaigns.CompleteRecord, DIALER,
           "Complete the record (default disposition: Bad Record)", _record, tag="records"),
    Action("POST", "/records/{record_id}/skip", campaigns.SkipRecord, DIALER,
           "Skip: the record is distributed again later", _record, tag="records"),
    Action("POST", "/records/{record_id}/call", campaigns.CallNumber, DIALER,
           "Call a number of the record (default: the recommended one)", _record,
           tag="records"),
    Action("POST", "/records/{record_id}/disposition", campaigns.SetCallDisposition, DIALER,
           "Set the call's disposition", _record, tag="records"),
    Action("POST", "/records/{record_id}/reschedule", campaigns.RescheduleRecord, DIALER,
           "Reschedule the call attempt", _record, tag="records"),
    # -- supervisors ----------------------------------------------------------------------------
    Action("GET", "/supervisor/agents", agents.AgentStatesRequested, AGENT_STATE,
           "Agents and their states", {"actor_id": ME, "actor_role": ROLE},
           tag="supervisor", supervisor_only=True, answer=answers.AgentStates),
    Action("POST", "/supervisor/agents/{agent_id}/state", agents.ForceAgentState, AGENT_STATE,
           "Force an agent's state", {"agent_id": AGENT, "actor_id": ME, "actor_role": ROLE},
           tag="supervisor", supervisor_only=True),
    Action("GET", "/supervisor/state-report", agents.StateReportRequested, AGENT_STATE,
           "Time in each state per agent and interval", {"actor_id": ME, "actor_role": ROLE},
           tag="supervisor", supervisor_only=True),
    Action("GET", "/supervisor/queues", routing.QueueViewRequested, ROUTING,
           "Queues with depth and oldest wait", {}, tag="supervisor", supervisor_only=True,
           answer=answers.QueueView),
    Action("GET", "/supervisor/assignments", routing.LiveAssignmentsRequested, ROUTING,
           "What each agent holds now (interaction ids per agent; the wallboard's 'holds')",
           {}, tag="supervisor", supervisor_only=True, answer=answers.Assignments),
    Action("GET", "/supervisor/campaigns", campaigns.ListCampaigns, DIALER,
           "Every campaign with its live figures", {}, tag="supervisor",
           supervisor_only=True, answer=answers.CampaignList),
    Action("GET", "/supervisor/campaigns/{campaign_id}", campaigns.GetCampaignReport, DIALER,
           "Campaign progress", {"campaign_id": CAMPAIGN}, tag="supervisor",
           supervisor_only=True, answer=answers.CampaignProgress),
    # -- supervisor administration (not in the seeds, but the desktop's supervisor needs them) --
    Action("PUT", "/supervisor/agents/{agent_id}/profile", agents.RegisterAgent, AGENT_STATE,
           "Register an agent or replace their profile (teams, skills, capacity)",
           {"agent_id": AGENT, "actor_id": ME, "actor_role": ROLE}, tag="admin",
           supervisor_only=True),
    Action("GET", "/supervisor/services", routing.ServicesListRequested, ROUTING,
           "The routing services", {}, tag="admin", supervisor_only=True,
           answer=answers.ServiceList),
    Action("POST", "/supervisor/services", routing.ServiceConfigured, ROUTING,
           "Create or replace a routing service", {"actor": ME}, tag="admin",
           supervisor_only=True),
    Action("DELETE", "/supervisor/services/{name}", routing.ServiceRemoved, ROUTING,
           "Remove a routing service", {"name": SERVICE, "actor": ME}, tag="admin",
           supervisor_only=True),
    Action("PUT", "/supervisor/templates/{template_id}", cases.SaveReplyTemplate, THREADING,
           "Create or replace a reply template", {"template_id": TEMPLATE, "agent_id": ME,
                                                 "acting_role": ROLE}, tag="admin",
           supervisor_only=True),
    Action("DELETE", "/supervisor/templates/{template_id}", cases.DeleteReplyTemplate,
           THREADING, "Remove a reply template", {"template_id": TEMPLATE, "agent_id": ME,
                                                  "acting_role": ROLE}, tag="admin",
           supervisor_only=True),
    Action("POST", "/supervisor/campaigns/{campaign_id}", campaigns.CreateCampaign, DIALER,
           "Create a campaign", {"campaign_id": CAMPAIGN}, tag="admin", supervisor_only=True),
    Action("PUT", "/supervisor/campaigns/{campaign_id}", campaigns.UpdateCampaign, DIALER,
           "Change a campaign (deactivate with active=false)", {"campaign_id": CAMPAIGN},
           tag="admin", supervisor_only=True),
    Action("POST", "/supervisor/campaigns/{campaign_id}/records", campaigns.ImportRecords,
           DIALER, "Import calling records (small inline CSV / JSON lines)",
           {"campaign_id": CAMPAIGN}, tag="admin", supervisor_only=True),
    Action("GET", "/supervisor/imports/{import_id}", campaigns.GetImport, DIALER,
           "An import's progress and bad rows", {"import_id": IMPORT}, tag="admin",
           supervisor_only=True),
    Action("POST", "/supervisor/do-not-call", campaigns.ChangeDoNotCall, DIALER,
           "Add or remove do-not-call numbers (global or one campaign's)", {}, tag="admin",
           supervisor_only=True),
)
# fmt: on
