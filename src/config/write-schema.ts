import { writeFileSync } from 'node:fs';
import { configSchema } from './schema/index.js';

/** `npm run schema`: writes schema/gatehouse.schema.json from the schema in code. */
const target = new URL('../../schema/gatehouse.schema.json', import.meta.url);
writeFileSync(target, `${JSON.stringify(configSchema, null, 2)}\n`);
process.stdout.write(`wrote ${target.pathname}\n`);
