import { z } from 'zod';
import { ErrorBody } from './errors.ts';

/** Every acknowledgement a client receives: one of these two shapes, never anything else. */
export type Ack<T> = { ok: true; data: T } | { ok: false; error: ErrorBody };

export const HttpErrorResponse = z.object({ error: ErrorBody });
export type HttpErrorResponse = z.infer<typeof HttpErrorResponse>;
