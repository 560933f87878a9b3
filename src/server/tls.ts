/**
 * HTTPS listeners: secure defaults (TLS 1.2+, forward-secret AEAD suites), HTTP/2 through ALPN
 * with HTTP/1.1 fallback on the same port, HTTP/2 abuse protections, client certificates, and
 * certificate reload without dropping connections (issue 4, docs/tls.md).
 */
import { X509Certificate } from 'node:crypto';
import http2, { type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import https from 'node:https';
import path from 'node:path';
import tls, { type SecureContextOptions, type TLSSocket } from 'node:tls';
import type { Counter, Gauge } from 'prom-client';
import type { IncomingMessage, ServerOptions, ServerResponse } from 'node:http';
import { configIssue } from '../config/issue.js';
import { certificateIn, checkCertificatePair, privateKeyIn, readTlsFile } from './pem.js';
import type { Logger } from 'pino';
import type { GatehouseConfig, ListenerConfig, ListenerTlsConfig } from '../config/types.js';
import { ConfigError, RequestRejected, type ConfigIssue } from '../errors.js';
import { abortResponse, OWN_RESET, sendProblem } from '../respond/problem.js';
import { nextRequestId } from '../respond/request-id.js';
import type { Metrics } from '../telemetry/metrics.js';
import { watchCertificateFiles, type CertificateWatcher } from './cert-watch.js';
import { requestHost } from '../route/host.js';
import { hostKey } from '../route/hosts.js';

/**
 * Forward-secret AEAD suites only for TLS 1.2 (Mozilla "intermediate"); TLS 1.3 suites are
 * all AEAD and forward-secret. ECDSA first: smaller, faster handshakes.
 *
 * @example
 * ```ts
 * https.createServer({ cert, key, ciphers: DEFAULT_CIPHERS, minVersion: 'TLSv1.2', honorCipherOrder: true });
 * ```
 */
export const DEFAULT_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * Key-exchange groups offered (Mozilla "intermediate"): X25519 first, then the NIST curves.
 *
 * @example
 * ```ts
 * tls.createSecureContext({ cert, key, ecdhCurve: DEFAULT_ECDH_CURVES });
 * ```
 */
export const DEFAULT_ECDH_CURVES = 'X25519:P-256:P-384';

/**
 * HTTP/2 protections applied when a listener sets nothing (`listen[].http2`).
 *
 * @example
 * ```ts
 * const maxStreams = listener.http2?.maxConcurrentStreams ?? DEFAULT_HTTP2.maxConcurrentStreams;
 * ```
 */
export const DEFAULT_HTTP2 = {
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients (RFC 9113 §6.5.2). */
  maxConcurrentStreams: 100,
  /** Reset streams (either direction) per session per second before the session is cut off (CVE-2023-44487). */
  maxResetsPerSecond: 200,
} as const;

/**
 * A certificate with fewer days left than this is logged at `warn` (start, reload, every 12 h).
 *
 * @example
 * ```ts
 * if (daysLeft < EXPIRY_WARNING_DAYS) renew();
 * ```
 */
export const EXPIRY_WARNING_DAYS = 14;

/**
 * Reload settings when `tls.reload` sets nothing: watch the files, 250 ms debounce.
 *
 * @example
 * ```ts
 * const debounce = tls.reload?.debounce ?? DEFAULT_RELOAD.debounce;
 * ```
 */
export const DEFAULT_RELOAD = { watch: true, debounce: 250 } as const;

/**
 * `Strict-Transport-Security` for an HTTPS listener (default: one year, includeSubDomains);
 * none when `hsts.enabled` is false. Never used on plain listeners (RFC 6797 §7.2).
 *
 * @example
 * ```ts
 * hstsHeader({ cert: 'c.pem', key: 'k.pem' }); // [['strict-transport-security', 'max-age=31536000; includeSubDomains']]
 * ```
 */
export function hstsHeader(tls: ListenerTlsConfig): [string, string][] {
  const hsts = tls.hsts ?? {};
  if (hsts.enabled === false) return [];
  let value = `max-age=${Math.floor((hsts.maxAge ?? 31_536_000_000) / 1000)}`;
  if (hsts.includeSubDomains !== false) value += '; includeSubDomains';
  if (hsts.preload) value += '; preload';
  return [['strict-transport-security', value]];
}

/**
 * What a loaded certificate looks like in logs and to tests.
 *
 * @example
 * ```ts
 * const { serialNumber, notAfter } = listener.certificate!();
 * ```
 */
export interface CertificateInfo {
  /** Hex serial, uppercase (as `getPeerCertificate().serialNumber`). */
  readonly serialNumber: string;
  readonly subject: string;
  readonly notAfter: string;
  readonly fingerprint256: string;
}

/**
 * A certificate and key read from disk, checked to belong together and to be valid now.
 *
 * @example
 * ```ts
 * const material: CertificateMaterial = loadCertificateMaterial(listener.tls, config.baseDir);
 * ```
 */
export interface CertificateMaterial extends CertificateInfo {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Client-certificate CA bundle, when the listener verifies client certificates. */
  readonly clientCa: Buffer | undefined;
}

/**
 * Read and check a listener's certificate files. Throws an Error whose message says what is
 * wrong (unreadable, not PEM, key does not match, expired, not yet valid).
 *
 * @example
 * ```ts
 * const material = loadCertificateMaterial({ cert: 'cert.pem', key: 'key.pem' }, '/etc/gatehouse');
 * console.log(material.serialNumber, material.notAfter);
 * ```
 */
export function loadCertificateMaterial(config: ListenerTlsConfig, baseDir: string, now = Date.now()): CertificateMaterial {
  const cert = readTlsFile(config.cert, baseDir, 'certificate');
  const key = readTlsFile(config.key, baseDir, 'key');
  const clientCa = config.clientCa ? readTlsFile(config.clientCa, baseDir, 'client CA') : undefined;
  const x509 = certificateIn(cert, config.cert);
  checkCertificatePair(x509, privateKeyIn(key, config.key), config.cert, config.key, now);
  if (clientCa) certificateIn(clientCa, config.clientCa!, 'client CA');
  return {
    cert,
    key,
    clientCa,
    serialNumber: x509.serialNumber.toUpperCase(),
    subject: x509.subject,
    notAfter: x509.validTo,
    fingerprint256: x509.fingerprint256,
  };
}

/**
 * The options every secure context of a listener is built with (start and reload alike), so a
 * reload can never drop a setting such as the client CA.
 *
 * @example
 * ```ts
 * server.setSecureContext(secureContextOptions(listener.tls, loadCertificateMaterial(listener.tls, baseDir)));
 * ```
 */
export function secureContextOptions(config: ListenerTlsConfig, material: CertificateMaterial): SecureContextOptions {
  return {
    cert: material.cert,
    key: material.key,
    minVersion: config.minVersion ?? 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    ciphers: config.ciphers ?? DEFAULT_CIPHERS,
    ecdhCurve: DEFAULT_ECDH_CURVES,
    honorCipherOrder: true,
    ...(material.clientCa ? { ca: material.clientCa } : {}),
  };
}

/**
 * `requestCert` / `rejectUnauthorized` for a listener: a `clientCa` alone means required.
 *
 * @example
 * ```ts
 * clientCertificateMode({ cert: 'c.pem', key: 'k.pem', clientCa: 'ca.pem' }); // 'required'
 * clientCertificateMode({ cert: 'c.pem', key: 'k.pem', clientCa: 'ca.pem', requestCert: 'optional' }); // 'optional'
 * ```
 */
export function clientCertificateMode(config: ListenerTlsConfig): 'off' | 'optional' | 'required' {
  const r = config.requestCert;
  if (r === 'optional') return 'optional';
  if (r === true || r === 'required') return 'required';
  if (r === false) return 'off';
  return config.clientCa ? 'required' : 'off';
}

/**
 * Check every HTTPS listener's certificate material as a start would (files readable, key
 * matches, valid now, SNI entries, `clientCa` present when client certificates are asked for),
 * without binding anything. `gatehouse validate` reports these with the schema problems.
 *
 * @example
 * ```ts
 * const issues = checkListenerTls(loadConfigFile('gatehouse.yaml'));
 * if (issues.length > 0) throw new ConfigError(issues);
 * ```
 */
export function checkListenerTls(gateway: GatehouseConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  gateway.listen.forEach((listener, i) => {
    if (listener.tls) {
      const loaded = loadListenerCertificates(listener.tls, gateway, `listen[${i}].tls`);
      if (!('set' in loaded)) issues.push(loaded.issue);
    }
  });
  return issues;
}

/** `listen[0].tls.sni[1]` as the key path `['listen', 0, 'tls', 'sni', 1]`. */
function keyPathOf(path: string): (string | number)[] {
  return path.split(/\.|(?=\[)/).map((part) => (part.startsWith('[') ? Number(part.slice(1, -1)) : part));
}

/** A listener's certificates as a start loads them, or the one config issue that stops it. */
function loadListenerCertificates(tlsConfig: ListenerTlsConfig, gateway: GatehouseConfig, where: string): { set: CertificateSet } | { issue: ConfigIssue } {
  const issue = (path: string, message: string): { issue: ConfigIssue } => ({ issue: configIssue(gateway, keyPathOf(path), message) });
  let set: CertificateSet;
  try {
    set = loadCertificateSet(tlsConfig, gateway.baseDir);
  } catch (err) {
    const e = err as Error & { entry?: string };
    return issue(where + (e.entry ?? ''), e.message);
  }
  if (clientCertificateMode(tlsConfig) !== 'off' && !set.main.clientCa) return issue(`${where}.clientCa`, 'is required to verify client certificates (requestCert)');
  return { set };
}

/**
 * An HTTPS listener's server and its certificate controls.
 *
 * @example
 * ```ts
 * const secure: TlsServer = createTlsServer(listener, config, {}, handler, log);
 * process.on('SIGHUP', () => void secure.reload());
 * ```
 */
export interface TlsServer {
  /** `Http2SecureServer` (h2 + http/1.1) or `https.Server` when `tls.http2: false`. */
  readonly server: tls.Server;
  /** Re-read the certificate files; resolves false (and keeps the old one) when they are broken. */
  reload(): Promise<boolean>;
  /** The certificate served to new handshakes right now. */
  certificate(): CertificateInfo;
  /** Stop watching the files. */
  close(): void;
  /**
   * With `tls.sni`: why a request is not for this connection (RFC 9110 §15.5.20, 421) — its host
   * would get another of the listener's certificates than the name the client's handshake sent —
   * or null. Null itself for a listener with one certificate (any host gets that one).
   */
  readonly misdirected: ((req: IncomingMessage) => string | null) | null;
}

/**
 * Create the HTTPS server of a listener with the secure defaults. With `tls.http2` (default)
 * it is an `http2.createSecureServer({ allowHTTP1: true })`: ALPN picks h2, or http/1.1 for
 * clients that do not offer it; both end in the same request handler. Throws a ConfigError
 * when the certificate files are unusable.
 *
 * @example
 * ```ts
 * const { server, reload } = createTlsServer(listenerConfig, config, { maxHeaderSize: 16384 }, handler, log);
 * server.listen(8443);
 * process.on('SIGHUP', () => void reload());
 * ```
 */
export function createTlsServer(
  config: ListenerConfig,
  gateway: GatehouseConfig,
  serverOptions: ServerOptions,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  log: Logger,
  metrics?: Metrics,
): TlsServer {
  const tlsConfig = config.tls!;
  const meters = metrics ? tlsMeters(metrics) : null;
  const index = gateway.listen.indexOf(config);
  const where = `listen${index >= 0 ? `[${index}]` : ''}.tls`;
  const loaded = loadListenerCertificates(tlsConfig, gateway, where);
  if (!('set' in loaded)) throw new ConfigError([loaded.issue]);
  let set = loaded.set;
  const mode = clientCertificateMode(tlsConfig);
  const options: tls.TlsOptions = {
    ...secureContextOptions(tlsConfig, set.main),
    requestCert: mode !== 'off',
    // 'optional': the handshake succeeds without a (valid) certificate; only a verified one
    // reaches later stages (run.ts checks `socket.authorized`).
    rejectUnauthorized: mode === 'required',
    // A client that connects and never completes the handshake holds a socket: same bound as
    // for the request headers (Node's default is 120 s).
    handshakeTimeout: gateway.limits.headersTimeout,
    // Per handshake: two map lookups; no match (or no SNI) = the default certificate.
    ...(tlsConfig.sni && tlsConfig.sni.length > 0 ? { SNICallback: (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => cb(null, selectContext(set.table!, servername)) } : {}),
  };

  let server: tls.Server;
  if (tlsConfig.http2 !== false) {
    server = createHttp2Server(config, gateway, serverOptions, options, handler, log, meters);
  } else {
    server = https.createServer({ ...serverOptions, ...options }, handler);
  }
  // Client-initiated renegotiation is a CPU-exhaustion lever (and forbidden under h2, RFC
  // 9113 §9.2.1); gatehouse never needs it.
  server.on('secureConnection', disableRenegotiation);
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    // Scanners and old clients land here: debug, not a warning per probe.
    log.debug({ listener: config.name, reason: err.code ?? err.message, client_ip: socket.remoteAddress }, 'TLS handshake refused');
    meters?.handshakeFailures.inc({ listener: config.name, reason: err.code ?? 'unknown' });
  });
  log.info(
    { listener: config.name, serial: set.main.serialNumber, subject: set.main.subject, notAfter: set.main.notAfter, sni: set.sni.map((e) => e.hosts.join(' ')), http2: tlsConfig.http2 !== false, clientCertificates: mode },
    'certificate loaded',
  );
  if (tlsConfig.ciphers) {
    const outside = ciphersOutsideProfile(tlsConfig.ciphers);
    if (outside.length > 0) {
      log.warn({ listener: config.name, ciphers: outside }, 'tls.ciphers enables suites without forward secrecy or AEAD (or keywords that expand to them); see docs/tls.md');
    }
  }
  // Expiry is an outage announced weeks ahead: say so at start, after each reload and twice a day.
  const checkExpiry = () => {
    if (meters) {
      meters.notAfter.set({ listener: config.name, certificate: 'default' }, Math.floor(Date.parse(set.main.notAfter) / 1000));
      set.sni.forEach((e, i) => meters.notAfter.set({ listener: config.name, certificate: `sni[${i}]` }, Math.floor(Date.parse(e.material.notAfter) / 1000)));
    }
    for (const m of [set.main, ...set.sni.map((e) => e.material)]) {
      const days = Math.floor((Date.parse(m.notAfter) - Date.now()) / 86_400_000);
      if (days < EXPIRY_WARNING_DAYS) log.warn({ listener: config.name, serial: m.serialNumber, subject: m.subject, notAfter: m.notAfter, days }, 'certificate expires soon');
    }
  };
  checkExpiry();
  const expiryTimer = setInterval(checkExpiry, 12 * 3_600_000);
  expiryTimer.unref();

  let reloading: Promise<boolean> = Promise.resolve(true);
  const reloadNow = (): boolean => {
    let next: CertificateSet;
    try {
      // All or nothing: one broken file keeps every certificate of the listener as it was.
      next = loadCertificateSet(tlsConfig, gateway.baseDir);
      if (sameSet(next, set)) return true;
      // Existing connections keep the context they were established with; new handshakes get this one.
      server.setSecureContext(secureContextOptions(tlsConfig, next.main));
    } catch (err) {
      const e = err as Error & { entry?: string };
      log.error({ listener: config.name, reason: (e.entry ? `${e.entry.slice(1)}: ` : '') + e.message, serial: set.main.serialNumber }, 'certificate reload failed; keeping the previous certificate');
      meters?.reloads.inc({ listener: config.name, result: 'failed' });
      return false;
    }
    const previous = set.main.serialNumber;
    set = next;
    log.info({ listener: config.name, serial: next.main.serialNumber, previous, subject: next.main.subject, notAfter: next.main.notAfter, sni: next.sni.map((e) => e.material.serialNumber) }, 'certificate reloaded');
    meters?.reloads.inc({ listener: config.name, result: 'ok' });
    checkExpiry();
    return true;
  };
  const reload = (): Promise<boolean> => (reloading = reloading.then(reloadNow, reloadNow));

  let watcher: CertificateWatcher | null = null;
  if ((tlsConfig.reload?.watch ?? DEFAULT_RELOAD.watch) !== false) {
    const files = [tlsConfig.cert, tlsConfig.key, ...(tlsConfig.clientCa ? [tlsConfig.clientCa] : []), ...(tlsConfig.sni ?? []).flatMap((e) => [e.cert, e.key])].map((f) =>
      path.resolve(gateway.baseDir, f),
    );
    watcher = watchCertificateFiles(files, () => void reload(), {
      debounce: tlsConfig.reload?.debounce ?? DEFAULT_RELOAD.debounce,
      onError: (err) => log.warn({ listener: config.name, err }, 'cannot watch the certificate files; reload with SIGHUP'),
    });
  }
  const misdirected =
    tlsConfig.sni && tlsConfig.sni.length > 0
      ? function misdirected(req: IncomingMessage): string | null {
          const servername = (req.socket as TLSSocket).servername;
          // No SNI (a client that connected to an IP address): the default certificate, any host.
          if (typeof servername !== 'string' || servername === '') return null;
          const host = hostKey(requestHost(req.headers));
          if (host === '' || host === servername.toLowerCase()) return null;
          const table = set.table!;
          return selectContext(table, host) === selectContext(table, servername) ? null : `host ${host} on a connection whose handshake named ${servername} (another certificate)`;
        }
      : null;
  return {
    server,
    reload,
    misdirected,
    certificate: () => ({ serialNumber: set.main.serialNumber, subject: set.main.subject, notAfter: set.main.notAfter, fingerprint256: set.main.fingerprint256 }),
    close() {
      watcher?.close();
      watcher = null;
      clearInterval(expiryTimer);
    },
  };
}

/** The TLS listener's Prometheus series (labels: listener name, bounded reason codes). */
interface TlsMeters {
  readonly notAfter: Gauge<string>;
  readonly reloads: Counter<string>;
  readonly handshakeFailures: Counter<string>;
  readonly rapidResets: Counter<string>;
}

function tlsMeters(metrics: Metrics): TlsMeters {
  return {
    notAfter: metrics.gauge('gatehouse_tls_certificate_not_after_seconds', 'Expiry (Unix time) of each listener certificate.', ['listener', 'certificate'], 'min'),
    reloads: metrics.counter('gatehouse_tls_certificate_reloads_total', 'Certificate reloads by listener and result (ok, failed).', ['listener', 'result']),
    handshakeFailures: metrics.counter('gatehouse_tls_handshake_failures_total', 'TLS handshakes refused, by listener and OpenSSL/Node reason code.', ['listener', 'reason']),
    rapidResets: metrics.counter('gatehouse_http2_rapid_reset_total', 'HTTP/2 connections closed for resetting too many streams (CVE-2023-44487).', ['listener']),
  };
}

// ---------------------------------------------------------------------------------------------
// SNI

interface SniTable {
  readonly exact: Map<string, tls.SecureContext>;
  /** `example.com` for `*.example.com`. */
  readonly wildcard: Map<string, tls.SecureContext>;
}

interface CertificateSet {
  readonly main: CertificateMaterial;
  readonly sni: { hosts: string[]; material: CertificateMaterial }[];
  /** null without `tls.sni`. */
  readonly table: SniTable | null;
}

/** Load the default certificate and every SNI one, and build their contexts (throws on the first problem, naming the entry). */
function loadCertificateSet(config: ListenerTlsConfig, baseDir: string): CertificateSet {
  const main = loadCertificateMaterial(config, baseDir);
  tls.createSecureContext(secureContextOptions(config, main));
  const entries = config.sni ?? [];
  if (entries.length === 0) return { main, sni: [], table: null };
  const table: SniTable = { exact: new Map(), wildcard: new Map() };
  const sni: CertificateSet['sni'] = [];
  entries.forEach((entry, i) => {
    try {
      const material = loadCertificateMaterial({ ...config, cert: entry.cert, key: entry.key }, baseDir);
      const hosts = (entry.hosts ?? dnsNames(material.cert)).map((h) => h.toLowerCase());
      if (hosts.length === 0) throw new Error(`certificate ${entry.cert} names no DNS host: set hosts`);
      const context = tls.createSecureContext(secureContextOptions(config, material));
      for (const host of hosts) {
        if (host.startsWith('*.')) table.wildcard.set(host.slice(2), context);
        else table.exact.set(host, context);
      }
      sni.push({ hosts, material });
    } catch (err) {
      throw Object.assign(err as Error, { entry: `.sni[${i}]` });
    }
  });
  return { main, sni, table };
}

function dnsNames(cert: Buffer): string[] {
  const san = new X509Certificate(cert).subjectAltName ?? '';
  const out: string[] = [];
  for (const part of san.split(', ')) if (part.startsWith('DNS:')) out.push(part.slice(4));
  return out;
}

/** Exact name first, then a wildcard for the parent domain (one label, RFC 6125 §6.4.3). */
function selectContext(table: SniTable, servername: string): tls.SecureContext | undefined {
  const name = servername.toLowerCase();
  const exact = table.exact.get(name);
  if (exact !== undefined) return exact;
  const dot = name.indexOf('.');
  return dot > 0 ? table.wildcard.get(name.slice(dot + 1)) : undefined;
}

function sameSet(a: CertificateSet, b: CertificateSet): boolean {
  if (!sameMaterial(a.main, b.main) || a.sni.length !== b.sni.length) return false;
  for (let i = 0; i < a.sni.length; i++) if (!sameMaterial(a.sni[i]!.material, b.sni[i]!.material)) return false;
  return true;
}

function sameMaterial(a: CertificateMaterial, b: CertificateMaterial): boolean {
  return a.cert.equals(b.cert) && a.key.equals(b.key) && sameBuffer(a.clientCa, b.clientCa);
}

const PROFILE_SUITE = /^(?:ECDHE-(?:ECDSA|RSA)-(?:AES(?:128|256)-GCM-SHA(?:256|384)|CHACHA20-POLY1305)|TLS_(?:AES_(?:128|256)_GCM_SHA(?:256|384)|CHACHA20_POLY1305_SHA256))$/;

/**
 * The entries of an OpenSSL cipher string that are not forward-secret AEAD suites: plain suite
 * names outside the profile, and keywords (`HIGH`, `DEFAULT`, `ALL`, …) that expand to such
 * suites. Exclusions (`!`, `-`) and `@SECLEVEL`/`@STRENGTH` are fine.
 *
 * @example
 * ```ts
 * ciphersOutsideProfile('ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA'); // ['AES128-SHA']
 * ```
 */
export function ciphersOutsideProfile(ciphers: string): string[] {
  const out: string[] = [];
  for (const raw of ciphers.split(/[:, ]+/)) {
    const entry = raw.trim();
    if (entry === '' || entry.startsWith('!') || entry.startsWith('-') || entry.startsWith('@')) continue;
    const name = entry.replace(/^\+/, '');
    if (!PROFILE_SUITE.test(name)) out.push(entry);
  }
  return out;
}

function disableRenegotiation(socket: TLSSocket): void {
  socket.disableRenegotiation();
}

function sameBuffer(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.equals(b));
}

