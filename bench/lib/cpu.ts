import { readFile } from 'node:fs/promises';
import { childPids } from '../../test/support/processes.ts';

/**
 * CPU time per role over a measured window (Linux /proc), so a result says where the two cores went: the
 * server, Redis, the load generators, the kernel's interrupt work (loopback networking: every frame a server
 * writes is received in softirq) — and what everything else on the machine took meanwhile, which makes a
 * disturbed run recognisable.
 */
export interface CpuSnapshot {
  at: number;
  /** Seconds of CPU (user + system) each role's processes used since they started. */
  roles: Map<string, number>;
  /** Seconds of CPU the whole machine spent busy, and in total, since boot. */
  machineBusy: number;
  machineTotal: number;
  /** Seconds the machine spent in hard and soft interrupts, accounted to no process. */
  interrupts: number;
}

const TICKS_PER_SECOND = 100;

/**
 * A process and every process it started, so a figure for "the server" counts each server process the
 * primary forked.
 */
export async function processTree(pid: number): Promise<number[]> {
  const children = await childPids(pid);
  return [pid, ...(await Promise.all(children.map(processTree))).flat()];
}

/** Sums a per-process reading over a process tree (or the one process); undefined once its root is gone. */
export async function overTree(
  pid: number | undefined,
  read: (pid: number) => Promise<number | undefined>,
  scope: 'tree' | 'process',
): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  const pids = scope === 'tree' ? await processTree(pid) : [pid];
  const [root, ...rest] = await Promise.all(pids.map(read));
  if (root === undefined) return undefined;
  return rest.reduce<number>((sum, v) => sum + (v ?? 0), root);
}

/**
 * Seconds of CPU (user + system) a process and its children have used (`process`: that process alone);
 * undefined once it is gone.
 */
export function cpuSecondsOf(
  pid: number | undefined,
  scope: 'tree' | 'process' = 'tree',
): Promise<number | undefined> {
  return overTree(
    pid,
    async (p) => {
      try {
        const stat = await readFile(`/proc/${p}/stat`, 'utf8');
        // Fields after the command name, which may itself contain spaces and parentheses; utime and stime are
        // the 14th and 15th fields.
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
      } catch {
        return undefined;
      }
    },
    scope,
  );
}

/**
 * Read and write system calls a process and its children have made. On loopback each one is a trip through
 * the kernel's TCP stack, and on a virtual machine often the costliest part of a request, so a result
 * gives them per request beside the CPU.
 */
export function syscallsOf(pid: number | undefined): Promise<number | undefined> {
  return overTree(
    pid,
    async (p) => {
      try {
        const io = await readFile(`/proc/${p}/io`, 'utf8');
        const field = (name: string) =>
          Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? Number.NaN);
        return field('syscr') + field('syscw');
      } catch {
        return undefined;
      }
    },
    'tree',
  );
}

/** The whole machine's CPU ticks since boot, by kind: user, nice, system, idle, iowait, irq, softirq, steal… */
async function machineTicks(): Promise<number[]> {
  const stat = await readFile('/proc/stat', 'utf8').catch(() => '');
  return (/^cpu\s+(.*)$/m.exec(stat)?.[1] ?? '').trim().split(/\s+/).map(Number);
}

/** Seconds the hypervisor ran something else while this machine's CPUs wanted to run (since boot). */
export async function stealSeconds(): Promise<number> {
  return ((await machineTicks())[7] ?? Number.NaN) / TICKS_PER_SECOND;
}

export async function cpuSnapshot(
  roles: Record<string, readonly (number | undefined)[]>,
): Promise<CpuSnapshot> {
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] =
    await machineTicks();
  const busy = user + nice + system + irq + softirq + steal;
  const measured = new Map<string, number>();
  for (const [role, pids] of Object.entries({ ...roles, bench: [process.pid] })) {
    let seconds = 0;
    // The runner's own tree is every process of the run.
    for (const pid of pids) seconds += (await cpuSecondsOf(pid, role === 'bench' ? 'process' : 'tree')) ?? 0;
    measured.set(role, seconds);
  }
  return {
    at: performance.now(),
    roles: measured,
    machineBusy: busy / TICKS_PER_SECOND,
    machineTotal: (busy + idle + iowait) / TICKS_PER_SECOND,
    interrupts: (irq + softirq) / TICKS_PER_SECOND,
  };
}

/**
 * CPU seconds each role used between two snapshots (`bench`: the runner itself), `interrupts` for the
 * kernel's interrupt work, `other` for everything else on the machine.
 */
export interface CpuWindow {
  wallSeconds: number;
  seconds: Record<string, number>;
}

export function cpuWindow(before: CpuSnapshot, after: CpuSnapshot): CpuWindow {
  const seconds: Record<string, number> = {};
  let ours = 0;
  for (const [role, total] of after.roles) {
    const used = total - (before.roles.get(role) ?? 0);
    ours += used;
    seconds[role] = used;
  }
  seconds.interrupts = after.interrupts - before.interrupts;
  seconds.other = Math.max(0, after.machineBusy - before.machineBusy - ours - seconds.interrupts);
  return { wallSeconds: (after.at - before.at) / 1000, seconds };
}

/** Each role's share of one core over one or more windows (100 = one core busy). */
export function cpuShares(windows: readonly CpuWindow[]): Record<string, number> {
  const wall = windows.reduce((sum, w) => sum + w.wallSeconds, 0);
  const shares: Record<string, number> = {};
  for (const w of windows) {
    for (const [role, used] of Object.entries(w.seconds)) shares[role] = (shares[role] ?? 0) + used;
  }
  for (const role of Object.keys(shares))
    shares[role] = wall > 0 ? Math.round(((shares[role] ?? 0) / wall) * 100) : 0;
  return shares;
}
