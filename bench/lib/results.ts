import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface ScenarioResult {
  scenario: string;
  /** One line for the console and the Markdown table. */
  summary: string;
  /** Machine-readable figures: medians, percentiles, ratios against the baseline, counts. */
  figures: Record<string, number | string | boolean>;
  /** The scenario's own targets, each met or not. */
  targets: { name: string; target: string; measured: string; met: boolean }[];
  /** Checks of correctness the scenario made (every console got every alert, exactly once…). */
  checks: { name: string; passed: boolean; detail?: string }[];
}

export interface BenchContext {
  quick: boolean;
  /** Where scenarios may put temporary data (Redis data dirs). */
  tmpDir: string;
  log(line: string): void;
}

export async function writeResults(
  results: ScenarioResult[],
  meta: Record<string, unknown>,
): Promise<{ json: string; md: string }> {
  const dir = path.resolve('bench/results');
  await mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const json = path.join(dir, `${stamp}.json`);
  const md = path.join(dir, `${stamp}.md`);
  await writeFile(json, `${JSON.stringify({ meta, results }, null, 2)}\n`);
  const lines = [
    `# Sinergi benchmark — ${new Date().toISOString()}`,
    '',
    `Machine: ${String(meta.cpus)} × ${String(meta.cpuModel)}, ${String(meta.memory)}; Node ${String(meta.node)}; ${meta.quick ? 'quick run' : 'full run'}.`,
    `Speed: sealing 2,000 timeline events took ${String(meta.sealing2000EventsMs)} ms (before / after the run); the hypervisor took ${String(meta.stealPercent)} % of the CPUs (steal).`,
    '',
    '| scenario | summary |',
    '|---|---|',
    ...results.map((r) => `| ${r.scenario} | ${r.summary} |`),
    '',
    '| scenario | target | measured | met |',
    '|---|---|---|---|',
    ...results.flatMap((r) =>
      r.targets.map(
        (t) => `| ${r.scenario} | ${t.name}: ${t.target} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`,
      ),
    ),
    '',
    '| scenario | check | passed |',
    '|---|---|---|',
    ...results.flatMap((r) =>
      r.checks.map(
        (c) =>
          `| ${r.scenario} | ${c.name}${c.detail ? ` (${c.detail})` : ''} | ${c.passed ? 'yes' : '**no**'} |`,
      ),
    ),
    '',
  ];
  await writeFile(md, lines.join('\n'));
  return { json, md };
}
