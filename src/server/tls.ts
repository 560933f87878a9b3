import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { IncomingMessage, ServerOptions, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { GatehouseConfig, ListenerConfig, ListenerTlsConfig } from '../config/types.js';

/**
 * Forward-secret AEAD suites only for TLS 1.2 (Mozilla "intermediate"); TLS 1.3 suites are
 * all AEAD and forward-secret.
 */
export const DEFAULT_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** `Strict-Transport-Security` for an HTTPS listener (default: one year, includeSubDomains). */
export function hstsHeader(tls: ListenerTlsConfig): [string, string][] {
  const hsts = tls.hsts ?? {};
  if (hsts.enabled === false) return [];
  let value = `max-age=${Math.floor((hsts.maxAge ?? 31_536_000_000) / 1000)}`;
  if (hsts.includeSubDomains !== false) value += '; includeSubDomains';
  if (hsts.preload) value += '; preload';
  return [['strict-transport-security', value]];
}

function readPem(file: string, baseDir: string): Buffer {
  return readFileSync(path.resolve(baseDir, file));
}

/** Create the HTTPS server for a listener with the secure defaults. */
export function createTlsServer(
  config: ListenerConfig,
  gateway: GatehouseConfig,
  serverOptions: ServerOptions,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  log: Logger,
): { server: https.Server; reload: () => Promise<boolean> } {
  const tls = config.tls!;
  const material = () => ({ cert: readPem(tls.cert, gateway.baseDir), key: readPem(tls.key, gateway.baseDir) });
  const server = https.createServer(
    {
      ...serverOptions,
      ...material(),
      minVersion: tls.minVersion ?? 'TLSv1.2',
      ciphers: tls.ciphers ?? DEFAULT_CIPHERS,
      honorCipherOrder: true,
      ...(tls.clientCa ? { ca: readPem(tls.clientCa, gateway.baseDir) } : {}),
      requestCert: tls.requestCert === true || tls.requestCert === 'optional' || tls.requestCert === 'required',
      rejectUnauthorized: tls.requestCert === true || tls.requestCert === 'required',
    },
    handler,
  );
  return {
    server,
    async reload() {
      try {
        server.setSecureContext({
          ...material(),
          minVersion: tls.minVersion ?? 'TLSv1.2',
          ciphers: tls.ciphers ?? DEFAULT_CIPHERS,
          honorCipherOrder: true,
        });
        log.info({ listener: config.name }, 'certificates reloaded');
        return true;
      } catch (err) {
        log.error({ listener: config.name, err }, 'certificate reload failed; keeping the previous certificate');
        return false;
      }
    },
  };
}
