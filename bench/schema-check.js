#!/usr/bin/env node
// Micro-benchmark: what a route's JSON checks cost per request or answer, in process, on the
// built code (dist/validate): the parse that every parser reads alike (UTF-8, one JSON value,
// no key twice, bounded depth) and the compiled schema, for a small and a larger document:
//   - requestBody: checkBody on an 89-byte order and a 2.7 KB one (90 order lines),
//   - responseBody: responseBodyProblem on the same documents as answers,
//   - JSON.parse alone, for scale.
// Prints checks/s and µs per check (one at a time, wall clock). Pins itself to core 0 when
// taskset exists.
//
//   npm run build && node bench/schema-check.js [--seconds 1]
import { parseArgs } from 'node:util';
import { importBuilt, pinSelfToCore0 } from './helpers.js';

const { values: opts } = parseArgs({ options: { seconds: { type: 'string', default: '1' } } });
const SECONDS = Number(opts.seconds);

pinSelfToCore0();
const { createBodyCheck, checkBody } = await importBuilt('schema-check', 'validate/request-body.js');
const { createResponseCheck, responseBodyProblem, responseValidator } = await importBuilt('schema-check', 'validate/response-body.js');

const ORDER = {
  type: 'object',
  properties: {
    id: { type: 'string', format: 'uuid' },
    item: { type: 'string', minLength: 1, maxLength: 200 },
    quantity: { type: 'integer', minimum: 1, maximum: 1000 },
    note: { type: ['string', 'null'], maxLength: 500 },
    lines: { type: 'array', maxItems: 100, items: { type: 'object', properties: { sku: { type: 'string' }, qty: { type: 'integer' } }, required: ['sku', 'qty'], additionalProperties: false } },
  },
  required: ['item', 'quantity'],
  additionalProperties: false,
};
const small = Buffer.from(JSON.stringify({ id: '3f1c1a52-8f0e-4f3e-9a51-6a1d1c2b3e4f', item: 'green tea', quantity: 2, note: null }));
const lines = Array.from({ length: 90 }, (_, i) => ({ sku: `SKU-${1000 + i}`, qty: (i % 7) + 1 }));
const large = Buffer.from(JSON.stringify({ id: '3f1c1a52-8f0e-4f3e-9a51-6a1d1c2b3e4f', item: 'green tea', quantity: 2, note: 'x'.repeat(200), lines }));

const body = createBodyCheck({ schema: ORDER, readOnly: 'refuse', methods: ['POST'], required: true, maxDepth: 32 });
const answers = createResponseCheck({ schemas: { '200': { schema: ORDER } }, unlisted: 'pass', maxSize: 1 << 20, maxDepth: 64, writeOnly: 'refuse', onInvalid: 'refuse' });
const validate = responseValidator(answers, 200);

function measure(name, bytes, fn) {
  for (let i = 0; i < 2000; i++) fn(bytes); // warm up
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(SECONDS * 1e9));
  let now = start;
  while (now < end) {
    for (let i = 0; i < 200; i++) fn(bytes);
    n += 200;
    now = process.hrtime.bigint();
  }
  const us = Number(now - start) / 1e3 / n;
  process.stdout.write(`${name.padEnd(44)} ${String(bytes.length).padStart(6)} B  ${Math.round(1e6 / us).toLocaleString('en-US').padStart(10)} /s  ${us.toFixed(2).padStart(7)} µs\n`);
}

if (checkBody(body, small) !== null || checkBody(body, large) !== null) throw new Error('the documents must pass');
if (responseBodyProblem(answers, validate, small) !== null || responseBodyProblem(answers, validate, large) !== null) throw new Error('the answers must pass');
process.stdout.write(`schema-check: node ${process.version}, ${SECONDS}s per row\n`);
for (const [label, bytes] of [['small', small], ['large', large]]) {
  measure(`JSON.parse alone (${label})`, bytes, (b) => JSON.parse(b.toString('utf8')));
  measure(`requestBody: checkBody (${label})`, bytes, (b) => checkBody(body, b));
  measure(`responseBody: responseBodyProblem (${label})`, bytes, (b) => responseBodyProblem(answers, validate, b));
}
