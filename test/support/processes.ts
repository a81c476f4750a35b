import { readFileSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';

/**
 * Whether a process id is alive (EPERM: it exists but belongs to someone else). A zombie is not: it has died
 * and holds nothing, and lingers where nothing reaps orphans (a container's init may not).
 */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !procState(pid).startsWith('Z');
}

/** Its state letter in /proc/<pid>/stat, after the command name, which may hold spaces and parentheses. */
function procState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2);
  } catch {
    return '';
  }
}

/** The direct children of a process, from every one of its threads (Linux /proc). */
export async function childPids(pid: number): Promise<number[]> {
  const threads = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  const lists = await Promise.all(
    threads.map((t) => readFile(`/proc/${pid}/task/${t}/children`, 'utf8').catch(() => '')),
  );
  return lists.flatMap((l) => l.trim().split(/\s+/).filter(Boolean).map(Number));
}

/** How many established TCP connections a process holds on a local port (Linux /proc). */
export async function establishedOn(pid: number, port: number): Promise<number> {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  const links = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  const inodes = new Set(links.flatMap((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1] ?? []));
  const tables = await Promise.all(
    ['tcp', 'tcp6'].map((t) => readFile(`/proc/${pid}/net/${t}`, 'utf8').catch(() => '')),
  );
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return tables
    .flatMap((t) => t.split('\n').slice(1))
    .map((row) => row.trim().split(/\s+/))
    .filter(([, local, , state, , , , , , inode]) => {
      // state 01: ESTABLISHED; the 10th column is the socket's inode.
      return local?.endsWith(`:${hexPort}`) && state === '01' && inode !== undefined && inodes.has(inode);
    }).length;
}
