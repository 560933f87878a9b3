import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { configSchema } from '../../src/config/schema/index.js';

describe('published JSON Schema', () => {
  it('is the schema gatehouse validates with (run `npm run schema` after changing src/config/schema)', () => {
    const published = JSON.parse(readFileSync('schema/gatehouse.schema.json', 'utf8'));
    expect(published).toEqual(JSON.parse(JSON.stringify(configSchema)));
  });

  it('validates the demo and example configs for editors too', () => {
    const ajv = new Ajv({ strict: false, allowUnionTypes: true });
    const validate = ajv.compile(JSON.parse(readFileSync('schema/gatehouse.schema.json', 'utf8')));
    const example = parse(readFileSync('examples/gatehouse.yaml', 'utf8'));
    expect(validate(example), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ ...example, unknownKey: 1 })).toBe(false);
  });
});
