// A child that dies at once again (a full disk, a damaged append-only file, a bad deploy) is retried at a
// slowing pace; none of the failures stops the process that serves.
const RESTART_BACKOFF_MS = [250, 1000, 2000, 5000, 10_000];

/** How long to wait before restart attempt `attempt` (0 for the first) of a supervised child. */
export function restartDelayMs(attempt: number): number {
  return RESTART_BACKOFF_MS[Math.min(attempt, RESTART_BACKOFF_MS.length - 1)] ?? 10_000;
}
