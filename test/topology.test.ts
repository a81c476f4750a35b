import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadTopologyFile } from '../server/config-files.ts';
import { StartupError } from '../server/startup-error.ts';
import { fieldIssues } from '../shared/errors.ts';
import { indexTopology, Topology, type TopologyIndex } from '../shared/topology.ts';

const TOPOLOGY_FILE = 'config/topology.json';

const islandLapas = [
  'lapas-batu',
  'lapas-pasir-putih',
  'lapas-karanganyar',
  'lapas-besi',
  'lapas-narkotika',
  'lapas-gladakan',
  'lapas-ngaseman',
  'lapas-permisan',
  'lapas-kembang-kuning',
  'lapas-terbuka',
  'lapas-nirbaya',
];
const otherUnits = [
  'lapas-cilacap',
  'polsek-nusakambangan',
  'polsek-cilacap-tengah',
  'polresta-cilacap',
  'polda-jateng',
  'korwil-nusakambangan',
  'kanwil-ditjenpas-jateng',
];

interface RawUnit {
  id: string;
  [field: string]: unknown;
}
interface RawTopology {
  name: string;
  units: RawUnit[];
}

/** The shipped topology as plain JSON, changed by `edit`, then validated. */
function issuesAfter(edit: (t: RawTopology) => void): { path: string; message: string }[] {
  const raw = JSON.parse(readFileSync(TOPOLOGY_FILE, 'utf8')) as RawTopology;
  edit(raw);
  const result = Topology.safeParse(raw);
  if (result.success) throw new Error('expected the edited topology to be refused');
  return fieldIssues(result.error);
}

function at(t: RawTopology, id: string): { index: number; unit: RawUnit } {
  const index = t.units.findIndex((u) => u.id === id);
  const unit = t.units[index];
  if (!unit) throw new Error(`no unit ${id} in the shipped topology`);
  return { index, unit };
}

const indexOf = (id: string) =>
  (JSON.parse(readFileSync(TOPOLOGY_FILE, 'utf8')) as RawTopology).units.findIndex((u) => u.id === id);

describe('the shipped topology (config/topology.json)', () => {
  let index: TopologyIndex;
  beforeAll(async () => {
    index = indexTopology(await loadTopologyFile(TOPOLOGY_FILE));
  });

  it('is valid and holds every Lapas of Nusakambangan and Cilacap with the police and corrections commands above them', () => {
    for (const id of [...islandLapas, ...otherUnits]) expect(index.unit(id), id).toBeDefined();
  });

  it.each(islandLapas)(
    'routes %s to Polsek Nusakambangan, then Polresta Cilacap, then Polda Jateng',
    (id) => {
      const facility = index.facility(id);
      expect(facility?.primaryPrecinct).toBe('polsek-nusakambangan');
      expect(index.commandChain('polsek-nusakambangan').map((c) => c.id)).toEqual([
        'polresta-cilacap',
        'polda-jateng',
      ]);
    },
  );

  it.each(islandLapas)('places %s under Korwil Nusakambangan, then Kanwil Ditjenpas Jateng', (id) => {
    expect(index.commandChain(id).map((c) => c.id)).toEqual([
      'korwil-nusakambangan',
      'kanwil-ditjenpas-jateng',
    ]);
  });

  it('lists a command chain nearest first and stops at the root', () => {
    expect(index.commandChain('polresta-cilacap').map((c) => c.id)).toEqual(['polda-jateng']);
    expect(index.commandChain('polda-jateng')).toEqual([]);
    expect(index.commandChain('no-such-unit')).toEqual([]);
  });
});

