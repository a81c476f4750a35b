import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { escalationQueueName, partitionOf } from '../server/jobs/escalation-partitions.ts';
import { createEscalationQueue, jobIds } from '../server/jobs/escalation-queue.ts';
import { createMetrics } from '../server/metrics.ts';
import { type EmbeddedRedis, freePort, startEmbeddedRedis } from '../server/redis/embedded-redis.ts';
import { createIncidentRepository } from '../server/storage/incidents.repository.ts';
import { redisKeys } from '../server/storage/keys.ts';
import type { Chain } from '../shared/escalation.ts';
import type { Incident, IncidentEvent } from '../shared/incident.ts';
import { replay } from '../shared/incident-reducer.ts';
import { uniqueAlert } from './support/alerts.ts';
import { closeConsoles, consoleFor, get, login, post } from './support/consoles.ts';
import {
  startTestServer,
  TEST_JWT_SECRET,
  type TestServer,
  type TestServerOptions,
  uniquePrefix,
} from './support/test-server.ts';
import { waitFor } from './support/wait-for.ts';

// Each chain climbs once, 1.5 s after the raise, and then stands at its top: one `escalated` per chain.
const ONE_STEP = 'test/fixtures/one-step-escalation.json';
const WAIT_MS = 1500;
const chains: readonly Chain[] = ['corrections', 'police'];

type Escalated = Extract<IncidentEvent, { type: 'escalated' }>;

/** Teardown steps, run last-in first-out after each test; every one runs even if an earlier one fails. */
const teardown: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  closeConsoles();
  const errors: unknown[] = [];
  for (const step of teardown.splice(0).reverse()) await step().catch((e: unknown) => errors.push(e));
  if (errors.length > 0) throw new AggregateError(errors, 'teardown failed');
});

async function serverOn(options: TestServerOptions): Promise<TestServer> {
  const server = await startTestServer({ ...options, env: { ESCALATION_FILE: ONE_STEP, ...options.env } });
  teardown.push(() => server.close());
  return server;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sinergi-escalation-'));
  teardown.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A critical riot raised over REST, as a panic button or a console would. */
async function raiseOverRest(url: string): Promise<Incident> {
  const { accessToken } = await login(url, 'operator.permisan');
  const res = await post(url, '/api/alerts', uniqueAlert({ severity: 4 }), accessToken);
  expect(res.status).toBe(201);
  return res.body.incident;
}

async function escalationsOn(url: string, incidentId: string): Promise<Escalated[]> {
  const { accessToken } = await login(url, 'admin');
  const res = await get(url, `/api/incidents/${incidentId}/events?limit=1000`, accessToken);
  expect(res.status).toBe(200);
  return (res.body.events as IncidentEvent[]).filter((e): e is Escalated => e.type === 'escalated');
}

/** Waits until both chains have climbed, then returns their `escalated` events. */
async function bothFired(url: string, incidentId: string, timeoutMs = 10_000): Promise<Escalated[]> {
  return waitFor(
    async () => {
      const fired = await escalationsOn(url, incidentId).catch(() => []);
      return chains.every((c) => fired.some((e) => e.data.chain === c)) && fired;
    },
    { timeoutMs, intervalMs: 50, what: 'both chains to climb' },
  );
}

/** Each chain climbed exactly once, to level 1; returns the two events. */
function expectOncePerChain(fired: Escalated[]) {
  for (const chain of chains) {
    expect(fired.filter((e) => e.data.chain === chain).map((e) => e.data.level)).toEqual([1]);
  }
  for (const e of fired) expect(e.data.lateMs).toBe(Date.parse(e.data.firedAt) - Date.parse(e.data.dueAt));
  return fired;
}

/**
 * A worker of one partition's queue that takes an incident's timer by hand once it is due and never renews
 * its lock: to the engine, a worker still running it, and once the lock runs out, one that crashed. Anything
 * else it is handed (the auditor's runs) it finishes untouched.
 */
async function takeTimerByHand(
  prefix: string,
  partition: number,
  timer: string,
  { lockDuration, timeoutMs }: { lockDuration: number; timeoutMs: number },
): Promise<{ worker: Worker; job: Job; token: string }> {
  const connection = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  teardown.push(() => connection.quit());
  const worker = new Worker(escalationQueueName(partition), null, {
    connection,
    prefix: `${prefix}bull`,
    autorun: false,
    lockDuration,
  });
  teardown.push(() => worker.close(true));
  const token = randomUUID();
  const job = await waitFor(
    async () => {
      const next: Job | undefined = await worker.getNextJob(token, { block: false });
      if (next && next.id !== timer) await next.moveToCompleted(null, token, false);
      return next?.id === timer && next;
    },
    { timeoutMs, intervalMs: 20, what: 'a worker to take the timer by hand' },
  );
  return { worker, job, token };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function metricsOf(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

function metricValue(text: string, sample: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : Number.NaN;
}

/** The names of the clients connected to a Redis, apart from the one asking. */
async function otherClients(url: string): Promise<string[]> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await probe.connect();
    const self = await probe.client('ID');
    const list = (await probe.client('LIST')) as string;
    return list
      .trim()
      .split('\n')
      .filter((line) => !line.startsWith(`id=${self} `))
      .map((line) => /\bname=(\S*)/.exec(line)?.[1] ?? '?');
  } finally {
    probe.disconnect();
  }
}

interface Child {
  readonly process: ChildProcessByStdio<null, Readable, Readable>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly url: string;
  output: string;
}

/** `npm start` as its own process, on the suite's Redis under `prefix`. */
async function spawnServer(prefix: string): Promise<Child> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'development',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATA_DIR: await tempDir(),
    REDIS_URL: inject('redisUrl'),
    REDIS_KEY_PREFIX: prefix,
    JWT_SECRET: TEST_JWT_SECRET,
    ESCALATION_FILE: ONE_STEP,
    SEED_DEMO: '1',
    LOG_LEVEL: 'silent',
  };
  const proc = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const child: Child = { process: proc, exited, url: `http://127.0.0.1:${port}`, output: '' };
  const collect = (chunk: Buffer) => {
    child.output += chunk.toString();
  };
  proc.stdout.on('data', collect);
  proc.stderr.on('data', collect);
  teardown.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  });
  await waitFor(
    () => {
      if (proc.exitCode !== null) throw new Error(`server exited early (${proc.exitCode}):\n${child.output}`);
      return child.output.includes('Sinergi is listening');
    },
    { timeoutMs: 30_000, what: 'the child server to listen' },
  );
  return child;
}

