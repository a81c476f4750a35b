import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { ApiKeyView, CreateApiKeyRequest } from '../../shared/api-keys.ts';
import type { PublicUser } from '../../shared/auth.ts';
import { DomainError } from '../../shared/errors.ts';
import type { TopologyIndex } from '../../shared/topology.ts';
import type { ApiKeyRepository } from '../storage/api-keys.repository.ts';

const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');

/** Per-device keys for integrations such as panic buttons: each may raise alerts for its one Lapas. */
export function createApiKeyService(deps: { repo: ApiKeyRepository; topology: TopologyIndex }) {
  const { repo, topology } = deps;
  return {
    async create(request: CreateApiKeyRequest, admin: PublicUser) {
      if (!topology.facility(request.facilityId)) {
        throw new DomainError('validation_failed', 'Unknown facility', {
          issues: [{ path: 'facilityId', message: `"${request.facilityId}" is not a Lapas of the topology` }],
        });
      }
      const key = `snk_${randomBytes(32).toString('base64url')}`;
      const apiKey: ApiKeyView = {
        id: randomUUID(),
        name: request.name,
        facilityId: request.facilityId,
        createdBy: admin.username,
        createdAt: new Date().toISOString(),
      };
      await repo.create(apiKey, hashKey(key));
      return { apiKey, key };
    },

    list: () => repo.list(),

    async revoke(id: string) {
      if (!(await repo.revoke(id))) throw new DomainError('not_found', 'No such API key');
    },

    /** The device as a caller: an operator of its Lapas that can only raise alerts. */
    async authenticate(key: string): Promise<PublicUser> {
      const apiKey = await repo.findByHash(hashKey(key));
      if (!apiKey || !topology.facility(apiKey.facilityId))
        throw new DomainError('unauthorized', 'Invalid API key');
      return {
        id: `device:${apiKey.id}`,
        username: `device:${apiKey.name}`,
        displayName: apiKey.name,
        role: 'operator',
        unitId: apiKey.facilityId,
        unitType: 'facility',
      };
    },
  };
}

export type ApiKeyService = ReturnType<typeof createApiKeyService>;
