import { readFile } from 'node:fs/promises';
import { fieldIssues } from '../shared/errors.ts';
import { Topology } from '../shared/topology.ts';
import { StartupError } from './startup-error.ts';

/** Reads and validates the topology file; any problem stops start-up with the path of each one. */
export async function loadTopologyFile(file: string): Promise<Topology> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new StartupError(`Cannot read topology file ${file}: ${(error as Error).message}`);
  }
  const parsed = Topology.safeParse(raw);
  if (!parsed.success) {
    const lines = fieldIssues(parsed.error).map((i) => `  - ${i.path}: ${i.message}`);
    throw new StartupError(`Invalid topology file ${file}:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