describe('faults the escalation engine survives', () => {
  it('When the server process is SIGKILLed right after a raise, Then a restarted process fires the level, late by no more than the restart time plus a second', async () => {
    const prefix = uniquePrefix();
    const child = await spawnServer(prefix);
    const incident = await raiseOverRest(child.url);
    child.process.kill('SIGKILL');
    const killedAt = Date.now();
    expect((await child.exited).signal).toBe('SIGKILL');

    const restarted = await serverOn({ prefix, seedDemo: false });
    const restartMs = Date.now() - killedAt;
    const fired = expectOncePerChain(await bothFired(restarted.url, incident.id));
    for (const e of fired) {
      expect(Date.parse(e.data.firedAt)).toBeGreaterThan(killedAt);
      expect(e.data.dueAt).toBe(new Date(Date.parse(incident.openedAt) + WAIT_MS).toISOString());
      expect(e.data.lateMs).toBeLessThanOrEqual(restartMs + 1000);
    }
  });

  it('When Redis (AOF, fsync always) restarts across the due time, Then the pending escalation still fires, once', async () => {
    const dataDir = await tempDir();
    let redis: EmbeddedRedis = await startEmbeddedRedis({ dataDir, appendfsync: 'always' });
    teardown.push(() => redis.stop());
    const server = await serverOn({ redisUrl: redis.url });
    const incident = await raiseOverRest(server.url);

    await redis.stop();
    // Redis stays down across the due time: the timer lives only in the AOF meanwhile.
    await sleep(Math.max(0, Date.parse(incident.openedAt) + WAIT_MS + 300 - Date.now()));
    redis = await startEmbeddedRedis({ dataDir, appendfsync: 'always' });
    const upAt = Date.now();

    const fired = expectOncePerChain(await bothFired(server.url, incident.id, 15_000));
    for (const e of fired) expect(Date.parse(e.data.firedAt)).toBeGreaterThanOrEqual(upAt);

    // Every connection the server opened (and reopened after the restart) ends with it. The Socket.IO
    // adapter's stream reader is left out: it ends by itself after its current blocking read, up to 5 s on.
    await server.close();
    expect((await otherClients(redis.url)).filter((name) => name !== 'sinergi:adapter')).toEqual([]);
  });

  it('When every process is down past a due time, Then the first one back fires the overdue level within seconds, once, recording how late it was', async () => {
    const prefix = uniquePrefix();
    const first = await serverOn({ prefix });
    const incident = await raiseOverRest(first.url);
    await first.close();
    const dueAt = Date.parse(incident.openedAt) + WAIT_MS;
    // Down until three seconds past due; the two minutes take the same path (an overdue delayed job).
    await sleep(dueAt + 3000 - Date.now());

    const restartAt = Date.now();
    const second = await serverOn({ prefix, seedDemo: false });
    const upAt = Date.now();
    const fired = expectOncePerChain(await bothFired(second.url, incident.id));
    for (const e of fired) {
      expect(e.data.lateMs).toBeGreaterThanOrEqual(restartAt - dueAt);
      expect(Date.parse(e.data.firedAt) - upAt).toBeLessThan(2000);
    }
  });

  it('When a worker dies holding a due timer, Then another worker’s stalled-job check takes it over, each chain’s level fires once, and the stall is counted', async () => {
    const prefix = uniquePrefix();
    // Serves consoles but runs no worker, so the doomed worker below is the only one to take the jobs.
    const front = await serverOn({ prefix, env: { ESCALATION_WORKER: 'off' } });
    const incident = await raiseOverRest(front.url);
    const timer = jobIds.timer(incident.id);

    // Fetched by hand, its lock is never renewed: after 500 ms it looks like a crashed worker's.
    const { worker: doomed } = await takeTimerByHand(
      prefix,
      partitionOf(incident.id, front.config.escalation.partitions),
      timer,
      { lockDuration: 500, timeoutMs: WAIT_MS + 5000 },
    );
    await doomed.close(true);
    expect(await escalationsOn(front.url, incident.id)).toEqual([]);

    const rescuer = await serverOn({
      prefix,
      seedDemo: false,
      env: { WORKER_LOCK_MS: '500', WORKER_STALLED_INTERVAL_MS: '300' },
    });
    expectOncePerChain(await bothFired(front.url, incident.id));
    const metrics = await waitFor(
      async () => {
        const text = await metricsOf(rescuer.url);
        return metricValue(text, 'sinergi_jobs_stalled_total') >= 1 && text;
      },
      { what: 'the stall to be counted' },
    );
    expect(metricValue(metrics, 'sinergi_jobs_stalled_total')).toBe(1);
    expect(metricValue(metrics, 'sinergi_escalation_fired_total')).toBe(chains.length);
  });
});

