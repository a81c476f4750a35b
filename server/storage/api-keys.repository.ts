import type { Redis } from 'ioredis';
import type { ApiKeyView } from '../../shared/api-keys.ts';
import type { RedisKeys } from './keys.ts';

export function createApiKeyRepository(redis: Redis, keys: RedisKeys) {
  return {
    async create(view: ApiKeyView, keyHash: string): Promise<void> {
      await redis
        .multi()
        .set(keys.apiKey(keyHash), JSON.stringify(view))
        .hset(keys.apiKeys, view.id, JSON.stringify({ ...view, keyHash }))
        .exec();
    },

    async findByHash(keyHash: string): Promise<ApiKeyView | undefined> {
      const json = await redis.get(keys.apiKey(keyHash));
      return json ? (JSON.parse(json) as ApiKeyView) : undefined;
    },

    async list(): Promise<ApiKeyView[]> {
      const rows = Object.values(await redis.hgetall(keys.apiKeys));
      return rows.map((json) => {
        const { keyHash: _hidden, ...view } = JSON.parse(json) as ApiKeyView & { keyHash: string };
        return view;
      });
    },

    /** False when there is no such key. */
    async revoke(id: string): Promise<boolean> {
      const json = await redis.hget(keys.apiKeys, id);
      if (!json) return false;
      const { keyHash } = JSON.parse(json) as { keyHash: string };
      await redis.multi().del(keys.apiKey(keyHash)).hdel(keys.apiKeys, id).exec();
      return true;
    },
  };
}

export type ApiKeyRepository = ReturnType<typeof createApiKeyRepository>;
