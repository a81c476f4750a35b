import { pino } from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string, name = 'sinergi'): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: ['req.headers.authorization', 'password', '*.password', 'refreshToken', '*.refreshToken'],
      censor: '[redacted]',
    },
  });
}
