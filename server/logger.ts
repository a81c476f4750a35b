import { pino } from 'pino';

export type Logger = pino.Logger;

/** `destination`: where the lines go (standard output by default). */
export function createLogger(level: string, name = 'sinergi', destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name,
    level,
    redact: {
      // A device's X-Api-Key raises alerts as its Lapas: in a log line, anyone reading the logs could.
      paths: [
        'req.headers.authorization',
        'req.headers["x-api-key"]',
        'req.headers.cookie',
        'password',
        '*.password',
        'refreshToken',
        '*.refreshToken',
      ],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
