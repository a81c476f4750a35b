import { z } from 'zod';
import { Slug } from './topology.ts';

/** A panic button or other integration that raises alerts for one Lapas with a per-device key. */
export const CreateApiKeyRequest = z
  .object({ name: z.string().trim().min(1).max(100), facilityId: Slug })
  .strict();
export type CreateApiKeyRequest = z.infer<typeof CreateApiKeyRequest>;

export const ApiKeyId = z.uuid();

export const ApiKeyView = z.object({
  id: ApiKeyId,
  name: z.string(),
  facilityId: Slug,
  createdBy: z.string(),
  createdAt: z.iso.datetime(),
});
export type ApiKeyView = z.infer<typeof ApiKeyView>;

/** The key itself is shown once, at creation; only its hash is stored. */
export const CreatedApiKey = z.object({ apiKey: ApiKeyView, key: z.string() });