/**
 * The incident's timer, promoted and taken by hand by a worker that holds it for a minute, as one whose run
 * lasts: returns a view of its queue and the run.
 */
async function timerRunningLong(prefix: string, incidentId: string) {
  const connection = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  teardown.push(() => connection.quit());
  const queue = new Queue(escalationQueueName(0), { connection, prefix: `${prefix}bull` });
  teardown.push(() => queue.close());
  const timer = jobIds.timer(incidentId);
  await (await queue.getJob(timer))?.promote();
  const run = await takeTimerByHand(prefix, 0, timer, { lockDuration: 60_000, timeoutMs: 5000 });
  return { queue, run };
}

/**
 * A critical incident whose timer a worker has taken and holds, on a server that only schedules; levels 4 s
 * apart, so that an auditor running every 300 ms looks several times before anything wakes.
 */
async function timerRunningUnderAuditor() {
  const prefix = uniquePrefix();
  const escalation = JSON.parse(await readFile(ONE_STEP, 'utf8'));
  for (const chain of chains) escalation.policies[0].chains[chain].levels[0].waitSeconds = 4;
  const env = { ESCALATION_PARTITIONS: '1', ESCALATION_AUDIT_INTERVAL_MS: '300' };
  const front = await serverOn({ prefix, escalation, env: { ...env, ESCALATION_WORKER: 'off' } });
  const incident = await raiseOverRest(front.url);
  const { queue, run } = await timerRunningLong(prefix, incident.id);

  /** A server with workers and the auditor comes: no repair is recorded, and both levels fire on time. */
  async function expectNoRepair() {
    const rescuer = await serverOn({ prefix, escalation, seedDemo: false, env });
    await sleep(1600);
    const audited = await metricsOf(rescuer.url);
    expect(metricValue(audited, 'sinergi_escalation_audit_last_run_seconds')).toBeGreaterThan(0);
    expect(metricValue(audited, 'sinergi_escalation_repaired_total')).toBe(0);

    const fired = expectOncePerChain(await bothFired(front.url, incident.id));
    for (const e of fired) expect(e.data.lateMs).toBeLessThan(1000);
    const { accessToken } = await login(front.url, 'admin');
    const events = (await get(front.url, `/api/incidents/${incident.id}/events?limit=1000`, accessToken)).body
      .events as IncidentEvent[];
    expect(events.filter((e) => e.type === 'escalation_repaired')).toEqual([]);
  }
  return { prefix, front, incident, queue, run, expectNoRepair };
}

