/** True for the errors ioredis raises when Redis cannot be reached in time, as opposed to a bug or a bad command. */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === 'MaxRetriesPerRequestError') return true;
  return /Connection is closed|Stream isn't writeable|Command timed out|ECONNREFUSED|ECONNRESET/.test(
    error.message,
  );
}
