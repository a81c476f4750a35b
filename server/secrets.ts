import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NewPassword } from '../shared/auth.ts';
import { StartupError } from './startup-error.ts';

// How long a reader waits for the process that has just created the key file to write the key into it.
const WRITER_GRACE_MS = 2000;

// As JWT_SECRET must be.
const MIN_KEY_LENGTH = 32;

/**
 * The JWT signing key: `JWT_SECRET` when set; otherwise one generated on first start and kept in
 * `<DATA_DIR>/jwt-secret`, so tokens survive restarts of the embedded set-up.
 */
export async function resolveJwtSecret(configured: string | undefined, dataDir: string): Promise<Uint8Array> {
  if (configured) return new TextEncoder().encode(configured);
  const file = path.resolve(dataDir, 'jwt-secret');
  const existing = await readSecret(file);
  if (existing) return existing;
  await mkdir(path.dirname(file), { recursive: true });
  const secret = randomBytes(48).toString('base64url');
  // `wx`: if another process created it a moment earlier, use theirs.
  await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' }).catch(
    async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    },
  );
  const kept = await readSecret(file);
  if (!kept) throw new StartupError(`${file} vanished while it was being made`);
  return kept;
}

/**
 * The key in the file, undefined when there is no file. Server processes starting together on a new data
 * directory race to create it, and the file exists, empty, between its creation and the write of the key:
 * read then, it gave a process an empty key, and every login it signed failed. An empty file is waited on.
 */
async function readSecret(file: string): Promise<Uint8Array | undefined> {
  const deadline = Date.now() + WRITER_GRACE_MS;
  for (;;) {
    let text: string;
    try {
      text = (await readFile(file, 'utf8')).trim();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    if (text) return checked(file, text);
    if (Date.now() >= deadline)
      throw new StartupError(
        `${file} is empty. Delete it to have a new signing key made (every session then ends), or set JWT_SECRET.`,
      );
    await sleep(20);
  }
}

/** A key anyone else on the machine can read, or one short enough to guess, would let tokens be forged. */
async function checked(file: string, key: string): Promise<Uint8Array> {
  if (key.length < MIN_KEY_LENGTH)
    throw new StartupError(
      `${file} holds a key shorter than ${MIN_KEY_LENGTH} characters. Delete it to have a new one made (every session then ends), or set JWT_SECRET.`,
    );
  if (((await stat(file)).mode & 0o077) !== 0)
    throw new StartupError(`${file} may be read by other users of this machine: chmod 600 ${file}`);
  return new TextEncoder().encode(key);
}

/**
 * The first admin's password from ADMIN_PASSWORD_FILE (a container secret, say), so that it never appears
 * in a log the way a generated one must. One trailing newline, as editors and `echo` leave, is not part of it.
 */
export async function readAdminPassword(file: string): Promise<string> {
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
  } catch (error) {
    throw new StartupError(`ADMIN_PASSWORD_FILE ${file} cannot be read: ${(error as Error).message}`);
  }
  const parsed = NewPassword.safeParse(text);
  if (!parsed.success)
    throw new StartupError(
      `ADMIN_PASSWORD_FILE ${file} holds no usable password: ${parsed.error.issues.map((i) => i.message).join('; ')}`,
    );
  return parsed.data;
}
