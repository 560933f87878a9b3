// First: keeps process.nextTick on V8's fast path (see the module).
import '../boot/tick-shape.js';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';
import type { RouteConfig } from '../config/types.js';
import { ConfigError, formatConfigIssue } from '../errors.js';
import { applyMissingV8Flags } from '../boot/v8-flags.js';
import { logAutoWorkers } from './cpu-limit.js';
import { listenToPrimary } from './worker-control.js';

const HELP = `gatehouse — an API security gateway

Usage:
  gatehouse start    --config FILE [--workers N|auto]   run the gateway
  gatehouse validate --config FILE [--strict]           check a config file, report every problem,
                                                        and warn of settings that weaken it
                                                        (--strict: those warnings fail it too)
  gatehouse routes   --config FILE                      print the route table
  gatehouse token inspect --config FILE <token>         explain each check on a token
  gatehouse openapi FILE --upstream NAME [--issuer NAME] [--prefix /v1] [--responses refuse|log]
                                                        print exact routes for an OpenAPI 3.0/3.1
                                                        document's operations (scopes, public,
                                                        request bodies checked by its schemas;
                                                        --responses: answers too)
  gatehouse inventory FILE --config FILE [--upstream NAME] [--prefix /v1] [--strict]
                                                        compare the routes with an OpenAPI document:
                                                        what the gateway takes beyond it, operations
                                                        it checks less than the document asks, and
                                                        operations it does not route (--strict:
                                                        exit 4 on anything exposed)
  gatehouse demo                                        run the demo (gateway + authorization server + sample API)

Options:
  -c, --config FILE   the config file (YAML or JSON); default ./gatehouse.yaml
  -w, --workers N     worker processes (a number or "auto" = one per core, within a container's
                      CPU limit); default from the config, else auto. In-memory limits count
                      per worker (use store: redis)
  -h, --help          this help

Memory (start): every gateway process runs with V8's --heap-growing-percent=60 (a smaller heap
under load); a value on node's command line wins:
  node --heap-growing-percent=N $(which gatehouse) start …
Signals (start): SIGHUP reloads the config and certificates; SIGTERM/SIGINT shut down gracefully.
Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 invalid config (or document),
4 inventory --strict: the gateway exposes more than the document describes.
`;

