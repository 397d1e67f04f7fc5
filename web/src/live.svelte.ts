// The live stream (`/me/live`): authenticated by the session cookie, never a token in the URL.
// On a drop it shows offline, reconnects with the last frame number it handled (`since`), so no
// offer is lost; a `replayed` frame with `complete: false` asks the views to reload.

export interface Frame {
  event: string;
  seq?: number;
  data: Record<string, unknown>;
}

export class LiveStream {
  online = $state(false);
  private socket: WebSocket | null = null;
  private lastSeq: number | null = null;
  private retry = 0;
  private stopped = true;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly onFrame: (frame: Frame) => void,
    private readonly onReload: () => void,
  ) {}

  start(): void {
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.close();
    this.socket = null;
    this.online = false;
  }

  private open(): void {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const since = this.lastSeq === null ? "" : `?since=${this.lastSeq}`;
    const socket = new WebSocket(`${scheme}://${location.host}/me/live${since}`);
    this.socket = socket;
    socket.onmessage = (message) => {
      let frame: Frame;
      try {
        frame = JSON.parse(String(message.data)) as Frame;
      } catch {
        return;
      }
      if (frame.event === "hello") {
        this.online = true;
        this.retry = 0;
        if (this.lastSeq === null && typeof frame.data["last_seq"] === "number") {
          this.lastSeq = frame.data["last_seq"];
        }
      }
      if (typeof frame.seq === "number") {
        if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // already handled
        this.lastSeq = frame.seq;
      }
      if (frame.event === "replayed" && frame.data["complete"] === false) this.onReload();
      this.onFrame(frame);
    };
    socket.onclose = (closed) => {
      if (this.socket !== socket) return;
      this.online = false;
      this.socket = null;
      if (this.stopped || closed.code === 4401) return;
      const wait = Math.min(5000, 250 * 2 ** this.retry++);
      this.timer = setTimeout(() => this.open(), wait);
    };
  }
}
