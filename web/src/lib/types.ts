// Shapes of the owners' answers the desktop reads. The gateway passes each owner's result through
// unchanged and its OpenAPI document types them as free objects, so the app names only the
// fields it shows (request bodies are typed from the generated api.d.ts).
import type { Schemas } from "../api";

export type Address = Schemas["OutboundAddress"];
export type AttachmentRef = Schemas["AttachmentRef"];

export interface Email {
  email_id: string;
  direction: "inbound" | "outbound";
  kind: string;
  from: Address;
  when: string;
  to: Address[];
  cc: Address[];
  bcc: Address[];
  subject: string;
  text: string;
  html_ref: string | null;
  html: string | null;
  html_withheld: boolean;
  attachments: AttachmentRef[];
  masked: boolean;
  delivery: { status: string; detail?: string; at?: string } | null;
  agent_id: string | null;
}

export interface Note {
  text: string;
  agent_id?: string;
  at?: string;
  created_at?: string;
}

export interface DispositionMark {
  disposition: string;
  agent_id?: string;
  at?: string;
  final?: boolean;
}

export interface CaseSummary {
  case_number: number;
  status: string;
  service: string;
  subject: string;
  contact: Address;
  thread_id: string;
  agents: string[];
  assigned_agent_id: string | null;
  dispositions: DispositionMark[];
  final_disposition: string | null;
  notes: Note[];
  linked_cases: number[];
  created_at: string;
  updated_at: string;
  closed_at: string | null;
}

export interface Draft {
  draft_id: string;
  kind: "reply" | "forward" | "follow_up";
  reply_to_email_id?: string | null;
  content?: Partial<Schemas["Composition"]>;
  version?: number;
}

export interface DispositionChoice {
  name: string;
  final: boolean;
}

export interface Thread {
  case: CaseSummary;
  emails: Email[];
  drafts: Draft[];
  service_dispositions: DispositionChoice[];
}

export type ComposeMode = "reply" | "reply_all" | "forward" | "follow_up" | "new";

export function showAddress(a: Address | null | undefined): string {
  if (!a) return "";
  return a.name ? `${a.name} <${a.address}>` : a.address;
}

/** "Ann <ann@x.org>, bob@y.org" -> addresses (a comma inside quotes stays in the name). */
export function parseAddresses(text: string): Address[] {
  const parts = text.match(/("[^"]*"|[^,])+/g) ?? [];
  const found: Address[] = [];
  for (const raw of parts) {
    const part = raw.trim();
    if (!part) continue;
    const angle = /^(.*)<([^>]+)>$/.exec(part);
    if (angle) {
      found.push({ name: (angle[1] ?? "").trim().replace(/^"|"$/g, ""), address: (angle[2] ?? "").trim() });
    } else {
      found.push({ name: "", address: part });
    }
  }
  return found;
}
