import { pino, type Logger, type DestinationStream } from 'pino';

/** Header and field names whose values never reach a log line. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'clientSecret',
  'client_secret',
];

/**
 * The gateway's logger: JSON lines, tokens and cookies redacted.
 *
 * @example
 * ```ts
 * const log = createLogger({ level: 'info' });
 * log.child({ req_id: 'abc', route: 'orders' }).info({ granted: false, reason: 'GH_ERR_JWT_EXPIRED' }, 'denied');
 * ```
 */
export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'gatehouse' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
