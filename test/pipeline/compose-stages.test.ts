import { describe, expect, it } from 'vitest';
import { RequestRejected } from '../../src/errors.js';
import { composeStages, type RequestContext, type Stage } from '../../src/pipeline/context.js';

const ctx = {} as RequestContext;
const denial = new RequestRejected('GH_ERR_AUTHZ_ADDRESS_NOT_ALLOWED', 403, 'no');

describe('composeStages', () => {
  it('stays synchronous while every stage answers synchronously (no promise per request)', () => {
    const seen: string[] = [];
    const a: Stage = () => (seen.push('a'), null);
    const b: Stage = () => (seen.push('b'), null);
    expect(composeStages([a, b])!(ctx)).toBeNull();
    expect(seen).toEqual(['a', 'b']);
  });

  it('stops at the first denial, synchronous or not, and runs nothing after it', async () => {
    const after: Stage = () => {
      throw new Error('must not run');
    };
    expect(composeStages([() => denial, after])!(ctx)).toBe(denial);
    await expect(composeStages([async () => denial, after])!(ctx)).resolves.toBe(denial);
  });

  it('waits for a stage that returns a promise, then goes on with the next', async () => {
    const seen: string[] = [];
    const composed = composeStages([async () => (seen.push('a'), null), () => (seen.push('b'), null), () => (seen.push('c'), denial)])!;
    const result = composed(ctx);
    expect(result).toBeInstanceOf(Promise);
    await expect(result).resolves.toBe(denial);
    expect(seen).toEqual(['a', 'b', 'c']);
  });

  it('one stage is itself; none is null', () => {
    const only: Stage = () => null;
    expect(composeStages([only])).toBe(only);
    expect(composeStages([])).toBeNull();
  });
});
