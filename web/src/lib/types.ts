// The owners' answers the desktop reads, as the gateway's OpenAPI document types them
// (gateway.d.ts is generated from it; `make lint` checks it is up to date).
import type { Schemas } from "../api";

export type Address = Schemas["OutboundAddress"];
export type AttachmentRef = Schemas["AttachmentRef"];
export type Email = Schemas["EmailView"];
export type Note = Schemas["NoteView"];
export type DispositionMark = Schemas["DispositionMark"];
export type CaseSummary = Schemas["CaseSummary"];
export type Draft = Schemas["DraftView"];
export type DispositionChoice = Schemas["DispositionChoice"];
export type Thread = Schemas["CaseThread"];

export type ComposeMode = "reply" | "reply_all" | "forward" | "follow_up" | "new";

/** An address as shown: a filed one may have no name (or a null one). */
export function showAddress(a: { name?: string | null; address: string } | null | undefined): string {
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
