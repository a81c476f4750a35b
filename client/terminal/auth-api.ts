import { z } from 'zod';
import { LoginResponse, TokenPair } from '../../shared/auth.ts';
import { HttpErrorResponse } from '../../shared/envelope.ts';
import type { ErrorBody } from '../../shared/errors.ts';

const HTTP_TIMEOUT_MS = 10_000;

/** The server answered with its error body (or something that was not one). */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(readonly body: ErrorBody) {
    super(`${body.code}: ${body.message}`);
  }
}

/** What went wrong on the way: fetch says only "fetch failed" and keeps the reason (ECONNREFUSED…) in `cause`. */
export function failureText(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  const { message, cause } = error as Error;
  return cause instanceof Error ? cause.message : message;
}

async function post<S extends z.ZodType>(baseUrl: string, path: string, body: unknown, schema: S) {
  const res = await fetch(new URL(path, baseUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  const json: unknown = res.status === 204 ? undefined : await res.json().catch(() => undefined);
  if (res.ok) {
    const parsed = schema.safeParse(json);
    if (parsed.success) return parsed.data;
  }
  const failure = HttpErrorResponse.safeParse(json);
  throw new ApiError(
    failure.success
      ? failure.data.error
      : { code: 'internal', message: `unexpected answer to POST ${path} (HTTP ${res.status})` },
  );
}

export const login = (baseUrl: string, username: string, password: string) =>
  post(baseUrl, '/api/auth/login', { username, password }, LoginResponse);

/** Rotates the refresh token: the old one must never be sent again. */
export const refresh = (baseUrl: string, refreshToken: string) =>
  post(baseUrl, '/api/auth/refresh', { refreshToken }, TokenPair);

export async function logout(baseUrl: string, refreshToken: string): Promise<void> {
  await post(baseUrl, '/api/auth/logout', { refreshToken }, z.undefined());
}
