// The gateway's API, typed from its OpenAPI document (gateway.d.ts is generated: `make lint` checks it).
// Same origin, session in an HttpOnly cookie: no token ever passes through page scripts.
import type { components, paths } from "./gateway";

export type Schemas = components["schemas"];
type Method = "get" | "post" | "put" | "delete";
/** The paths that answer a method (absent methods are `?: never` in the generated types). */
type PathWith<M extends Method> = {
  [K in keyof paths]: paths[K] extends { [X in M]: object } ? K : never;
}[keyof paths] &
  string;
type Op<P extends keyof paths, M extends Method> = paths[P][M];
type BodyOf<O> = O extends { requestBody: { content: { "application/json": infer B } } }
  ? B
  : O extends { requestBody?: { content: { "application/json": infer B } } }
    ? B
    : undefined;
type QueryOf<O> = O extends { parameters: { query?: infer Q } } ? Q : undefined;
type AnswerOf<O> = O extends { responses: { 200: { content: { "application/json": infer A } } } }
  ? A
  : O extends { responses: { 201: { content: { "application/json": infer A } } } }
    ? A
    : unknown;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
  }
}

/** Called when the session ended (401): the app shows the login form again. */
let onLoggedOut: () => void = () => {};
export function whenLoggedOut(handler: () => void): void {
  onLoggedOut = handler;
}

async function request(
  method: string,
  url: string,
  body?: BodyInit | object,
  contentType = "application/json",
): Promise<unknown> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (method !== "GET") headers["x-switchboard-csrf"] = "1";
  let payload: BodyInit | undefined;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    payload = body;
    headers["content-type"] = contentType;
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["content-type"] = "application/json";
  }
  const answer = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  if (answer.status === 204) return null;
  const text = await answer.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!answer.ok) {
    const problem = (data ?? {}) as { detail?: unknown; message?: string; code?: string; field?: string };
    const words =
      problem.message ?? (typeof problem.detail === "string" ? problem.detail : answer.statusText);
    if (answer.status === 401 && !url.startsWith("/auth/login")) onLoggedOut();
    throw new ApiError(answer.status, problem.code ?? "error", words, problem.field ?? null);
  }
  return data;
}

function withQuery(path: string, query?: object): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

function fill(path: string, params: Record<string, string | number>): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) =>
    encodeURIComponent(String(params[name] ?? "")),
  );
}

export function get<P extends PathWith<"get">>(
  path: P,
  params: Record<string, string | number> = {},
  query?: QueryOf<Op<P, "get">>,
): Promise<AnswerOf<Op<P, "get">>> {
  return request("GET", withQuery(fill(path, params), query ?? undefined)) as Promise<
    AnswerOf<Op<P, "get">>
  >;
}

export function post<P extends PathWith<"post">>(
  path: P,
  params: Record<string, string | number> = {},
  body?: BodyOf<Op<P, "post">>,
): Promise<AnswerOf<Op<P, "post">>> {
  return request("POST", fill(path, params), (body ?? {}) as object) as Promise<
    AnswerOf<Op<P, "post">>
  >;
}

export function put<P extends PathWith<"put">>(
  path: P,
  params: Record<string, string | number>,
  body: BodyOf<Op<P, "put">>,
): Promise<AnswerOf<Op<P, "put">>> {
  return request("PUT", fill(path, params), body as object) as Promise<AnswerOf<Op<P, "put">>>;
}

export function del<P extends PathWith<"delete">>(
  path: P,
  params: Record<string, string | number>,
): Promise<unknown> {
  return request("DELETE", fill(path, params));
}

/** Upload a file for a reply; answers the attachment reference to put in the reply. */
export async function upload(file: File): Promise<Schemas["AttachmentRef"]> {
  const url = withQuery("/attachments", { filename: file.name });
  return (await request("POST", url, file, file.type || "application/octet-stream")) as Schemas["AttachmentRef"];
}
