import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stealSeconds } from './lib/cpu.ts';
import { sealingSpeed } from './lib/machine-speed.ts';
import { type BenchContext, type ScenarioResult, writeResults } from './lib/results.ts';

type Scenario = { run(ctx: BenchContext): Promise<ScenarioResult> };

/** Run in this order; each starts its own Redis and server processes and stops them before the next. */
const scenarios: Record<string, () => Promise<Scenario>> = {
  'fan-out': () => import('./scenarios/fan-out.ts'),
  ingest: () => import('./scenarios/ingest.ts'),
  escalation: () => import('./scenarios/escalation.ts'),
  memory: () => import('./scenarios/memory.ts'),
  'across-processes': () => import('./scenarios/across-processes.ts'),
};

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string', multiple: true },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(
    `npm run bench [-- --quick] [-- --only <scenario> …]\nScenarios: ${Object.keys(scenarios).join(', ')}\n` +
      'Results go to bench/results/<timestamp>.json and .md.\n',
  );
  process.exit(0);
}

const chosen = values.only?.length ? values.only : Object.keys(scenarios);
for (const name of chosen) {
  if (!scenarios[name]) {
    process.stderr.write(`unknown scenario "${name}"; choose from ${Object.keys(scenarios).join(', ')}\n`);
    process.exit(2);
  }
}

const tmpDir = await mkdtemp(path.join(os.tmpdir(), 'sinergi-bench-'));
const ctx: BenchContext = {
  quick: values.quick,
  tmpDir,
  log: (line) => process.stderr.write(`  ${line}\n`),
};
const results: ScenarioResult[] = [];
let failed = false;
const speedBefore = sealingSpeed();
const stealFrom = await stealSeconds();
const runStarted = performance.now();
process.stderr.write(`machine speed: sealing 2,000 timeline events takes ${speedBefore.toFixed(0)} ms\n`);
try {
  for (const name of chosen) {
    process.stderr.write(`▶ ${name}${ctx.quick ? ' (quick)' : ''}\n`);
    const started = Date.now();
    const load = scenarios[name];
    if (!load) continue;
    try {
      const result = await (await load()).run(ctx);
      results.push(result);
      process.stdout.write(
        `${result.scenario}: ${result.summary} [${((Date.now() - started) / 1000).toFixed(1)} s]\n`,
      );
      if (result.checks.some((c) => !c.passed)) failed = true;
    } catch (error) {
      failed = true;
      process.stdout.write(`${name}: FAILED ${(error as Error).stack ?? String(error)}\n`);
    }
  }
} finally {
  await rm(tmpDir, { recursive: true, force: true });
}
const cpus = os.cpus();
const speedAfter = sealingSpeed();
const steal = Math.round(
  (((await stealSeconds()) - stealFrom) / ((performance.now() - runStarted) / 1000) / cpus.length) * 100,
);
process.stdout.write(
  `machine: sealing 2,000 events ${speedBefore.toFixed(0)} ms before the run, ${speedAfter.toFixed(0)} ms after; ` +
    `the hypervisor took ${steal} % of the CPUs during it\n`,
);
const files = await writeResults(results, {
  quick: ctx.quick,
  node: process.version,
  cpus: cpus.length,
  cpuModel: cpus[0]?.model ?? 'unknown',
  memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
  sealing2000EventsMs: [Math.round(speedBefore), Math.round(speedAfter)].join(' / '),
  stealPercent: steal,
  at: new Date().toISOString(),
});
process.stdout.write(
  `results: ${path.relative(process.cwd(), files.json)} and ${path.relative(process.cwd(), files.md)}\n`,
);
// A failed correctness check is a failure of the run; a missed performance target is a finding, not a crash.
process.exit(failed ? 1 : 0);
