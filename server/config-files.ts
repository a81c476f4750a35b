import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { fieldIssues } from '../shared/errors.ts';
import { EscalationConfig } from '../shared/escalation.ts';
import { Topology } from '../shared/topology.ts';
import { StartupError } from './startup-error.ts';

/** Reads and validates a JSON config file; any problem stops start-up with the path of each one. */
async function loadJsonFile<S extends z.ZodType>(
  file: string,
  schema: S,
  what: string,
): Promise<z.output<S>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new StartupError(`Cannot read ${what} file ${file}: ${(error as Error).message}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const lines = fieldIssues(parsed.error).map((i) => `  - ${i.path}: ${i.message}`);
    throw new StartupError(`Invalid ${what} file ${file}:\n${lines.join('\n')}`);
  }
  return parsed.data;
}

export const loadTopologyFile = (file: string) => loadJsonFile(file, Topology, 'topology');
export const loadEscalationFile = (file: string) => loadJsonFile(file, EscalationConfig, 'escalation');
