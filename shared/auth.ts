import { z } from 'zod';
import { Role } from './roles.ts';
import { Slug } from './topology.ts';

export const Username = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[a-z0-9][a-z0-9._-]{2,63}$/, 'use 3–64 letters, digits, dots, dashes or underscores');

/** NIST 800-63B: length over composition rules; the upper bound keeps hashing cheap to refuse. */
export const NewPassword = z.string().min(12, 'at least 12 characters').max(256);

export const LoginRequest = z
  .object({
    username: z.string().trim().toLowerCase().min(1).max(128),
    password: z.string().min(1).max(1024),
  })
  .strict();
export type LoginRequest = z.infer<typeof LoginRequest>;

/** An account's id. A caller's `id` is wider: a device raising with its API key has no account. */
export const UserId = z.uuid();

export const PublicUser = z.object({
  id: z.string(),
  username: z.string(),
  displayName: z.string(),
  role: Role,
  unitId: Slug,
  unitType: z.enum(['facility', 'precinct', 'command']),
});
export type PublicUser = z.infer<typeof PublicUser>;

export const AdminUserView = PublicUser.extend({
  disabled: z.boolean(),
  createdAt: z.iso.datetime(),
});
export type AdminUserView = z.infer<typeof AdminUserView>;

export const TokenPair = z.object({
  accessToken: z.string(),
  accessTokenExpiresAt: z.iso.datetime(),
  refreshToken: z.string(),
});

export const LoginResponse = TokenPair.extend({ user: PublicUser });
export type LoginResponse = z.infer<typeof LoginResponse>;

export const RefreshRequest = z.object({ refreshToken: z.string().min(1).max(512) }).strict();
export type RefreshRequest = z.infer<typeof RefreshRequest>;

export const DisplayName = z.string().trim().min(1).max(120);

export const CreateUserRequest = z
  .object({ username: Username, displayName: DisplayName, password: NewPassword, role: Role, unitId: Slug })
  .strict();
export type CreateUserRequest = z.infer<typeof CreateUserRequest>;

export const UpdateUserRequest = z
  .object({ displayName: DisplayName.optional(), disabled: z.boolean().optional() })
  .strict()
  .refine((v) => v.displayName !== undefined || v.disabled !== undefined, 'nothing to change');
export type UpdateUserRequest = z.infer<typeof UpdateUserRequest>;

export const ResetPasswordRequest = z.object({ password: NewPassword }).strict();
