// What the agent's desktop knows: who is logged in, their state, the offers on screen, the work
// they hold, new mail on it. Fed by the live stream; the HTTP API only for actions and reloads.
import { ApiError, get, post } from "./api";
import { LiveStream, type Frame } from "./live.svelte";

export interface Person {
  id: string;
  name: string;
  role: "agent" | "supervisor";
}

export interface AgentState {
  state: string;
  reason: string;
  since: string;
  not_ready_pending: boolean;
  pending: { state?: string; reason?: string } | null;
  sequence: number;
}

export interface Offer {
  offer_id: string;
  interaction_id: string;
  channel: string;
  service: string;
  expires_at: string;
  auto_accept: boolean;
  summary: Record<string, unknown>;
  occurred_at?: string;
}

export interface Work {
  interaction_id: string;
  channel: string;
  service: string;
  case_number: number | null;
  record_id: string | null;
  subject: string;
  customer: string;
  /** When this round of the work started (server time): an older `interaction.ended` of the
   * same interaction (a skipped record offered again) must not close it. */
  since: string;
}

export function workOf(interaction_id: string, extra: Partial<Work> = {}): Work {
  const caseMatch = /^case-(\d+)/.exec(interaction_id);
  const record = interaction_id.startsWith("record-") ? interaction_id.slice(7) : null;
  return {
    interaction_id,
    channel: record ? "preview" : "email",
    service: "",
    case_number: caseMatch ? Number(caseMatch[1]) : null,
    record_id: record,
    subject: "",
    customer: "",
    since: "",
    ...extra,
  };
}

type Listener = (frame: Frame) => void;

class Desk {
  me = $state<Person | null>(null);
  state = $state<AgentState | null>(null);
  reasons = $state<string[]>([]);
  offers = $state<Offer[]>([]);
  work = $state<Work[]>([]);
  newMail = $state<Record<number, boolean>>({});
  openCase = $state<number | null>(null);
  openRecord = $state<string | null>(null);
  /** Bumped when the views must reload (a replay that was not complete, a reconnect). */
  reloads = $state(0);
  notice = $state("");
  private listeners = new Set<Listener>();
  live = new LiveStream(
    (frame) => this.handle(frame),
    () => this.reloads++,
  );