/** The Lapas' security chief holds the corrections chain; returns the incident as the hold left it. */
async function holdCorrections(url: string, incidentId: string, durationSeconds: number): Promise<Incident> {
  const { socket } = await consoleFor(url, 'chief.permisan');
  const held = await socket.emitWithAck('escalation:hold', {
    incidentId,
    chain: 'corrections',
    durationSeconds,
    reason: 'Regu pengamanan sedang bernegosiasi',
  });
  if (!held.ok) throw new Error(JSON.stringify(held.error));
  return held.data.incident;
}

describe('a change while the incident’s timer runs', () => {
  it('When a chain is held while its incident’s timer is running, Then a follow-up wakes for the end of the hold: the chain resumes and both levels fire on time, with no wait for the running timer or the auditor', async () => {
    const prefix = uniquePrefix();
    const front = await serverOn({ prefix, env: { ESCALATION_WORKER: 'off', ESCALATION_PARTITIONS: '1' } });
    const incident = await raiseOverRest(front.url);
    const timer = jobIds.timer(incident.id);
    // A worker takes the timer and holds it, as one whose run lasts, for longer than this test.
    const { queue } = await timerRunningLong(prefix, incident.id);

    const held = await holdCorrections(front.url, incident.id, 1);
    const heldUntil = Date.parse(held.escalation.chains.corrections.heldUntil ?? '');
    expect(await queue.getJobState(timer)).toBe('active');

    await serverOn({ prefix, seedDemo: false, env: { ESCALATION_PARTITIONS: '1' } });
    const fired = expectOncePerChain(await bothFired(front.url, incident.id));
    for (const e of fired) expect(e.data.lateMs).toBeLessThan(1000);
    const { accessToken } = await login(front.url, 'admin');
    const events = (await get(front.url, `/api/incidents/${incident.id}/events?limit=1000`, accessToken)).body
      .events as IncidentEvent[];
    const resumed = events.find((e) => e.type === 'escalation_resumed');
    expect(Date.parse(resumed?.at ?? '') - heldUntil).toBeGreaterThanOrEqual(0);
    expect(Date.parse(resumed?.at ?? '') - heldUntil).toBeLessThan(1000);
    // The corrections level waited its full time again from the resume.
    const corrections = fired.find((e) => e.data.chain === 'corrections');
    expect(Date.parse(corrections?.data.dueAt ?? '') - Date.parse(resumed?.at ?? '')).toBe(WAIT_MS);
  });

  it('When the timer’s run ends with nothing due after a change made meanwhile set a follow-up, Then the auditor counts the follow-up as the timer: no repair is recorded and both levels fire on time', async () => {
    const { front, incident, queue, run, expectNoRepair } = await timerRunningUnderAuditor();

    await holdCorrections(front.url, incident.id, 3);
    expect(await queue.getJobState(jobIds.followUp(incident.id))).toBe('delayed');
    // The run had read the incident before the hold and ends with nothing due: only the follow-up is left.
    await run.job.moveToCompleted(null, run.token, false);
    expect(await queue.getJobState(jobIds.timer(incident.id))).toBe('unknown');

    await expectNoRepair();
  });

  it('When a change comes while both the timer and its follow-up run, and both runs end with nothing due, Then the auditor finds the spare timer that change set: no repair is recorded and both levels fire on time', async () => {
    const { prefix, front, incident, queue, run, expectNoRepair } = await timerRunningUnderAuditor();

    await holdCorrections(front.url, incident.id, 3);
    const followUp = jobIds.followUp(incident.id);
    await (await queue.getJob(followUp))?.promote();
    const followUpRun = await takeTimerByHand(prefix, 0, followUp, { lockDuration: 60_000, timeoutMs: 5000 });
    // A second change, while both run: it can place neither.
    const { socket } = await consoleFor(front.url, 'commander.cilacap');
    const held = await socket.emitWithAck('escalation:hold', {
      incidentId: incident.id,
      chain: 'police',
      durationSeconds: 3,
      reason: 'Menunggu izin Kapolsek',
    });
    if (!held.ok) throw new Error(JSON.stringify(held.error));
    // Both runs had read the incident before that change and end with nothing due: only the spare is left.
    await run.job.moveToCompleted(null, run.token, false);
    await followUpRun.job.moveToCompleted(null, followUpRun.token, false);
    expect(await queue.getJobState(jobIds.timer(incident.id))).toBe('unknown');
    expect(await queue.getJobState(followUp)).toBe('unknown');
    const pending = (await queue.getDelayed()).filter((job) => job.name === 'timer');
    expect(pending.map((job) => job.id?.startsWith(`${jobIds.timer(incident.id)}.`))).toEqual([true]);

    await expectNoRepair();
  });
});

