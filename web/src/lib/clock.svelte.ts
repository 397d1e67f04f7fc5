// One ticking clock for countdowns and time-in-state (one timer for the whole page).
export const clock = $state({ now: Date.now() });
setInterval(() => (clock.now = Date.now()), 250);

export function secondsSince(iso: string | null | undefined): number {
  return iso ? (clock.now - Date.parse(iso)) / 1000 : 0;
}

export function secondsUntil(iso: string | null | undefined): number {
  return iso ? Math.max(0, (Date.parse(iso) - clock.now) / 1000) : 0;
}
