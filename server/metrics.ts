import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** One registry per app instance, so two in-process servers (as in tests) never share counters. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sinergi_' });
  return {
    registry,
    socketsConnected: new Gauge({
      name: 'sinergi_sockets_connected',
      help: 'Sockets connected (to every server process on the port), by the type of the user’s unit',
      labelNames: ['unit_type'] as const,
      registers: [registry],
    }),
    httpRequests: new Histogram({
      name: 'sinergi_http_request_duration_seconds',
      help: 'HTTP request latency by route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    socketCommands: new Histogram({
      name: 'sinergi_socket_command_duration_seconds',
      help: 'Socket command latency by event and outcome (ok or an error code)',
      labelNames: ['event', 'outcome'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    socketCommandsWithoutAck: new Counter({
      name: 'sinergi_socket_commands_without_ack_total',
      help: 'Socket events received without an acknowledgement callback (ignored)',
      labelNames: ['event'] as const,
      registers: [registry],
    }),
    changesRedelivered: new Counter({
      name: 'sinergi_changes_redelivered_total',
      help: 'Committed changes delivered again because their first delivery was not confirmed in time',
      registers: [registry],
    }),
    escalationLateness: new Histogram({
      name: 'sinergi_escalation_lateness_seconds',
      help: 'How late an escalation level fired after it fell due',
      buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 120],
      registers: [registry],
    }),
    escalationFired: new Counter({
      name: 'sinergi_escalation_fired_total',
      help: 'Escalation levels fired',
      registers: [registry],
    }),
    escalationSkipped: new Counter({
      name: 'sinergi_escalation_skipped_total',
      help: 'Escalation timers that found their chain moved on (acknowledged, held, stopped, or already fired)',
      registers: [registry],
    }),
    escalationCancelled: new Counter({
      name: 'sinergi_escalation_cancelled_total',
      help: 'Pending escalation timers removed because their chain stopped',
      registers: [registry],
    }),
    escalationRepaired: new Counter({
      name: 'sinergi_escalation_repaired_total',
      help: 'Missing escalation timers recreated by the auditor',
      registers: [registry],
    }),
    escalationAuditLastRun: new Gauge({
      name: 'sinergi_escalation_audit_last_run_seconds',
      help: 'When the escalation auditor last completed (Unix time): its heartbeat',
      registers: [registry],
      // Several processes on a port are summed into one scrape; the auditor runs in one at a time.
      aggregator: 'max',
    }),
    jobsFailed: new Counter({
      name: 'sinergi_jobs_failed_total',
      help: 'Background jobs that failed an attempt',
      labelNames: ['name'] as const,
      registers: [registry],
    }),
    jobsStalled: new Counter({
      name: 'sinergi_jobs_stalled_total',
      help: 'Background jobs whose worker stopped renewing their lock',
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Queue depth by job state, read from Redis when Prometheus scrapes (a failed read leaves the last values). */
export function registerQueueDepth(metrics: Metrics, depth: () => Promise<Record<string, number>>) {
  new Gauge({
    name: 'sinergi_escalation_queue_jobs',
    help: 'Escalation queue jobs by state (delayed = timers waiting to fall due)',
    labelNames: ['state'] as const,
    registers: [metrics.registry],
    // Every process reads the same queues: summed over the processes on a port, they would count twice.
    aggregator: 'max',
    async collect() {
      const counts = await depth().catch(() => undefined);
      for (const [state, n] of Object.entries(counts ?? {})) this.set({ state }, n);
    },
  });
}