/**
 * A critical incident on a server that only schedules, its levels `waitSeconds` away (time for what a test
 * puts its timer through first), and servers with workers to run the timer, each until closed.
 */
async function timerForALongLife(waitSeconds: number) {
  const prefix = uniquePrefix();
  const escalation = JSON.parse(await readFile(ONE_STEP, 'utf8'));
  for (const chain of chains) escalation.policies[0].chains[chain].levels[0].waitSeconds = waitSeconds;
  const env = { ESCALATION_PARTITIONS: '1', WORKER_LOCK_MS: '500', WORKER_STALLED_INTERVAL_MS: '300' };
  const front = await serverOn({ prefix, escalation, env: { ...env, ESCALATION_WORKER: 'off' } });
  const incident = await raiseOverRest(front.url);
  const connection = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  teardown.push(() => connection.quit());
  const queue = new Queue(escalationQueueName(0), { connection, prefix: `${prefix}bull` });
  teardown.push(() => queue.close());
  const timer = jobIds.timer(incident.id);
  return {
    prefix,
    front,
    incident,
    connection,
    timer,
    /** Makes the timer due now, as if its time had come. */
    promote: async () => (await queue.getJob(timer))?.promote(),
    /** The timer once `done` holds for it. */
    timerWhen: (done: (job: Job, state: string) => boolean, what: string) =>
      waitFor(
        async () => {
          const job: Job | undefined = await queue.getJob(timer);
          return job !== undefined && done(job, await job.getState()) && job;
        },
        { timeoutMs: 10_000, what },
      ),
    workers: () => serverOn({ prefix, escalation, seedDemo: false, env }),
  };
}

describe('an incident’s timer over a long life', () => {
  it('When three workers die one after another, each holding the incident’s timer (more stalls than its job was once allowed), Then another takes it over each time and both levels fire on time, once', async () => {
    const { prefix, front, incident, timer, promote, timerWhen, workers } = await timerForALongLife(5);
    for (let stall = 1; stall <= 3; stall++) {
      await promote();
      const doomed = await takeTimerByHand(prefix, 0, timer, { lockDuration: 300, timeoutMs: 5000 });
      await doomed.worker.close(true);
      const rescuer = await workers();
      // Taken over and run: back in the delayed set, to wake for the climbs.
      await timerWhen(
        (job, state) => state === 'delayed' && job.stalledCounter === stall,
        `the timer taken over after stall ${stall}`,
      );
      if (stall < 3) await rescuer.close();
    }
    const fired = expectOncePerChain(await bothFired(front.url, incident.id));
    for (const e of fired) expect(e.data.lateMs).toBeLessThan(1000);
  });

  it('When the incident’s timer fails five runs in two spells (its policy unreadable for a while), more than its job was once allowed, Then it is retried through both and both levels fire on time, once', async () => {
    const { prefix, front, incident, connection, promote, timerWhen, workers } = await timerForALongLife(12);
    const keys = redisKeys(prefix);
    const policy = `${keys.policyPrefix}${await connection.hget(keys.incident(incident.id), 'policyRef')}`;
    let failed = 0;
    for (const [spell, failures] of [3, 2].entries()) {
      await connection.rename(policy, `${policy}.away`);
      // A process that has not read the policy yet: each run reads it from the store, and fails.
      const rescuer = await workers();
      await promote();
      failed += failures;
      await timerWhen((job) => job.attemptsMade >= failed, `${failed} failed runs`);
      await connection.rename(`${policy}.away`, policy);
      const readableAt = Date.now();
      const job = await timerWhen(
        (j, state) => state === 'delayed' && (j.processedOn ?? 0) >= readableAt,
        `a run once the policy is readable again, after spell ${spell + 1}`,
      );
      failed = job.attemptsMade;
      if (spell === 0) await rescuer.close();
    }
    expect(failed).toBeGreaterThanOrEqual(5);
    const fired = expectOncePerChain(await bothFired(front.url, incident.id));
    for (const e of fired) expect(e.data.lateMs).toBeLessThan(1000);
  });
});

