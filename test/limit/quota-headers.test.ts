import { describe, expect, it } from 'vitest';
import { policyItem, serviceLimitItem } from '../../src/limit/headers.js';
import { CalendarPeriod, createMemoryQuota } from '../../src/limit/quota.js';

describe('CalendarPeriod', () => {
  it('finds the UTC day', () => {
    const p = new CalendarPeriod('day').update(Date.UTC(2026, 11, 4, 17, 30));
    expect([p.start, p.end, p.label, p.seconds]).toEqual([Date.UTC(2026, 11, 4), Date.UTC(2026, 11, 5), '2026-12-04', 86_400]);
  });

  it('finds the UTC month, including February and December', () => {
    const p = new CalendarPeriod('month').update(Date.UTC(2028, 1, 29, 23, 59));
    expect([p.start, p.end, p.label]).toEqual([Date.UTC(2028, 1, 1), Date.UTC(2028, 2, 1), '2028-02']);
    p.update(Date.UTC(2026, 11, 31, 23, 59, 59, 999));
    expect([p.start, p.end, p.label]).toEqual([Date.UTC(2026, 11, 1), Date.UTC(2027, 0, 1), '2026-12']);
  });
});

describe('quota in memory (frozen clock)', () => {
  it('admits `limit` per UTC day, refuses beyond without counting, and resets at midnight UTC', () => {
    let now = Date.UTC(2026, 11, 4, 23, 0);
    const quota = createMemoryQuota({ name: 'daily', limit: 2, period: 'day' }, { now: () => now });
    expect(quota.consume('c')).toMatchObject({ allowed: true, remaining: 1 });
    expect(quota.consume('c')).toMatchObject({ allowed: true, remaining: 0 });
    const refused = quota.consume('c');
    expect(refused).toMatchObject({ allowed: false, remaining: 0, retryAfter: 3600_000, window: 3600_000 });
    expect(quota.consume('other').allowed).toBe(true);
    now = Date.UTC(2026, 11, 4, 23, 59, 59, 999);
    expect(quota.consume('c').allowed).toBe(false);
    now = Date.UTC(2026, 11, 5);
    expect(quota.consume('c')).toMatchObject({ allowed: true, remaining: 1 });
  });

  it('a refund gives one unit back, never below zero', () => {
    const now = Date.UTC(2026, 0, 1);
    const quota = createMemoryQuota({ name: 'm', limit: 1, period: 'month' }, { now: () => now });
    expect(quota.consume('c').allowed).toBe(true);
    quota.refund('c');
    quota.refund('c');
    expect(quota.consume('c').allowed).toBe(true);
    expect(quota.consume('c').allowed).toBe(false);
  });
});

describe('RateLimit headers (draft-ietf-httpapi-ratelimit-headers)', () => {
  it('formats quota-policy items', () => {
    expect(policyItem('per-client', 100, 60_000)).toBe('"per-client";q=100;w=60');
    expect(policyItem('fast', 5, 500)).toBe('"fast";q=10;w=1');
    expect(policyItem('odd', 7, 1500)).toBe('"odd";q=9;w=2');
  });

  it('formats service-limit items with t rounded up to whole seconds', () => {
    expect(serviceLimitItem('p', 42, 600)).toBe('"p";r=42;t=1');
    expect(serviceLimitItem('p', 0, 2000)).toBe('"p";r=0;t=2');
    expect(serviceLimitItem('p', 0, 2000.4)).toBe('"p";r=0;t=3');
    expect(serviceLimitItem('p', -1, 0)).toBe('"p";r=0;t=0');
  });
});
