/** True for the errors ioredis raises when Redis cannot be reached in time, as opposed to a bug or a bad command. */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === 'MaxRetriesPerRequestError' || isCommandTimeout(error)) return true;
  return /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET/.test(error.message);
}

/** True for a command that got no reply in time: Redis may or may not have run it. */
export function isCommandTimeout(error: unknown): boolean {
  return error instanceof Error && error.message.includes('Command timed out');
}
