import { writeFile } from 'node:fs/promises';
import { renderProtocol } from '../docs/protocol-doc.ts';

await writeFile('docs/PROTOCOL.md', renderProtocol());
process.stdout.write('wrote docs/PROTOCOL.md\n');