describe('partitions of the escalation timers', () => {
  /** Raises critical riots until one's timers are in a partition other than the first, of `partitions`. */
  async function raiseOutsideFirstPartition(url: string, partitions: number): Promise<Incident> {
    for (let i = 0; i < 20; i++) {
      const incident = await raiseOverRest(url);
      if (partitionOf(incident.id, partitions) !== 0) return incident;
    }
    throw new Error(`no incident landed outside partition 0 of ${partitions}`);
  }

  it('When incidents open, Then their timers spread evenly over the partitions, each incident always to the same one', () => {
    const ids = Array.from({ length: 4000 }, () => randomUUID());
    const counts = [0, 0, 0, 0];
    for (const id of ids) {
      const p = partitionOf(id, 4);
      expect(partitionOf(id, 4)).toBe(p);
      counts[p] = (counts[p] ?? 0) + 1;
    }
    for (const n of counts) expect(Math.abs(n - 1000)).toBeLessThan(150);
    expect(new Set(ids.map((id) => partitionOf(id, 1)))).toEqual(new Set([0]));
  });

  it('When timers were set in one queue (as by a version before partitions), Then a server with four partitions fires them, once each', async () => {
    const prefix = uniquePrefix();
    const before = await serverOn({ prefix, env: { ESCALATION_PARTITIONS: '1', ESCALATION_WORKER: 'off' } });
    const incident = await raiseOutsideFirstPartition(before.url, 4);

    await serverOn({ prefix, seedDemo: false, env: { ESCALATION_PARTITIONS: '4' } });
    const fired = expectOncePerChain(await bothFired(before.url, incident.id));
    for (const e of fired) expect(e.data.lateMs).toBeLessThan(1000);
  });

  it('When the partitions shrink below the queue holding a timer, Then the auditor sets it again where it now belongs and the level fires, once', async () => {
    const prefix = uniquePrefix();
    const before = await serverOn({ prefix, env: { ESCALATION_WORKER: 'off', ESCALATION_PARTITIONS: '4' } });
    let incident: Incident | undefined;
    for (let i = 0; i < 20 && !incident; i++) {
      const raised = await raiseOverRest(before.url);
      if (partitionOf(raised.id, 4) === 3) incident = raised;
    }
    if (!incident) throw new Error('no incident landed in partition 3 of 4');

    // Two partitions: nobody runs the queue of partition 3 any more.
    await serverOn({
      prefix,
      seedDemo: false,
      env: { ESCALATION_PARTITIONS: '2', ESCALATION_AUDIT_INTERVAL_MS: '300' },
    });
    expectOncePerChain(await bothFired(before.url, incident.id));
    const { accessToken } = await login(before.url, 'admin');
    const events = (await get(before.url, `/api/incidents/${incident.id}/events?limit=1000`, accessToken))
      .body.events as IncidentEvent[];
    expect(events.filter((e) => e.type === 'escalation_repaired').map((e) => e.data)).toEqual(
      expect.arrayContaining(chains.map((chain) => expect.objectContaining({ chain, level: 1 }))),
    );
  });
});

