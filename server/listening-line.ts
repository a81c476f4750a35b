import type { Config } from './config.ts';

/** The start-up line operators (and scripts) wait for. */
export function listeningLine(config: Config, port: number): string {
  const shownHost =
    config.http.host === '0.0.0.0' || config.http.host === '127.0.0.1' ? 'localhost' : config.http.host;
  return `Sinergi is listening on http://${shownHost}:${port}`;
}
