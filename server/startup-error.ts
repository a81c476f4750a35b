/** A problem that stops start-up with a message meant for the person running the command, not a stack trace. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}