describe('an invalid topology', () => {
  it('names the exact field of a facility whose primary precinct does not exist', () => {
    const issues = issuesAfter((t) => {
      at(t, 'lapas-permisan').unit.primaryPrecinct = 'polsek-mars';
    });
    expect(issues).toEqual([
      { path: `units.${indexOf('lapas-permisan')}.primaryPrecinct`, message: 'unknown unit "polsek-mars"' },
    ]);
  });

  it('names the second of two units with the same id', () => {
    let duplicateIndex = -1;
    const issues = issuesAfter((t) => {
      duplicateIndex = t.units.push(structuredClone(at(t, 'lapas-batu').unit)) - 1;
    });
    expect(issues).toEqual([
      { path: `units.${duplicateIndex}.id`, message: 'duplicate unit id "lapas-batu"' },
    ]);
  });

  it('names a block id used twice in one Lapas', () => {
    let blockIndex = -1;
    const issues = issuesAfter((t) => {
      const blocks = at(t, 'lapas-batu').unit.blocks as { id: string; name: string }[];
      blockIndex = blocks.push({ id: 'a', name: 'Blok A (lama)' }) - 1;
    });
    expect(issues).toEqual([
      { path: `units.${indexOf('lapas-batu')}.blocks.${blockIndex}.id`, message: 'duplicate block "a"' },
    ]);
  });

  it('refuses a Lapas placed under a police command', () => {
    const issues = issuesAfter((t) => {
      at(t, 'lapas-besi').unit.parent = 'polda-jateng';
    });
    expect(issues).toEqual([
      {
        path: `units.${indexOf('lapas-besi')}.parent`,
        message: '"polda-jateng" must be a corrections command',
      },
    ]);
  });

  it('refuses a parent cycle, naming each unit whose chain loops', () => {
    const issues = issuesAfter((t) => {
      at(t, 'kanwil-ditjenpas-jateng').unit.parent = 'korwil-nusakambangan';
    });
    expect(issues).toContainEqual({
      path: `units.${indexOf('kanwil-ditjenpas-jateng')}.parent`,
      message: 'command chain of "kanwil-ditjenpas-jateng" loops',
    });
    expect(issues).toContainEqual({
      path: `units.${indexOf('korwil-nusakambangan')}.parent`,
      message: 'command chain of "korwil-nusakambangan" loops',
    });
    // The police side is untouched by the cycle.
    expect(issues.some((i) => i.path === `units.${indexOf('polda-jateng')}.parent`)).toBe(false);
  });

  it('refuses an id that is not a lowercase slug, together with any other problem', () => {
    const issues = issuesAfter((t) => {
      at(t, 'lapas-batu').unit.id = 'Lapas Batu';
      at(t, 'lapas-permisan').unit.primaryPrecinct = 'polsek-mars';
    });
    expect(issues).toEqual([
      {
        path: `units.${indexOf('lapas-batu')}.id`,
        message: 'must be a lowercase slug such as lapas-permisan',
      },
      { path: `units.${indexOf('lapas-permisan')}.primaryPrecinct`, message: 'unknown unit "polsek-mars"' },
    ]);
  });
});

describe('loadTopologyFile', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('When the file is broken, Then stops start-up with a StartupError naming the file and each bad path', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sinergi-topology-'));
    const file = path.join(dir, 'topology.json');
    const raw = JSON.parse(readFileSync(TOPOLOGY_FILE, 'utf8')) as RawTopology;
    at(raw, 'lapas-permisan').unit.primaryPrecinct = 'polsek-mars';
    at(raw, 'lapas-besi').unit.parent = 'polda-jateng';
    await writeFile(file, JSON.stringify(raw));

    const error = await loadTopologyFile(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StartupError);
    const message = (error as StartupError).message;
    expect(message).toContain(`Invalid topology file ${file}`);
    expect(message).toContain(
      `units.${indexOf('lapas-permisan')}.primaryPrecinct: unknown unit "polsek-mars"`,
    );
    expect(message).toContain(
      `units.${indexOf('lapas-besi')}.parent: "polda-jateng" must be a corrections command`,
    );
  });

  it('When the file is not JSON or missing, Then the StartupError names the file', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sinergi-topology-'));
    const file = path.join(dir, 'topology.json');
    await writeFile(file, '{ "name": "half');
    await expect(loadTopologyFile(file)).rejects.toThrow(
      expect.objectContaining({ name: 'StartupError', message: expect.stringContaining(file) }),
    );
    const missing = path.join(dir, 'absent.json');
    await expect(loadTopologyFile(missing)).rejects.toThrow(`Cannot read topology file ${missing}`);
  });
});
