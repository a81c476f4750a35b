import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { serverProcessCount } from '../server/cluster/primary.ts';
import { ConfigError, loadConfig } from '../server/config.ts';

function configErrorOf(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('When nothing is set, Then runs a development server on 127.0.0.1:8080 with the embedded Redis under ./data', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      env: 'development',
      dataDir: './data',
      logLevel: 'info',
      topologyFile: 'config/topology.json',
      seedDemo: true,
      http: { host: '127.0.0.1', port: 8080, trustProxy: 0, processes: 'auto' },
      redis: { url: undefined, keyPrefix: 'sng:', appendfsync: 'always' },
      auth: { jwtSecret: undefined, accessTtlSeconds: 900, refreshTtlSeconds: 86_400 },
    });
    expect(config.http.publicOrigins).toContain('http://localhost:8080');
  });

  it('When SERVER_PROCESSES is auto, Then a host runs one server process per core, at most four', () => {
    const processesOn = (cores: number, setting = 'auto') =>
      serverProcessCount(loadConfig({ SERVER_PROCESSES: setting }), cores);
    expect([1, 2, 4, 8].map((cores) => processesOn(cores))).toEqual([1, 2, 4, 4]);
    expect(processesOn(2, '6')).toBe(6);
    for (const bad of ['0', '-1', '1.5', 'many', '65'])
      expect(configErrorOf({ SERVER_PROCESSES: bad }).message).toContain('SERVER_PROCESSES');
  });

  it('treats an empty variable as unset, as `VAR= cmd` does in a shell', () => {
    expect(loadConfig({ PORT: '', LOG_LEVEL: '' }).http.port).toBe(8080);
  });

  it('When NODE_ENV=production, Then demo accounts are off unless asked for', () => {
    expect(loadConfig({ NODE_ENV: 'production' }).seedDemo).toBe(false);
  });

  it('When several keys are bad, Then one ConfigError lists every one of them', () => {
    const error = configErrorOf({ PORT: 'abc', LOG_LEVEL: 'loud', PUBLIC_ORIGINS: 'notaurl' });
    expect(error.problems).toHaveLength(3);
    expect(error.problems.map((p) => p.split(':')[0])).toEqual(['PORT', 'LOG_LEVEL', 'PUBLIC_ORIGINS.0']);
    for (const key of ['PORT', 'LOG_LEVEL', 'PUBLIC_ORIGINS']) expect(error.message).toContain(key);
  });

  it('When HOST opens the server to the network in demo mode, Then it is refused unless SEED_DEMO=1 asks for it by name', () => {
    expect(configErrorOf({ HOST: '0.0.0.0' }).message).toContain('demo mode');
    expect(loadConfig({ HOST: '0.0.0.0', SEED_DEMO: '1' }).http.host).toBe('0.0.0.0');
    expect(loadConfig({ HOST: '0.0.0.0', NODE_ENV: 'production' }).seedDemo).toBe(false);
    for (const loopback of ['127.0.0.1', 'localhost', '::1', '127.0.1.1'])
      expect(loadConfig({ HOST: loopback }).seedDemo).toBe(true);
  });

  it('refuses at start the settings that would break the server later, and keeps origins and HOST in the form they are compared in', () => {
    // A browser sends its page's origin alone, without a slash or a path.
    expect(
      loadConfig({ PUBLIC_ORIGINS: 'https://sinergi.example.id/, http://10.0.0.5:8080/console' }).http
        .publicOrigins,
    ).toEqual(['https://sinergi.example.id', 'http://10.0.0.5:8080']);
    expect(configErrorOf({ METRICS_TOKEN: 'a token with spaces in it' }).message).toContain('METRICS_TOKEN');
    // Past 2^31 - 1 ms, Node runs a timer at once: every console would be ended as expired on connecting.
    expect(configErrorOf({ ACCESS_TOKEN_TTL_SECONDS: '2147484' }).message).toContain(
      'ACCESS_TOKEN_TTL_SECONDS',
    );
    expect(loadConfig({ ACCESS_TOKEN_TTL_SECONDS: '2147483' }).auth.accessTtlSeconds).toBe(2_147_483);
    for (const key of ['SOCKET_PING_INTERVAL_MS', 'SOCKET_PING_TIMEOUT_MS', 'SHUTDOWN_GRACE_MS'])
      expect(configErrorOf({ [key]: '2147483648' }).message).toContain(key);
    expect(loadConfig({ HOST: ' 127.0.0.1 ' }).http.host).toBe('127.0.0.1');
    expect(configErrorOf({ HOST: 'local host' }).message).toContain('HOST');
  });

  it('refuses demo accounts in production', () => {
    const error = configErrorOf({ NODE_ENV: 'production', SEED_DEMO: '1' });
    expect(error.problems).toEqual(['SEED_DEMO: demo accounts are refused when NODE_ENV=production']);
  });

  it('reports a cross-field problem together with a bad field, not one run later', () => {
    const error = configErrorOf({ PORT: 'abc', NODE_ENV: 'production', SEED_DEMO: 'yes' });
    expect(error.problems.map((p) => p.split(':')[0])).toEqual(['PORT', 'SEED_DEMO']);
  });

  it('refuses a shared Redis without a JWT_SECRET, since processes on it must sign with one key', () => {
    const error = configErrorOf({ REDIS_URL: 'redis://127.0.0.1:6379' });
    expect(error.problems).toEqual(['JWT_SECRET: required when REDIS_URL is set']);
    expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', JWT_SECRET: 'x'.repeat(32) }).redis.url).toBe(
      'redis://127.0.0.1:6379',
    );
  });

  it('takes a Redis as a URL or as the absolute path of its Unix socket, and nothing else', () => {
    const secret = { JWT_SECRET: 'x'.repeat(32) };
    expect(loadConfig({ REDIS_URL: '/run/redis/redis.sock', ...secret }).redis.url).toBe(
      '/run/redis/redis.sock',
    );
    expect(loadConfig({ SOCKET_REDIS_URL: 'rediss://cache.internal:6380' }).redis.socketUrl).toBe(
      'rediss://cache.internal:6380',
    );
    for (const bad of ['redis.sock', 'http://127.0.0.1:6379', '/run/redis.sock?db=2']) {
      expect(configErrorOf({ REDIS_URL: bad, ...secret }).problems).toEqual([
        expect.stringMatching(/^REDIS_URL: /),
      ]);
    }
  });

  it('returns a deeply frozen object, so no part of the server can change a setting after start-up', () => {
    const config = loadConfig({});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.http)).toBe(true);
    expect(Object.isFrozen(config.http.publicOrigins)).toBe(true);
    expect(Object.isFrozen(config.auth)).toBe(true);
    expect(() => {
      (config.http as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => (config.http.publicOrigins as string[]).push('http://evil.example')).toThrow(TypeError);
  });
});

describe('the real entry point with a bad setting', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('When PORT=abc, Then exits non-zero naming PORT on stderr before touching the data dir', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sinergi-config-'));
    const dataDir = path.join(dir, 'data');
    const child = spawn('node_modules/.bin/tsx', ['server/main.ts'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: 'abc', DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 15_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));

    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(stderr).toContain('Invalid configuration');
    expect(stderr).toMatch(/PORT: /);
    expect(stderr).not.toMatch(/\n\s+at /);
    expect(stdout).toBe('');
    // Neither the JWT secret nor the embedded Redis was created.
    expect(existsSync(dataDir)).toBe(false);
  });
});
