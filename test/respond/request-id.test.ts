import { describe, expect, it } from 'vitest';
import { nextRequestId, requestIds } from '../../src/respond/request-id.js';

// Request ids gatehouse makes must be unique (logs are joined on them) and keep the UUID shape
// clients and log pipelines expect, without a random draw per request (issue 8).

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('request ids', () => {
  it('are UUID-shaped (version 4, RFC 4122 variant) and all distinct', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100_000; i++) {
      const id = nextRequestId();
      expect(id).toMatch(UUID_V4);
      seen.add(id);
    }
    expect(seen.size).toBe(100_000);
  });

  it('count in the last 48 bits of one random prefix', () => {
    const next = requestIds();
    const a = next();
    const b = next();
    expect(a.slice(0, 24)).toBe(b.slice(0, 24));
    expect(parseInt(b.slice(24), 16)).toBe(parseInt(a.slice(24), 16) + 1);
  });

  it('take a fresh random prefix when the counter runs out', () => {
    const next = requestIds(3);
    const first = [next(), next(), next()];
    const fourth = next();
    expect(new Set(first.map((id) => id.slice(0, 24))).size).toBe(1);
    expect(fourth.slice(0, 24)).not.toBe(first[0]!.slice(0, 24));
    expect(fourth.slice(24)).toBe('000000000000');
    expect(fourth).toMatch(UUID_V4);
  });

  it('differ between two sources (two workers never share a prefix)', () => {
    expect(requestIds()().slice(0, 24)).not.toBe(requestIds()().slice(0, 24));
  });
});