  listen(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async start(person: Person): Promise<void> {
    this.me = person;
    this.live.start();
    if (person.role === "agent") {
      // the live stream's snapshot brings the state too: a slow owner must not hold the page
      await this.act(() => this.loadState());
    }
  }

  stop(): void {
    this.live.stop();
    this.me = null;
    this.state = null;
    this.offers = [];
    this.work = [];
    this.openCase = null;
    this.openRecord = null;
  }

  async loadState(): Promise<void> {
    const answer = await get("/me/state");
    this.state = (answer.agents[0] as AgentState | undefined) ?? null;
    if (answer.not_ready_reasons) this.reasons = answer.not_ready_reasons;
  }

  private handle(frame: Frame): void {
    const data = frame.data;
    switch (frame.event) {
      case "snapshot": {
        if (data["state"]) this.state = data["state"] as AgentState;
        const offers = (data["offers"] as Offer[] | undefined) ?? [];
        for (const offer of offers) this.addOffer(offer);
        const held = data["assignments"] as string[] | null;
        if (held) {
          const known = new Map(this.work.map((w) => [w.interaction_id, w]));
          this.work = held.map((id) => known.get(id) ?? workOf(id));
        }
        break;
      }
      case "agent.state_changed": {
        const next = data as unknown as AgentState & { changed_at: string };
        if (!this.state || next.sequence > this.state.sequence) {
          this.state = { ...next, since: next.changed_at };
        }
        break;
      }
      case "offer.made":
        this.addOffer(data as unknown as Offer);
        break;
      case "offer.cancelled":
      case "offer.timed_out":
      case "offer.rejected":
        this.dropOffer(String(data["offer_id"]));
        break;
      case "interaction.assigned": {
        const id = String(data["interaction_id"]);
        const offer = this.offers.find((o) => o.offer_id === data["offer_id"]);
        if (data["offer_id"]) this.dropOffer(String(data["offer_id"]));
        const summary = offer?.summary ?? {};
        const item = workOf(id, {
          since: String(offer?.occurred_at ?? data["occurred_at"] ?? ""),
          service: String(data["service"] ?? ""),
          channel: String(data["channel"] ?? "email"),
          subject: String(summary["subject"] ?? summary["campaign"] ?? ""),
          customer: String(summary["customer"] ?? ""),
        });
        this.work = [...this.work.filter((w) => w.interaction_id !== id), item];
        // accepted or auto-accepted work opens directly
        if (item.case_number !== null) this.openCase = item.case_number;
        if (item.record_id !== null) this.openRecord = item.record_id;
        break;
      }
      case "interaction.ended":
      case "interaction.transferred": {
        const id = String(data["interaction_id"]);
        if (frame.event === "interaction.transferred" && data["to_agent_id"] === this.me?.id) break;
        const held = this.work.find((w) => w.interaction_id === id);
        const ended = String(data["occurred_at"] ?? "");
        if (held?.since && ended && Date.parse(ended) < Date.parse(held.since)) break; // an earlier round
        this.work = this.work.filter((w) => w.interaction_id !== id);
        if (this.openRecord && id === `record-${this.openRecord}`) this.openRecord = null;
        break;
      }
      case "case.email_attached": {
        const n = Number(data["case_number"]);
        if (data["direction"] === "inbound" && this.openCase !== n) {
          this.newMail = { ...this.newMail, [n]: true };
        }
        break;
      }
    }
    for (const listener of this.listeners) listener(frame);
  }

  private addOffer(offer: Offer): void {
    if (this.offers.some((o) => o.offer_id === offer.offer_id)) return;
    if (offer.auto_accept) return; // assigned right away: interaction.assigned opens it
    this.offers = [...this.offers, offer];
    flashTitle();
  }

  /** Accepted work opens directly and is listed under My work. */
  opened(offer: Offer): void {
    const summary = offer.summary;
    const item = workOf(offer.interaction_id, {
      since: offer.occurred_at ?? "",
      service: offer.service,
      channel: offer.channel,
      subject: String(summary["subject"] ?? summary["campaign"] ?? ""),
      customer: String(summary["customer"] ?? ""),
    });
    this.work = [...this.work.filter((w) => w.interaction_id !== item.interaction_id), item];
    if (item.case_number !== null) this.openCase = item.case_number;
    if (item.record_id !== null) this.openRecord = item.record_id;
  }

  dropOffer(offerId: string): void {
    this.offers = this.offers.filter((o) => o.offer_id !== offerId);
  }

  async act(action: () => Promise<unknown>): Promise<boolean> {
    try {
      await action();
      this.notice = "";
      return true;
    } catch (error) {
      this.notice = error instanceof ApiError ? error.message : String(error);
      return false;
    }
  }

  async ready(): Promise<void> {
    if (!this.state || this.state.state === "logged_out") {
      await this.act(() => post("/me/log-in", {}, { initial_state: "ready" }));
      return;
    }
    await this.act(() => post("/me/ready"));
  }

  async notReady(reason: string): Promise<void> {
    if (!this.state || this.state.state === "logged_out") {
      await this.act(() => post("/me/log-in", {}, { initial_state: "not_ready", reason }));
      return;
    }
    await this.act(() => post("/me/not-ready", {}, { reason }));
  }

  seen(caseNumber: number): void {
    if (this.newMail[caseNumber]) {
      const next = { ...this.newMail };
      delete next[caseNumber];
      this.newMail = next;
    }
  }
}

let flashing: ReturnType<typeof setInterval> | null = null;
/** The title blinks while an offer waits, so a hidden tab still shows it. */
function flashTitle(): void {
  if (flashing) return;
  const title = document.title;
  let on = false;
  flashing = setInterval(() => {
    if (desk.offers.length === 0) {
      if (flashing) clearInterval(flashing);
      flashing = null;
      document.title = title;
      return;
    }
    on = !on;
    document.title = on ? `● ${desk.offers.length} — ${title}` : title;
  }, 800);
}

export const desk = new Desk();