// ---------------------------------------------------------------------------------------------
// HTTP/2

const GUARD = Symbol('gatehouse.h2guard');
const OWNER = Symbol('gatehouse.h2session');

interface SessionState {
  readonly guard: SessionGuard;
  resets: number;
  windowStart: number;
  open: number;
  cut: boolean;
}
type GuardedSession = ServerHttp2Session & { [GUARD]: SessionState };
type OwnedStream = ServerHttp2Stream & { [OWNER]: GuardedSession; [OWN_RESET]?: true };

interface SessionGuard {
  readonly listener: string;
  readonly maxResets: number;
  readonly log: Logger;
  readonly meters: TlsMeters | null;
}

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR } = http2.constants;
const RAPID_RESET = Object.assign(new Error('http2 session closed: too many reset streams'), { code: 'GH_ERR_HTTP2_RAPID_RESET' });

function createHttp2Server(
  config: ListenerConfig,
  gateway: GatehouseConfig,
  serverOptions: ServerOptions,
  tlsOptions: tls.TlsOptions,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  log: Logger,
  meters: TlsMeters | null,
): Http2SecureServer {
  const limits = gateway.limits;
  const h2 = config.http2 ?? {};
  const maxHeaderList = h2.maxHeaderListSize ?? limits.maxHeaderSize;
  const hsts = hstsHeader(config.tls!);
  const requestTimeout = limits.requestTimeout;
  const guarded = (req: IncomingMessage, res: ServerResponse) => {
    if (req.httpVersionMajor === 2) {
      const raw = req.rawHeaders;
      // nghttp2 applies SETTINGS_MAX_HEADER_LIST_SIZE only once the client acknowledged it; a
      // request sent before that is bounded by nghttp2's 64 KiB default. Check it here as
      // node:http does for HTTP/1.1: 431 problem+json, nothing routed.
      const size = headerListSize(raw);
      if (size > maxHeaderList) {
        log.info({ listener: config.name, reason: HEADERS_TOO_LARGE.code, client_ip: req.socket.remoteAddress, granted: false }, 'client error');
        sendProblem(res, HEADERS_TOO_LARGE, nextRequestId(), 'gatehouse', hsts, req.method);
        return;
      }
      // RFC 9113 §8.2.3: a client may split Cookie into several fields (browsers do, for
      // HPACK); an HTTP/1.1 upstream must get one. Rare: only then is rawHeaders rebuilt.
      const joined = joinCookies(raw);
      if (joined !== raw) Object.defineProperty(req, 'rawHeaders', { value: joined, configurable: true });
      // limits.requestTimeout for h2: the body must arrive in time, as node:http enforces for
      // HTTP/1.1 (408). Only streams that carry a body need a timer.
      if (requestTimeout > 0 && !(req as unknown as TimedRequest).stream.endAfterHeaders) {
        const timed = req as unknown as TimedRequest;
        timed[TIMER] = setTimeout(onRequestTimeout, requestTimeout, req, res, hsts);
        req.once('end', clearRequestTimer);
        req.once('close', clearRequestTimer);
      }
    }
    handler(req, res);
  };
  const server = http2.createSecureServer(
    {
      ...tlsOptions,
      allowHTTP1: true,
      settings: {
        maxConcurrentStreams: h2.maxConcurrentStreams ?? DEFAULT_HTTP2.maxConcurrentStreams,
        maxHeaderListSize: h2.maxHeaderListSize ?? limits.maxHeaderSize,
        enablePush: false,
      },
      // A header list larger than this is refused by nghttp2 (stream reset, ENHANCE_YOUR_CALM).
      maxHeaderSize: h2.maxHeaderListSize ?? limits.maxHeaderSize,
    } as http2.SecureServerOptions,
    guarded as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  );
  // The HTTP/1.1 fallback is node:http's connection handler running on this server: it reads
  // its limits from these properties (same values as a plain listener).
  const h1 = server as unknown as Record<string, unknown>;
  for (const key of ['maxHeaderSize', 'headersTimeout', 'requestTimeout', 'keepAliveTimeout', 'connectionsCheckingInterval', 'requireHostHeader', 'joinDuplicateHeaders'] as const) {
    if (serverOptions[key] !== undefined) h1[key] = serverOptions[key];
  }

  const guard: SessionGuard = { listener: config.name, maxResets: h2.maxResetsPerSecond ?? DEFAULT_HTTP2.maxResetsPerSecond, log, meters };
  const idle = Math.max(1000, limits.keepAliveTimeout);
  const sessions = new Set<ServerHttp2Session>();
  const sockets = new Set<TLSSocket>();
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('session', (session: ServerHttp2Session) => {
    (session as GuardedSession)[GUARD] = { guard, resets: 0, windowStart: performance.now(), open: 0, cut: false };
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('stream', onStream);
    // Keep-alive for h2: a session without open streams that stays quiet is closed (GOAWAY).
    session.setTimeout(idle, onSessionIdle);
  });
  server.on('sessionError', (err: Error) => log.debug({ listener: config.name, err }, 'http2 session error'));

  // Graceful close for h2 sessions too: GOAWAY lets in-flight streams finish, refuses new ones.
  const closeHttp1Idle = (server as unknown as { closeIdleConnections?: () => void }).closeIdleConnections;
  Object.assign(server, {
    closeIdleConnections() {
      for (const s of sessions) if (!s.closed) s.close();
      closeHttp1Idle?.call(server);
    },
    closeAllConnections() {
      for (const s of sessions) s.destroy();
      for (const socket of sockets) socket.destroy();
    },
  });
  return server;
}

