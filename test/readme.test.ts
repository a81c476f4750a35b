import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { EnvSchema } from '../server/config.ts';

const readme = await readFile('README.md', 'utf8');

describe('README', () => {
  it('opens with the two commands that do everything', () => {
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    expect(firstBlock).toMatch(/^npm ci && npm start\b/m);
    expect(firstBlock).toMatch(/^npm test\b/m);
  });

  it('documents every setting the server reads', () => {
    const keys = Object.keys(EnvSchema.shape);
    // A row of the settings table, however the formatter pads it.
    const documented = keys.filter((key) => new RegExp(`^\\|\\s*\`${key}\`\\s*\\|`, 'm').test(readme));
    expect(documented).toEqual(keys);
  });
});
