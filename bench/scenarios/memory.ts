/**
 * Memory: the server's resident set size (VmRSS of the primary and every server process, summed) per idle
 * authenticated console, at 0 / 1,000 / 2,000 / 5,000 consoles (quick: 0 / 500 / 1,000), each step read
 * after a settling pause. Consoles are held by generator processes, spread over the default topology's units
 * and logged in the real way (one account per unit, its token shared by the unit's consoles); they stay idle
 * but answer every heartbeat.
 */
import { readFile } from 'node:fs/promises';
import { detachAll, type Fleet, startFleet } from '../lib/delivery.ts';
import { assignConsoles } from '../lib/fan-out-load.ts';
import { serverNodeArgs } from '../lib/processes.ts';
import type { BenchContext, ScenarioResult } from '../lib/results.ts';
import { loadBenchTopology, residentBytes, startSinergi } from '../lib/sinergi.ts';
import { round } from '../lib/stats.ts';
import type { ConsoleClient, ConsoleSpec } from '../load/consoles.ts';

const TARGET_KIB_PER_CONSOLE = 25;
// File descriptors a process needs besides its sockets (Redis connections, stdio, the event loop's own).
const FD_HEADROOM = 200;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function steps(ctx: BenchContext): number[] {
  const given = process.env.BENCH_MEMORY_STEPS?.split(',').map(Number);
  if (given?.length && given.every((n) => Number.isInteger(n) && n >= 0))
    return [...new Set([0, ...given])].sort((a, b) => a - b);
  return ctx.quick ? [0, 500, 1000] : [0, 1000, 2000, 5000];
}

async function openFilesLimit(pid: number | string): Promise<number> {
  const limits = await readFile(`/proc/${pid}/limits`, 'utf8').catch(() => '');
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(limits)?.[1];
  return soft === undefined || soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft);
}

/** The median of a few readings a little apart, so one allocation burst does not decide the step. */
async function settledResident(pid: number, samples = 5, apartMs = 200): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < samples; i++) {
    readings.push(await residentBytes(pid));
    await sleep(apartMs);
  }
  readings.sort((a, b) => a - b);
  return readings[Math.floor(readings.length / 2)] ?? Number.NaN;
}