const HEADERS_TOO_LARGE = new RequestRejected('GH_ERR_REQUEST_HEADERS_TOO_LARGE', 431, 'the request headers are too large', { detail: 'http2 header list' });

const REQUEST_TIMEOUT = new RequestRejected('GH_ERR_REQUEST_TIMEOUT', 408, 'the request took too long to arrive', { detail: 'http2 request body' });
const TIMER = Symbol('gatehouse.h2timer');
type TimedRequest = { stream: { endAfterHeaders: boolean }; [TIMER]?: NodeJS.Timeout };

function onRequestTimeout(req: IncomingMessage, res: ServerResponse, hsts: [string, string][]): void {
  if (req.complete) return;
  // Answer 408 when nothing was sent yet; closing the response also aborts the upstream exchange.
  // Head already out (the upstream answered early): break the answer off, with an error code.
  if (!res.headersSent) sendProblem(res, REQUEST_TIMEOUT, nextRequestId(), 'gatehouse', hsts, req.method);
  else abortResponse(res);
}

function clearRequestTimer(this: TimedRequest): void {
  const timer = this[TIMER];
  if (timer !== undefined) {
    clearTimeout(timer);
    this[TIMER] = undefined;
  }
}

/** RFC 9113 §6.5.2: the size of a header list is name + value + 32 octets per field. */
function headerListSize(raw: readonly string[]): number {
  let size = 0;
  for (let i = 0; i < raw.length; i += 2) size += raw[i]!.length + raw[i + 1]!.length + 32;
  return size;
}