/** Entry point of the `gatehouse` command. Returns the exit code (start: resolves on shutdown). */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(HELP);
    return command ? 0 : 2;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      options: {
        config: { type: 'string', short: 'c' },
        workers: { type: 'string', short: 'w' },
        upstream: { type: 'string', short: 'u' },
        issuer: { type: 'string' },
        prefix: { type: 'string' },
        responses: { type: 'string' },
        strict: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    process.stderr.write(`gatehouse: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const configFile = parsed.values.config ?? 'gatehouse.yaml';
  const needsConfig = command === 'start' || command === 'validate' || command === 'routes' || command === 'token' || command === 'inventory';
  if (needsConfig && !parsed.values.config && !existsSync(configFile)) {
    process.stderr.write(`gatehouse: no config file: pass --config FILE (no ./gatehouse.yaml here)\n`);
    return 2;
  }
  switch (command) {
    case 'validate':
      return validate(configFile, parsed.values.strict === true);
    case 'routes':
      return routes(configFile);
    case 'start':
      return start(configFile, parsed.values.workers);
    case 'token': {
      const [sub, token] = parsed.positionals;
      if (sub !== 'inspect' || !token) {
        process.stderr.write('gatehouse: usage: gatehouse token inspect --config FILE <token>\n');
        return 2;
      }
      const { runTokenInspect } = await import('./token-inspect.js');
      return runTokenInspect(configFile, token, process.stdout);
    }
    case 'openapi': {
      const [file] = parsed.positionals;
      const upstream = parsed.values.upstream;
      const responses = parsed.values.responses;
      if (!file || !upstream || (responses !== undefined && responses !== 'refuse' && responses !== 'log')) {
        process.stderr.write('gatehouse: usage: gatehouse openapi FILE --upstream NAME [--issuer NAME] [--prefix /v1] [--responses refuse|log]\n');
        return 2;
      }
      const { runOpenApiRoutes } = await import('./openapi-routes.js');
      return runOpenApiRoutes(file, { upstream, issuer: parsed.values.issuer, prefix: parsed.values.prefix, responses }, process.stdout, process.stderr);
    }
    case 'inventory': {
      const [file] = parsed.positionals;
      if (!file) {
        process.stderr.write('gatehouse: usage: gatehouse inventory FILE --config FILE [--upstream NAME] [--prefix /v1] [--strict]\n');
        return 2;
      }
      let config;
      try {
        config = loadConfigFile(configFile);
      } catch (err) {
        return reportConfigError(err);
      }
      const { runInventory } = await import('./inventory.js');
      return runInventory(file, config, { upstream: parsed.values.upstream, prefix: parsed.values.prefix, strict: parsed.values.strict === true }, process.stdout, process.stderr);
    }
    case 'demo': {
      const { runDemo } = await import('../demo/main.js');
      await runDemo();
      return 0;
    }
    default:
      process.stderr.write(`gatehouse: unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

function reportConfigError(err: unknown): number {
  if (err instanceof ConfigError) {
    for (const issue of err.issues) process.stderr.write(`${formatConfigIssue(issue)}\n`);
    process.stderr.write(`gatehouse: ${err.issues.length} problem(s) in the config; nothing was started\n`);
    return 3;
  }
  throw err;
}

async function validate(file: string, strict: boolean): Promise<number> {
  try {
    const config = loadConfigFile(file);
    // Compile too: areas find problems a schema cannot (claim expressions, key files, …).
    const { compilePlan } = await import('../route/compile.js');
    const { defaultAreas } = await import('../areas.js');
    const { createLogger } = await import('../telemetry/log.js');
    const { createMetrics } = await import('../telemetry/metrics.js');
    const plan = await compilePlan(config, { log: createLogger({ level: 'silent' }), metrics: createMetrics(), now: Date.now }, defaultAreas());
    await plan.close();
    // And the listeners' certificates, as a start would load them.
    const { checkListenerTls } = await import('../server/tls.js');
    const tlsIssues = checkListenerTls(config);
    if (tlsIssues.length > 0) throw new ConfigError(tlsIssues);
    // Settings that load but weaken what gatehouse protects: warnings (with --strict, problems).
    const { configAdvice } = await import('../config/advice.js');
    const { configIssue } = await import('../config/issue.js');
    const advice = configAdvice(config);
    for (const a of advice) process.stderr.write(`${strict ? '' : 'warning: '}${formatConfigIssue(configIssue(config, a.path, a.message))}\n`);
    if (strict && advice.length > 0) {
      process.stderr.write(`gatehouse: ${advice.length} warning(s) in the config (--strict)\n`);
      return 3;
    }
    process.stdout.write(`${file}: ok (${config.routes.length} routes, ${config.upstreams.length} upstreams, ${config.issuers.length} issuers${advice.length > 0 ? `; ${advice.length} warning(s)` : ''})\n`);
    return 0;
  } catch (err) {
    return reportConfigError(err);
  }
}

async function routes(file: string): Promise<number> {
  try {
    const config = loadConfigFile(file);
    const rows = config.routes.map((r) => [
      r.name,
      r.methods ? r.methods.join(',') : 'all but TRACE',
      r.exact ? `${r.path} (exact)` : r.path,
      r.upstream,
      r.public ? 'public' : `token${r.scopes.length ? ` + ${r.scopes.join(' ')}` : ''}${r.issuers ? ` (${r.issuers.join(',')})` : ''}`,
      checksOf(r),
    ]);
    const header = ['ROUTE', 'METHODS', 'PATH', 'UPSTREAM', 'ACCESS', 'CHECKS'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const row of [header, ...rows]) process.stdout.write(`${row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
    return 0;
  } catch (err) {
    return reportConfigError(err);
  }
}

/** What a route checks besides its token (`gatehouse routes`' CHECKS column): '-' for nothing. */
function checksOf(r: RouteConfig): string {
  const checks: string[] = [];
  if (r.claims.length > 0) checks.push(`claims(${r.claims.length})`);
  if (r.params) checks.push('params');
  if (r.query) checks.push('query');
  if (r.requestHeaders) checks.push('headers');
  if (r.requestBody) {
    // `body`: JSON against a schema; `body:form`, `body:json+form`: those kinds against it; in
    // parentheses, the kinds taken with no schema (well-formed is all that is asked).
    const kinds = r.requestBody.mediaTypes.join('+');
    checks.push(r.requestBody.schema === null ? `body(${kinds})` : kinds === 'json' ? 'body' : `body:${kinds}`);
  }
  if (r.responseBody) checks.push(r.responseBody.onInvalid === 'log' ? 'answers(log)' : 'answers');
  if (r.allowFrom) checks.push('allowFrom');
  return checks.length > 0 ? checks.join(' ') : '-';
}

async function start(file: string, workersFlag: string | undefined): Promise<number> {
  // A cluster worker (or any IPC parent) is listened to from here on: a reload or shutdown asked
  // while this process still starts is carried out once it runs, not lost.
  const primary = process.send !== undefined ? listenToPrimary() : null;
  let config;
  try {
    config = loadConfigFile(file);
  } catch (err) {
    return reportConfigError(err);
  }
  const workerProcess = await import('./cluster.js');
  // Default `auto`: one worker per core, within a container's CPU limit (a single process where
  // that is one).
  const workers = workersFlag ?? String(config.workers);
  const parsed = workerProcess.parseWorkers(workers);
  if (parsed === null) {
    process.stderr.write(`gatehouse: --workers must be a whole number from 1 to 256, or auto (got "${workers}")\n`);
    return 2;
  }
  const { count, auto } = parsed;
  if (count > 1) return workerProcess.runCluster(file, config, count, { auto });
  // gatehouse's V8 heap flags, unless node was started with them (or the operator's own
  // values): set now, before the gateway allocates anything to speak of.
  const v8Flags = applyMissingV8Flags(process.execArgv, process.env.NODE_OPTIONS);
  let gateway;
  if (primary?.shutdownAsked) return 0;
  try {
    // Imported here, not at the top: a cluster primary never loads the gateway itself.
    const { startGateway } = await import('../gateway.js');
    gateway = await startGateway({ config, watchConfig: true });
  } catch (err) {
    if (err instanceof ConfigError) return reportConfigError(err);
    process.stderr.write(`gatehouse: failed to start: ${(err as Error).message}\n`);
    return 1;
  }
  if (auto !== null) logAutoWorkers(gateway.log, auto);
  if (v8Flags.length > 0) gateway.log.info({ v8Flags }, `V8 heap flags set at start: ${v8Flags.join(' ')} (a value on node's command line wins)`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      gateway.log.info({ signal }, 'shutting down');
      void gateway.close().then(() => resolve(0));
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    const reload = () => {
      void gateway.reload().catch(() => undefined);
      void gateway.reloadCertificates();
    };
    process.on('SIGHUP', reload);
    primary?.attach({ reload, stop });
  });
}

const isEntry = process.argv[1] !== undefined && /(?:gatehouse(?:\.js)?|cli[\\/]main\.js)$/.test(process.argv[1]);
if (isEntry) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Give pino's async destination a moment to flush, then leave even if a handle lingers.
      setTimeout(() => process.exit(code), 200).unref();
    },
    (err) => {
      process.stderr.write(`gatehouse: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