describe('timers stored by an earlier version', () => {
  it('When chain timers of a version before the incident timer are pending, Then they hand over to the incident’s timer: each level fires once, on time, and no repair is recorded', async () => {
    const prefix = uniquePrefix();
    const front = await serverOn({ prefix, env: { ESCALATION_WORKER: 'off', ESCALATION_PARTITIONS: '1' } });
    const incident = await raiseOverRest(front.url);
    // As that version left an incident: a timer per chain, named for the level it climbs to.
    const connection = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
    teardown.push(() => connection.quit());
    const queue = new Queue(escalationQueueName(0), { connection, prefix: `${prefix}bull` });
    teardown.push(() => queue.close());
    await (await queue.getJob(jobIds.timer(incident.id)))?.remove();
    for (const chain of chains) {
      const { generation, dueAt } = incident.escalation.chains[chain];
      if (!dueAt) throw new Error(`${chain} chain not running`);
      await queue.add(
        'escalate',
        { incidentId: incident.id, chain, level: 1, generation, dueAt, waitFrom: incident.openedAt },
        { jobId: `esc.${incident.id}.${chain}.1`, delay: Date.parse(dueAt) - Date.now() },
      );
    }

    const upgraded = await serverOn({
      prefix,
      seedDemo: false,
      env: { ESCALATION_PARTITIONS: '1', ESCALATION_AUDIT_INTERVAL_MS: '300' },
    });
    const fired = expectOncePerChain(await bothFired(front.url, incident.id));
    for (const e of fired) expect(e.data.lateMs).toBeLessThan(1000);
    // The auditor ran meanwhile and counted the old timers as the chains' own.
    const metrics = await metricsOf(upgraded.url);
    expect(metricValue(metrics, 'sinergi_escalation_audit_last_run_seconds')).toBeGreaterThan(0);
    const { accessToken } = await login(front.url, 'admin');
    const events = (await get(front.url, `/api/incidents/${incident.id}/events?limit=1000`, accessToken)).body
      .events as IncidentEvent[];
    expect(events.filter((e) => e.type === 'escalation_repaired')).toEqual([]);
  });
});

describe('changes whose timers are set out of order', () => {
  it('When the timer of a resolve is set after that of the reopening that followed it (two processes, one slow), Then the timer stays set for the reopened incident: both levels fire on time and no repair is needed', async () => {
    const prefix = uniquePrefix();
    const front = await serverOn({ prefix, env: { ESCALATION_WORKER: 'off', ESCALATION_PARTITIONS: '1' } });
    const incident = await raiseOverRest(front.url);
    const { socket } = await consoleFor(front.url, 'chief.permisan');
    for (const to of ['responding', 'resolved', 'responding'] as const) {
      const moved = await socket.emitWithAck('incident:transition', { incidentId: incident.id, to });
      if (!moved.ok) throw new Error(JSON.stringify(moved.error));
    }
    const connection = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
    teardown.push(() => connection.quit());
    const keys = redisKeys(prefix);
    const repo = createIncidentRepository(connection, keys);
    const stored = await repo.load(incident.id);
    const events = await repo.events(incident.id, 0, 10);
    const resolve = events[2];
    expect(resolve).toMatchObject({ type: 'status_changed', data: { to: 'resolved' } });
    const atResolve = replay(events.slice(0, 3));
    if (!stored || !resolve || !atResolve) throw new Error('incident not stored');

    // The resolve's sync, finishing last in another process: nothing waited when it was decided.
    const queues = createEscalationQueue({
      connection,
      prefix: keys.bullPrefix,
      metrics: createMetrics(),
      partitions: 1,
      incidents: repo,
    });
    teardown.push(() => queues.close());
    await queues.timers.sync({ incident: atResolve, event: resolve, policy: stored.policy, quiet: [] });

    const queue = new Queue(escalationQueueName(0), { connection, prefix: keys.bullPrefix });
    teardown.push(() => queue.close());
    expect(await queue.getJobState(jobIds.timer(incident.id))).toBe('delayed');
    await serverOn({ prefix, seedDemo: false, env: { ESCALATION_PARTITIONS: '1' } });
    const fired = expectOncePerChain(await bothFired(front.url, incident.id));
    for (const e of fired) expect(e.data.lateMs).toBeLessThan(1000);
    const after = await repo.events(incident.id, 0, 100);
    expect(after.filter((e) => e.type === 'escalation_repaired')).toEqual([]);
  });
});
