import { randomBytes } from 'node:crypto';
import type { CreateUserRequest } from '../../shared/auth.ts';
import { DomainError } from '../../shared/errors.ts';
import type { UserService } from './user-service.ts';

export const DEMO_PASSWORD = 'sinergi-demo';

export const demoAccounts: Omit<CreateUserRequest, 'password'>[] = [
  {
    username: 'operator.permisan',
    displayName: 'Operator Ruang Kendali Permisan',
    role: 'operator',
    unitId: 'lapas-permisan',
  },
  {
    username: 'chief.permisan',
    displayName: 'Ka. KPLP Permisan',
    role: 'security_chief',
    unitId: 'lapas-permisan',
  },
  {
    username: 'operator.batu',
    displayName: 'Operator Ruang Kendali Batu',
    role: 'operator',
    unitId: 'lapas-batu',
  },
  {
    username: 'dispatch.nusakambangan',
    displayName: 'Piket Polsek Nusakambangan',
    role: 'dispatcher',
    unitId: 'polsek-nusakambangan',
  },
  {
    username: 'dispatch.cilacap',
    displayName: 'Piket Polsek Cilacap Tengah',
    role: 'dispatcher',
    unitId: 'polsek-cilacap-tengah',
  },
  {
    username: 'commander.cilacap',
    displayName: 'Kapolresta Cilacap',
    role: 'commander',
    unitId: 'polresta-cilacap',
  },
  {
    username: 'supervisor.kanwil',
    displayName: 'Kakanwil Ditjenpas Jawa Tengah',
    role: 'supervisor',
    unitId: 'kanwil-ditjenpas-jateng',
  },
  { username: 'admin', displayName: 'Administrator', role: 'admin', unitId: 'kanwil-ditjenpas-jateng' },
];

/** Creates the demo accounts that do not exist yet; returns the usernames created. */
export async function seedDemoAccounts(users: UserService): Promise<string[]> {
  const created: string[] = [];
  for (const account of demoAccounts) {
    try {
      await users.create({ ...account, password: DEMO_PASSWORD });
      created.push(account.username);
    } catch (error) {
      if (!(error instanceof DomainError && error.code === 'conflict')) throw error;
    }
  }
  return created;
}

/**
 * The demo accounts that still open with the published demo password: left from a trial run in demo mode,
 * they would let anyone in, `admin` included, once the same store serves for real.
 */
export async function demoAccountsStillOpen(users: UserService): Promise<string[]> {
  const open: string[] = [];
  for (const { username } of demoAccounts)
    if (await users.acceptsPassword(username, DEMO_PASSWORD)) open.push(username);
  return open;
}

/**
 * On an empty store, creates `admin` with the password `choose` gives, or with a random one, returned so that
 * it can be printed once.
 */
export async function ensureFirstAdmin(
  users: UserService,
  unitId: string,
  choose?: () => Promise<string>,
): Promise<{ generated?: string } | undefined> {
  if ((await users.count()) > 0) return undefined;
  const chosen = await choose?.();
  const password = chosen ?? randomBytes(18).toString('base64url');
  try {
    await users.create({ username: 'admin', displayName: 'Administrator', role: 'admin', unitId, password });
  } catch (error) {
    // Another process seeded the same empty store a moment earlier.
    if (error instanceof DomainError && error.code === 'conflict') return undefined;
    throw error;
  }
  return chosen === undefined ? { generated: password } : {};
}
