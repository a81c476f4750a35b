import { randomUUID } from 'node:crypto';
import type { AdminUserView, CreateUserRequest, UpdateUserRequest } from '../../shared/auth.ts';
import { DomainError } from '../../shared/errors.ts';
import { roleFitsUnit } from '../../shared/roles.ts';
import type { TopologyIndex } from '../../shared/topology.ts';
import type { UserRecord, UserRepository } from '../storage/users.repository.ts';
import { type SessionRevocations, toPublicUser } from './auth-service.ts';
import { hashPassword, verifyPassword } from './passwords.ts';

export function createUserService(deps: {
  users: UserRepository;
  topology: TopologyIndex;
  revocations: SessionRevocations;
}) {
  const { users, topology, revocations } = deps;

  const view = (user: UserRecord): AdminUserView => ({
    ...toPublicUser(user, topology),
    disabled: user.disabled,
    createdAt: user.createdAt,
  });

  async function existing(userId: string): Promise<UserRecord> {
    const user = await users.findById(userId);
    if (!user) throw new DomainError('not_found', 'No such user');
    return user;
  }

  return {
    async create(request: CreateUserRequest): Promise<AdminUserView> {
      const unit = topology.unit(request.unitId);
      if (!unit) {
        throw new DomainError('validation_failed', 'Unknown unit', {
          issues: [{ path: 'unitId', message: `no unit "${request.unitId}" in the topology` }],
        });
      }
      if (!roleFitsUnit(request.role, unit)) {
        throw new DomainError('validation_failed', 'Role does not fit the unit', {
          issues: [{ path: 'role', message: `a ${request.role} cannot belong to ${unit.type} "${unit.id}"` }],
        });
      }
      const user: UserRecord = {
        id: randomUUID(),
        username: request.username,
        displayName: request.displayName,
        role: request.role,
        unitId: request.unitId,
        passwordHash: await hashPassword(request.password),
        disabled: false,
        createdAt: new Date().toISOString(),
      };
      if (!(await users.create(user)))
        throw new DomainError('conflict', `Username "${request.username}" is taken`);
      return view(user);
    },

    async list(): Promise<AdminUserView[]> {
      return (await users.list()).map(view);
    },

    async get(userId: string): Promise<AdminUserView> {
      return view(await existing(userId));
    },

    /** Whether `username` is an enabled account that `password` opens. */
    async acceptsPassword(username: string, password: string): Promise<boolean> {
      const user = await users.findByUsername(username);
      return user !== undefined && !user.disabled && (await verifyPassword(user.passwordHash, password));
    },

    async findIdByUsername(username: string): Promise<string> {
      const user = await users.findByUsername(username);
      if (!user) throw new DomainError('not_found', `No user "${username}"`);
      return user.id;
    },

    async update(userId: string, changes: UpdateUserRequest): Promise<AdminUserView> {
      await existing(userId);
      await users.update(
        userId,
        {
          ...(changes.displayName !== undefined && { displayName: changes.displayName }),
          ...(changes.disabled !== undefined && { disabled: changes.disabled }),
        },
        { endSessions: changes.disabled === true },
      );
      // The account's consoles on every process.
      if (changes.disabled) await revocations.ended(userId);
      return view(await existing(userId));
    },

    async resetPassword(userId: string, password: string): Promise<void> {
      await existing(userId);
      await users.update(userId, { passwordHash: await hashPassword(password) }, { endSessions: true });
      await revocations.ended(userId);
    },

    async count(): Promise<number> {
      return users.count();
    },
  };
}

export type UserService = ReturnType<typeof createUserService>;