async function heapUsed(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  return Number(/^sinergi_nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
}

async function connectMore(fleet: Fleet, consoles: ConsoleSpec[], client: ConsoleClient) {
  const gens = fleet.consoles;
  const replies = await Promise.all(
    gens.map((gen, g) =>
      gen.request<{ connected: number; failed: number; errors: Record<string, number> }>('connect', {
        consoles: consoles.filter((_, i) => i % gens.length === g),
        client,
      }),
    ),
  );
  return {
    connected: replies.reduce((s, r) => s + r.connected, 0),
    failed: replies.reduce((s, r) => s + r.failed, 0),
    errors: replies.map((r) => JSON.stringify(r.errors)).join(' '),
  };
}

export async function run(ctx: BenchContext): Promise<ScenarioResult> {
  const plan = steps(ctx);
  const most = plan.at(-1) ?? 0;
  const settleMs = ctx.quick ? 1000 : 4000;
  const client: ConsoleClient = process.env.BENCH_CLIENT === 'socket.io-client' ? 'socket.io-client' : 'wire';
  const topology = await loadBenchTopology();

  // Each generator stays well inside its open-files limit; the server must hold every console at once.
  const ownLimit = await openFilesLimit('self');
  const generators = Math.max(2, Math.ceil(most / Math.max(1, ownLimit - FD_HEADROOM)));
  const fleet = startFleet(generators);
  const stack = await startSinergi(ctx, { name: 'memory', extraNodeArgs: serverNodeArgs() }).catch(
    async (error: unknown) => {
      await fleet.stop();
      throw error;
    },
  );
  try {
    const server = stack.servers[0];
    const pid = server?.child.pid;
    if (!server || pid === undefined) throw new Error('no server process');
    const serverLimit = await openFilesLimit(pid);
    if (serverLimit < most + FD_HEADROOM) {
      throw new Error(
        `the server may open only ${serverLimit} files (ulimit -n) but must hold ${most} consoles: ` +
          `raise the limit (ulimit -n ${most + 1000}) or set BENCH_MEMORY_STEPS lower`,
      );
    }
    const specs = assignConsoles(topology, most).map((c) => ({
      ...c,
      url: server.url,
      auth: { token: stack.accounts.get(c.unitId)?.accessToken ?? '' },
    }));

    const readings: { consoles: number; rss: number; heap: number }[] = [];
    let failed = 0;
    let errors = '';
    let held = 0;
    for (const target of plan) {
      if (target > held) {
        const started = Date.now();
        const result = await connectMore(fleet, specs.slice(held, target), client);
        failed += result.failed;
        if (result.failed) errors += result.errors;
        ctx.log(`${target} consoles (${result.connected} more in ${Date.now() - started} ms)`);
        held = target;
      }
      await sleep(settleMs);
      const rss = await settledResident(pid, 5, ctx.quick ? 100 : 200);
      const heap = await heapUsed(server.url);
      readings.push({ consoles: target, rss, heap });
      ctx.log(
        `${target} consoles: RSS ${round(rss / 2 ** 20, 1)} MiB, heap used ${round(heap / 2 ** 20, 1)} MiB`,
      );
    }
    const counts = await Promise.all(fleet.consoles.map((g) => g.request<{ consoles: number }>('counts')));
    const reports = await Promise.all(
      fleet.consoles.map((g) => g.request<{ dropped: { key: number; reason: string }[] }>('report')),
    );
    const stillOpen = counts.reduce((s, c) => s + c.consoles, 0);
    const dropped = reports.flatMap((r) => r.dropped);

    const first = readings[0];
    const last = readings.at(-1);
    if (!first || !last) throw new Error('no readings');
    const kib = (bytes: number) => bytes / 1024;
    const perConsole = kib(last.rss - first.rss) / Math.max(1, last.consoles - first.consoles);
    const heapPerConsole = kib(last.heap - first.heap) / Math.max(1, last.consoles - first.consoles);
    const marginal = readings.slice(1).map((r, i) => {
      const prev = readings[i] ?? r;
      return {
        between: `${prev.consoles}→${r.consoles}`,
        kib: kib(r.rss - prev.rss) / Math.max(1, r.consoles - prev.consoles),
      };
    });
    const growth = marginal.map((m) => `${m.between}: ${round(m.kib, 1)} KiB`).join(', ');
    return {
      scenario: 'memory',
      summary:
        `${stack.processesPerServer} server processes, RSS of all ${readings.map((r) => `${r.consoles}: ${round(r.rss / 2 ** 20, 1)} MiB`).join(', ')}; ` +
        `${round(perConsole, 1)} KiB per idle console (${growth})`,
      figures: {
        serverProcesses: stack.processesPerServer,
        steps: plan.join(' / '),
        consoleClient: client,
        consoleGenerators: generators,
        settleMs,
        openFilesLimitServer: serverLimit,
        ...Object.fromEntries(readings.map((r) => [`rssMiBAt${r.consoles}`, round(r.rss / 2 ** 20, 1)])),
        ...Object.fromEntries(
          readings.map((r) => [`heapUsedMiBAt${r.consoles}`, round(r.heap / 2 ** 20, 1)]),
        ),
        ...Object.fromEntries(marginal.map((m) => [`kibPerConsole${m.between}`, round(m.kib, 1)])),
        kibPerConsole: round(perConsole, 1),
        heapKibPerConsole: round(heapPerConsole, 1),
      },
      targets: [
        {
          name: 'server RSS per idle console',
          target: `≤ ${TARGET_KIB_PER_CONSOLE} KiB`,
          measured: `${round(perConsole, 1)} KiB (0 → ${last.consoles})`,
          met: perConsole <= TARGET_KIB_PER_CONSOLE,
        },
      ],
      checks: [
        {
          name: 'every console connected',
          passed: failed === 0,
          detail: failed ? `${failed} failed: ${errors}` : `${most} connected`,
        },
        {
          name: 'every console still connected at the end (heartbeats answered)',
          passed: stillOpen === most && dropped.length === 0,
          detail: `${stillOpen - dropped.length}/${most} open`,
        },
      ],
    };
  } finally {
    await detachAll(fleet);
    await Promise.allSettled([fleet.stop(), stack.stop()]);
  }
}
