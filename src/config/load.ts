import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { configSchema } from './schema/index.js';
import { normalizeConfig } from './normalize.js';
import type { GatehouseConfig } from './types.js';

/**
 * Load, expand, validate and normalize a config file. Throws a {@link ConfigError} listing
 * every problem found (file:line:column key-path message), never a half-built config.
 *
 * @example
 * ```ts
 * const config = loadConfigFile('gatehouse.yaml');
 * ```
 */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): GatehouseConfig {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read (${(err as Error).message})`;
    throw new ConfigError([{ file, line: 0, column: 0, path: '', message: `config file ${reason}` }]);
  }
  return loadConfigText(text, file, env, path.dirname(absolute));
}

/** Like {@link loadConfigFile}, for text in hand. `file` only names it in messages. */
export function loadConfigText(
  text: string,
  file = 'gatehouse.yaml',
  env: NodeJS.ProcessEnv = process.env,
  baseDir = process.cwd(),
): GatehouseConfig {
  const located = parseLocated(text, file, env);
  const issues = [...located.issues];
  if (issues.length === 0) issues.push(...validateSchema(located));
  if (issues.length > 0) throw new ConfigError(issues);
  const result = normalizeConfig(located.value as Record<string, unknown>, {
    file: path.resolve(baseDir, path.basename(file)),
    baseDir,
    locate: located.locate,
  });
  if (result.issues.length > 0) throw new ConfigError(result.issues);
  // Kept (not enumerable: not part of the config's value) for the checks that read files later —
  // certificates at validate, start and reload — so they too name the line of the key.
  Object.defineProperty(result.config, 'locate', { value: located.locate, enumerable: false });
  return result.config;
}

/** Finds where a key path sits in the source, for messages. */
export type Locator = (path: readonly (string | number)[], message: string, onKey?: boolean) => ConfigIssue;

interface Located {
  value: unknown;
  issues: ConfigIssue[];
  locate: Locator;
}

const ENV_PATTERN = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

// `cookieKeys: [${COOKIE_KEY}]` (the token-handler contract) is how people write a list of one
// variable, but in a YAML flow collection `{` opens a mapping. So the braces of `${…}` are
// swapped for ⦃⦄ before parsing (same length: positions in messages hold) and the variables
// are still expanded after parsing, inside scalars only.
const OPEN = '\u2983';
const CLOSE = '\u2984';
const PROTECT = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*(?::-[^}\n]*)?)\}/g;
const PROTECTED_PATTERN = /\$\$|\$\u2983([A-Za-z_][A-Za-z0-9_]*)(?::-([^\u2984]*))?\u2984/g;

function parseLocated(text: string, file: string, env: NodeJS.ProcessEnv): Located {
  const lineCounter = new LineCounter();
  const protect = !text.includes(OPEN) && !text.includes(CLOSE);
  const source = protect ? text.replace(PROTECT, (match, inner: string | undefined) => (inner === undefined ? match : `$${OPEN}${inner}${CLOSE}`)) : text;
  const pattern = protect ? PROTECTED_PATTERN : ENV_PATTERN;
  const doc = parseDocument(source, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  const issues: ConfigIssue[] = [];
  const at = (offset: number | undefined) => {
    if (offset === undefined) return { line: 0, column: 0 };
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  const locate: Locator = (keyPath, message, onKey = false) => {
    const node = findNode(doc, keyPath, onKey);
    return { file, ...at(node?.range?.[0]), path: formatPath(keyPath), message };
  };
  // The first syntax error is the one to fix; the rest usually cascade from it.
  const syntax = doc.errors[0];
  if (syntax) {
    issues.push({ file, ...at(syntax.pos[0]), path: '', message: `is not valid YAML: ${syntax.message.split('\n')[0]}` });
  }
  if (issues.length > 0) return { value: undefined, issues, locate };

  // Expand ${VAR} and ${VAR:-default} inside string scalars only, so a variable can never
  // inject YAML structure. `$$` is a literal `$`.
  visit(doc, {
    Scalar(_key, node, visitPath) {
      if (typeof node.value !== 'string' || !node.value.includes('$')) return;
      node.value = node.value.replace(pattern, (match, name: string | undefined, fallback: string | undefined) => {
        if (match === '$$') return '$';
        const value = env[name!];
        if (value !== undefined && value !== '') return value;
        if (fallback !== undefined) return fallback;
        issues.push({
          file,
          ...at(node.range?.[0]),
          path: formatPath(pathOfNodes(visitPath, node)),
          message: `uses \${${name}} but the environment variable ${name} is not set`,
        });
        return '';
      });
    },
  });
  const value = doc.toJS({ maxAliasCount: 100 });
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value)) {
    issues.push({ file, line: 1, column: 1, path: '', message: 'must be a mapping of config keys (listen, upstreams, routes, …)' });
  }
  return { value, issues, locate };
}

function pathOfNodes(visitPath: readonly unknown[], node: unknown): (string | number)[] {
  const out: (string | number)[] = [];
  const chain = [...visitPath, node];
  for (let i = 1; i < chain.length; i++) {
    const parent = chain[i - 1];
    const child = chain[i];
    if (isSeq(parent)) out.push(parent.items.indexOf(child as never));
    else if (parent && typeof parent === 'object' && 'key' in parent && 'value' in parent) {
      const key = (parent as { key: unknown }).key;
      if ((parent as { value: unknown }).value === child) out.push(String(isScalar(key) ? key.value : key));
    }
  }
  return out;
}

function findNode(doc: Document, keyPath: readonly (string | number)[], onKey: boolean): Node | undefined {
  let node: unknown = doc.contents;
  let last: Node | undefined = node as Node;
  for (let i = 0; i < keyPath.length; i++) {
    const part = keyPath[i]!;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(part));
      if (!pair) return last;
      if (onKey && i === keyPath.length - 1) return pair.key as Node;
      node = pair.value;
    } else if (isSeq(node) && typeof part === 'number') {
      node = node.items[part];
    } else {
      return last;
    }
    if (node && typeof node === 'object' && 'range' in node) last = node as Node;
  }
  return last;
}

/** `routes[3].scopes` */
export function formatPath(keyPath: readonly (string | number)[]): string {
  let out = '';
  for (const part of keyPath) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? part : `.${part}`;
  }
  return out;
}

/**
 * The compiled schema validator, held weakly: it keeps about 1.8 MB on the V8 heap, and a
 * running gateway needs it only while a config file is read (start-up and each reload). Loads
 * close together (tests, a burst of reloads) share it; after that the next full GC frees it and a
 * later reload compiles it again (tens of milliseconds).
 */
let compiledValidator: WeakRef<ReturnType<Ajv['compile']>> | undefined;

function validator(): ReturnType<Ajv['compile']> {
  const held = compiledValidator?.deref();
  if (held) return held;
  // `code.optimize: false`: ajv's optimizer counts the generated code's variable names in plain
  // objects keyed by name (`err44`, `_errs275`, …). For gatehouse's schema that is over 1,500
  // distinct first keys on V8's empty-object map, which then has no transitions left: every
  // object built key by key afterwards (request and response headers, parsed JSON) got a map of
  // its own for as long as the process lived, and property access on them went megamorphic.
  // The unoptimized validator checks exactly the same rules (test/boot/shapes.test.ts).
  const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true, verbose: true, code: { optimize: false } });
  const validate = ajv.compile(configSchema);
  compiledValidator = new WeakRef(validate);
  return validate;
}

function validateSchema(located: Located): ConfigIssue[] {
  const validate = validator();
  if (validate(located.value)) return [];
  const errors = pruneErrors(validate.errors ?? []);
  const seen = new Set<string>();
  const issues: ConfigIssue[] = [];
  for (const error of errors) {
    const keyPath = pointerToPath(error.instancePath);
    const { message, onKey, extraKey } = describe(error);
    const issue = located.locate(extraKey === undefined ? keyPath : [...keyPath, extraKey], message, onKey);
    const id = `${issue.path}|${issue.message}`;
    if (!seen.has(id)) {
      seen.add(id);
      issues.push(issue);
    }
  }
  return issues;
}

// anyOf produces one error per branch plus its own: keep the most useful ones.
function pruneErrors(errors: ErrorObject[]): ErrorObject[] {
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  return errors.filter((e) => {
    // An anyOf whose object branch has errors deeper down: those deeper errors say more.
    if (e.keyword === 'anyOf') return !errors.some((d) => errorPath(d).startsWith(`${e.instancePath}/`));
    // drop branch errors of an anyOf at the same instance path (the anyOf message says it all),
    // but for an unknown key of its object branch, which names the key
    if (anyOfPaths.has(e.instancePath) && /\/anyOf\/\d+\//.test(e.schemaPath) && e.keyword !== 'additionalProperties') {
      return false;
    }
    return true;
  });
}

/** Where an error points: an unknown key's own path, else the value's. */
function errorPath(e: ErrorObject): string {
  return e.keyword === 'additionalProperties' ? `${e.instancePath}/${String((e.params as { additionalProperty?: unknown }).additionalProperty)}` : e.instancePath;
}

function describe(error: ErrorObject): { message: string; onKey?: boolean; extraKey?: string } {
  const p = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties': {
      const allowed = Object.keys((error.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      return {
        message: `is not a known key (expected one of: ${allowed.join(', ')})`,
        onKey: true,
        extraKey: String(p.additionalProperty),
      };
    }
    case 'required':
      return { message: `is missing the required key "${String(p.missingProperty)}"` };
    case 'enum':
      return { message: `must be one of: ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    case 'const':
      return { message: `must be ${JSON.stringify(p.allowedValue)}` };
    case 'type':
      return { message: `must be ${article(String(p.type))}` };
    case 'pattern':
    case 'anyOf': {
      const description = (error.parentSchema as { description?: string } | undefined)?.description;
      return { message: description ? `is not valid: ${description}` : `must match ${String(p.pattern ?? 'one of the allowed forms')}` };
    }
    case 'minItems':
      return { message: `must have at least ${String(p.limit)} item(s)` };
    case 'uniqueItems':
      return { message: 'must not repeat items' };
    case 'minimum':
    case 'maximum':
      return { message: `must be ${error.keyword === 'minimum' ? '>=' : '<='} ${String(p.limit)}` };
    default:
      return { message: error.message ?? 'is not valid' };
  }
}

function article(type: string): string {
  if (type.includes(',')) return `one of: ${type}`;
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part) => (/^\d+$/.test(part) ? Number(part) : part));
}
