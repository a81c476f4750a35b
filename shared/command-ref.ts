import { z } from 'zod';

/**
 * A fresh id a console gives each command that changes an incident, and gives again when it retries that
 * command after losing its answer (a timeout, a dropped connection): the change is made once, and the retry
 * is answered with `duplicate: true` and the incident as it is now. Without one, a retry of a note whose
 * answer was lost after it was stored adds it a second time.
 */
export const CommandRef = z.uuid();
