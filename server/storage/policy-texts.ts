import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { canonicalJson } from '../../shared/canonical-json.ts';
import { DomainError } from '../../shared/errors.ts';
import type { EscalationSnapshot } from '../../shared/escalation.ts';
import type { RedisKeys } from './keys.ts';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * Escalation policies as stored: each once, under the SHA-256 of its canonical JSON (its ref), written by
 * the commit that first brings it. A handful of policies serve every incident, and a text never changes
 * under its hash, so each process reads each once; one that no longer matches its hash is refused.
 */
export function createPolicyTexts(redis: Redis, keys: RedisKeys) {
  const byRef = new Map<string, EscalationSnapshot>();
  const texts = new WeakMap<EscalationSnapshot, { ref: string; json: string }>();

  function remember(ref: string, json: string, policy: EscalationSnapshot) {
    if (byRef.size > 256) byRef.clear();
    byRef.set(ref, policy);
    texts.set(policy, { ref, json });
  }

  return {
    /** The text to store and its ref. */
    textOf(policy: EscalationSnapshot): { ref: string; json: string } {
      let text = texts.get(policy);
      if (!text) {
        const json = canonicalJson(policy);
        text = { ref: sha256(json), json };
        remember(text.ref, json, policy);
      }
      return text;
    },

    /** The policies stored under `refs`, each read from Redis only the first time. */
    async read(refs: string[]): Promise<Map<string, EscalationSnapshot>> {
      const found = new Map<string, EscalationSnapshot>();
      const missing: string[] = [];
      for (const ref of new Set(refs)) {
        const known = byRef.get(ref);
        if (known) found.set(ref, known);
        else missing.push(ref);
      }
      if (missing.length === 0) return found;
      const stored = await redis.mget(missing.map((ref) => keys.policyPrefix + ref));
      missing.forEach((ref, i) => {
        const json = stored[i];
        if (!json) throw new DomainError('internal', `Escalation policy ${ref} is missing from the store`);
        if (sha256(json) !== ref) throw new DomainError('internal', `Escalation policy ${ref} was altered`);
        const policy = JSON.parse(json) as EscalationSnapshot;
        remember(ref, json, policy);
        found.set(ref, policy);
      });
      return found;
    },
  };
}