/**
 * The raw header list with all `cookie` fields joined into the first one with `; ` — or `raw`
 * itself when it has at most one (the usual case: nothing allocated). h2 field names are
 * lowercase (RFC 9113 §8.2.1).
 */
function joinCookies(raw: string[]): string[] {
  let first = -1;
  let i = 0;
  for (; i < raw.length; i += 2) {
    if (raw[i] !== 'cookie') continue;
    if (first >= 0) break;
    first = i;
  }
  if (i >= raw.length) return raw;
  const out = raw.slice(0, i);
  for (; i < raw.length; i += 2) {
    if (raw[i] === 'cookie') out[first + 1] += `; ${raw[i + 1]}`;
    else out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

// Hot path (one call per stream): module-level handlers, state on the session object.
function onStream(this: GuardedSession, stream: ServerHttp2Stream): void {
  this[GUARD].open++;
  (stream as OwnedStream)[OWNER] = this;
  stream.once('close', onStreamClose);
}

function onStreamClose(this: OwnedStream): void {
  const session = this[OWNER];
  const state = session[GUARD];
  state.open--;
  if (this.rstCode === undefined || this.rstCode === NGHTTP2_NO_ERROR || state.cut || this[OWN_RESET]) return;
  // Rapid reset (CVE-2023-44487): each reset stream costs the gateway a request while the
  // client pays nothing. Count resets in a one-second window; over the limit the session goes.
  // Resets gatehouse sends on its own account (abortResponse: an upstream that broke off, a
  // stalled reader) are not the client's doing; those nghttp2 sends (protocol errors) are.
  const now = performance.now();
  if (now - state.windowStart >= 1000) {
    state.windowStart = now;
    state.resets = 0;
  }
  if (++state.resets <= state.guard.maxResets) return;
  state.cut = true;
  state.guard.log.warn(
    { listener: state.guard.listener, client_ip: session.socket?.remoteAddress, resets: state.resets, reason: 'GH_ERR_HTTP2_RAPID_RESET' },
    'http2 client reset too many streams; session closed',
  );
  state.guard.meters?.rapidResets.inc({ listener: state.guard.listener });
  // Out of the stream's close callback, then GOAWAY (ENHANCE_YOUR_CALM tells the client why) and close.
  setImmediate(destroySession, session);
}

function destroySession(session: ServerHttp2Session): void {
  // An error is needed for the code to apply (destroy(undefined, code) sends NO_ERROR); it
  // surfaces as the server's 'sessionError', logged at debug.
  if (!session.destroyed) session.destroy(RAPID_RESET, NGHTTP2_ENHANCE_YOUR_CALM);
}

function onSessionIdle(this: GuardedSession): void {
  if (this[GUARD].open === 0 && !this.closed) this.close();
}
