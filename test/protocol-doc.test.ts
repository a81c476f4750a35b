import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { renderProtocol } from '../server/docs/protocol-doc.ts';

describe('docs/PROTOCOL.md', () => {
  it('matches the shared schemas (run `npm run docs:protocol` after changing one)', async () => {
    expect(await readFile('docs/PROTOCOL.md', 'utf8')).toBe(renderProtocol());
  });
});
