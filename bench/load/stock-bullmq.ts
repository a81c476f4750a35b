import { Queue, type QueueOptions, Worker, type WorkerOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { serveGenerator } from '../lib/processes.ts';

/**
 * The baseline of the escalation scenario: a bare BullMQ Queue and Worker with default settings (unless a
 * variant names one), in its own process, firing delayed jobs spread evenly over a window.
 */

export interface StockRunRequest {
  redisUrl: string;
  /** A fresh queue name per run, so runs on one Redis never see each other's jobs. */
  queueName: string;
  count: number;
  windowMs: number;
  /** Time between the request and the first due time, for adding every job first. */
  leadMs: number;
  /** Worker options beyond the defaults, for the variants that find what costs lateness. */
  worker?: Partial<Pick<WorkerOptions, 'concurrency' | 'drainDelay'>>;
  /** Redis round trips each job makes before it finishes, to mimic a processor that does real work. */
  roundTripsPerJob?: number;
  /** Worker instances in this process, each with its own connections and fetch loop (default 1). */
  workers?: number;
}

export interface StockRunReport {
  latenessMs: number[];
  processed: number;
  /** Jobs whose processor ran more than once. */
  repeated: number;
  addMs: number;
  cpuSeconds: number;
}

async function runStock(req: StockRunRequest): Promise<StockRunReport> {
  // Over the same transport as Sinergi's: the embedded Redis's Unix socket, a path, or TCP.
  const connection = req.redisUrl.startsWith('/')
    ? { path: req.redisUrl }
    : { host: new URL(req.redisUrl).hostname, port: Number(new URL(req.redisUrl).port) };
  const queue = new Queue(req.queueName, { connection } satisfies QueueOptions);
  const seen = new Map<string, number>();
  const latenessMs: number[] = [];
  const workers: Worker[] = [];
  const work = new Redis(req.redisUrl);
  const cpuStart = process.cpuUsage();
  try {
    const firstDue = Date.now() + req.leadMs;
    const dueOf = (i: number) => firstDue + Math.floor((i * req.windowMs) / req.count);
    let done: () => void = () => {};
    const allDone = new Promise<void>((resolve) => {
      done = resolve;
    });
    for (let w = 0; w < (req.workers ?? 1); w++) {
      const worker = new Worker(
        req.queueName,
        async (job) => {
          latenessMs.push(Date.now() - (job.data as { dueAt: number }).dueAt);
          const id = String(job.id);
          seen.set(id, (seen.get(id) ?? 0) + 1);
          for (let i = 0; i < (req.roundTripsPerJob ?? 0); i++) await work.ping();
          if (latenessMs.length >= req.count) done();
        },
        { connection, ...req.worker },
      );
      workers.push(worker);
      await worker.waitUntilReady();
    }
    const addStart = Date.now();
    for (let start = 0; start < req.count; start += 500) {
      const batch = [];
      for (let i = start; i < Math.min(req.count, start + 500); i++) {
        const dueAt = dueOf(i);
        batch.push({ name: 'due', data: { dueAt }, opts: { jobId: `j${i}`, delay: dueAt - Date.now() } });
      }
      await queue.addBulk(batch);
    }
    const addMs = Date.now() - addStart;
    const deadline = firstDue + req.windowMs + 30_000;
    await Promise.race([allDone, new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())))]);
    // A late duplicate run would show up in this extra second.
    await new Promise((r) => setTimeout(r, 1000));
    const cpu = process.cpuUsage(cpuStart);
    return {
      latenessMs,
      processed: seen.size,
      repeated: [...seen.values()].filter((n) => n > 1).length,
      addMs,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
    };
  } finally {
    await Promise.allSettled(workers.map((w) => w.close()));
    work.disconnect();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
}

serveGenerator({ run: (req: StockRunRequest) => runStock(req) });
