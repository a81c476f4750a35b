import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveJwtSecret } from '../server/secrets.ts';
import { StartupError } from '../server/startup-error.ts';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sinergi-secret-'));
  dirs.push(dir);
  return dir;
}

const text = (key: Uint8Array) => new TextDecoder().decode(key);

describe('the JWT signing key of the embedded set-up', () => {
  it('When server processes start together on a new data directory, Then they all sign with one key, kept readable by the owner alone', async () => {
    const dir = await dataDir();
    const keys = await Promise.all(Array.from({ length: 8 }, () => resolveJwtSecret(undefined, dir)));
    expect(new Set(keys.map(text)).size).toBe(1);
    expect(text(keys[0] ?? new Uint8Array()).length).toBeGreaterThanOrEqual(64);
    expect((await readFile(path.join(dir, 'jwt-secret'), 'utf8')).trim()).toBe(
      text(keys[0] ?? new Uint8Array()),
    );
    expect((await stat(path.join(dir, 'jwt-secret'))).mode & 0o777).toBe(0o600);
  });

  it('When one reads the key file after another created it but before it wrote the key, Then it waits for the key instead of signing with an empty one', async () => {
    const dir = await dataDir();
    const file = path.join(dir, 'jwt-secret');
    await writeFile(file, '', { mode: 0o600 });
    const reading = resolveJwtSecret(undefined, dir);
    await new Promise((r) => setTimeout(r, 150));
    await writeFile(file, 'the-key-the-other-process-made-a-moment-later\n');
    expect(text(await reading)).toBe('the-key-the-other-process-made-a-moment-later');
  });

  it('When the key file stays empty, Then start-up stops, naming the file and what to do', async () => {
    const dir = await dataDir();
    await writeFile(path.join(dir, 'jwt-secret'), '\n', { mode: 0o600 });
    const failed = await resolveJwtSecret(undefined, dir).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(StartupError);
    expect((failed as Error).message).toMatch(/jwt-secret is empty\. Delete it .* or set JWT_SECRET/);
  });

  it('When the key file may be read by other users or holds a short key, Then start-up stops, naming the file and what to do', async () => {
    const open = await dataDir();
    await writeFile(path.join(open, 'jwt-secret'), `${'k'.repeat(64)}\n`, { mode: 0o644 });
    const exposed = await resolveJwtSecret(undefined, open).catch((error: unknown) => error);
    expect(exposed).toBeInstanceOf(StartupError);
    expect((exposed as Error).message).toMatch(/may be read by other users.*chmod 600/);

    const short = await dataDir();
    await writeFile(path.join(short, 'jwt-secret'), 'x\n', { mode: 0o600 });
    const guessable = await resolveJwtSecret(undefined, short).catch((error: unknown) => error);
    expect(guessable).toBeInstanceOf(StartupError);
    expect((guessable as Error).message).toMatch(/key shorter than 32 characters\. Delete it/);
  });

  it('When JWT_SECRET is set, Then it is the key and no file is made', async () => {
    const dir = await dataDir();
    expect(text(await resolveJwtSecret('a-configured-secret-of-at-least-32-chars', dir))).toBe(
      'a-configured-secret-of-at-least-32-chars',
    );
    expect(existsSync(path.join(dir, 'jwt-secret'))).toBe(false);
  });
});
