import { describe, expect, it } from 'vitest';
import { parseTraceparent, requestTrace } from '../../src/telemetry/trace-context.js';

const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('parseTraceparent (W3C Trace Context §3.2): what is not a traceparent', () => {
  it.each([
    ['absent', undefined],
    ['two headers (joined by node)', `${VALID}, ${VALID}`],
    ['a list', [VALID, VALID]],
    ['upper-case hex', VALID.toUpperCase()],
    ['an all-zero trace id', '00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
    ['an all-zero parent id', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
    ['version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['version 00 with more after it', `${VALID}-extra`],
    ['a short trace id', '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01'],
    ['a later version whose next field does not start with a dash', '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x'],
    ['non-hex', '00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01'],
    ['a CR LF inside', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7\r\n1'],
  ])('%s', (_name, value) => {
    expect(parseTraceparent(value as string | string[] | undefined)).toBeNull();
  });
});

describe('parseTraceparent: what is', () => {
  it('reads version 00, and a later version by its first four fields', () => {
    expect(parseTraceparent(VALID)).toEqual({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7', flags: '01' });
    expect(parseTraceparent('cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-comes-next')).toEqual({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      parentId: '00f067aa0ba902b7',
      flags: '09',
    });
  });
});

describe('requestTrace', () => {
  it('continues a valid trace (as version 00) with its tracestate, when trusted', () => {
    const trace = requestTrace({ traceparent: 'cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x', tracestate: 'vendor=abc' }, { trustIncoming: true, sampled: true });
    expect(trace).toEqual({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', traceparent: VALID, tracestate: 'vendor=abc' });
  });

  it('starts a new trace for an invalid one, or any when not trusted, and never keeps its tracestate', () => {
    for (const [headers, trustIncoming] of [
      [{ traceparent: 'garbage', tracestate: 'vendor=abc' }, true],
      [{ traceparent: VALID, tracestate: 'vendor=abc' }, false],
    ] as const) {
      const trace = requestTrace(headers, { trustIncoming, sampled: false });
      expect(trace.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      expect(trace.traceId).not.toBe('4bf92f3577b34da6a3ce929d0e0e4736');
      expect(trace.tracestate).toBeNull();
    }
  });

  it('drops a tracestate over 512 characters', () => {
    expect(requestTrace({ traceparent: VALID, tracestate: `a=${'x'.repeat(600)}` }, { trustIncoming: true, sampled: true }).tracestate).toBeNull();
  });

  it('gives every new trace its own ids, thousands of them', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const trace = requestTrace({}, { trustIncoming: true, sampled: true });
      expect(trace.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      ids.add(trace.traceId);
    }
    expect(ids.size).toBe(5000);
  });
});
