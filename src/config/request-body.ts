import { resolvePointer } from '../validate/json-pointer.js';
import { compileBodySchema, compileQuerySchema, readSchemaFile, type SchemaFile } from '../validate/body-schema.js';
import type { LoadedSchema, RequestBodyConfig, ResponseBodyConfig } from './types.js';

type Raw = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
type Bad = (keyPath: (string | number)[], message: string) => void;

/**
 * `routes[].query` at load: the schema read (a whole file, or inline) and compiled, so a typo is a
 * config error naming the file, line and key. Null when absent or unusable (the problem reported).
 */
export function normalizeQuery(raw: Raw | undefined, at: (string | number)[], baseDir: string, bad: Bad): { schema: object; schemaFile?: string } | null {
  if (raw === undefined) return null;
  if (typeof raw.schema === 'string' && raw.schema.includes('#')) {
    bad([...at, 'schema'], `the fragment in ${raw.schema}: a query schema is a whole file or inline (gatehouse openapi writes an operation's query parameters inline)`);
    return null;
  }
  const loaded = loadSchema(raw.schema, baseDir, [...at, 'schema'], bad, (schema) => compileQuerySchema(schema));
  return loaded === null ? null : { schema: loaded.schema, schemaFile: loaded.file };
}

/**
 * `routes[].params` at load: a schema for the route's path parameters, read and compiled like a
 * query's; a property that names no `{param}` of the route's path is a config error (a typo
 * would otherwise check nothing). Null when absent or unusable (the problem reported).
 */
export function normalizeParams(raw: Raw | undefined, routePath: unknown, at: (string | number)[], baseDir: string, bad: Bad): { schema: object; schemaFile?: string } | null {
  if (raw === undefined) return null;
  const loaded = normalizeQuery(raw, at, baseDir, bad);
  if (loaded === null) return null;
  const names = new Set(typeof routePath === 'string' ? [...routePath.matchAll(/\{([^{}]+)\}/g)].map((m) => m[1]!) : []);
  if (names.size === 0) {
    bad(at, `the route's path ${JSON.stringify(routePath)} has no {parameters} to check`);
    return null;
  }
  const properties = (loaded.schema as { properties?: unknown }).properties;
  if (properties !== null && typeof properties === 'object') {
    for (const name of Object.keys(properties)) {
      if (!names.has(name)) bad([...at, 'schema', 'properties', name], `names no parameter of the route's path (${[...names].map((n) => `{${n}}`).join(', ')})`);
    }
  }
  return loaded;
}

/**
 * `routes[].requestHeaders` at load: a schema for the request's headers, read and compiled like a
 * query's. Header names are matched lowercased: a property or `required` name with a capital
 * letter would never match, and is a config error saying so.
 */
export function normalizeRequestHeaders(raw: Raw | undefined, at: (string | number)[], baseDir: string, bad: Bad): { schema: object; schemaFile?: string } | null {
  if (raw === undefined) return null;
  const loaded = normalizeQuery(raw, at, baseDir, bad);
  if (loaded === null) return null;
  const schema = loaded.schema as { properties?: unknown; required?: unknown };
  const names = [
    ...(schema.properties !== null && typeof schema.properties === 'object' ? Object.keys(schema.properties).map((name) => ['properties', name, name] as const) : []),
    ...(Array.isArray(schema.required) ? schema.required.map((name, i) => ['required', i, name] as const) : []),
  ];
  let usable = true;
  for (const [where, key, name] of names) {
    if (typeof name !== 'string' || name === name.toLowerCase()) continue;
    usable = false;
    const file = loaded.schemaFile === undefined ? [...at, 'schema', where, key] : [...at, 'schema'];
    bad(file, `${loaded.schemaFile === undefined ? '' : `${where}.${String(key)} (${loaded.schemaFile}) `}names the header ${JSON.stringify(name)}: header names are matched lowercased, write ${JSON.stringify(name.toLowerCase())}`);
  }
  return usable ? loaded : null;
}

/**
 * A route's schema (inline, a file, or `file#/pointer`) read and compiled by `compile`; any
 * problem reported at `at` — the file's own message, or `is not a usable JSON Schema (file): …`.
 */
function loadSchema(raw: unknown, baseDir: string, at: (string | number)[], bad: Bad, compile: (schema: object, document: SchemaFile['document']) => unknown): SchemaFile | { schema: object; file?: undefined; document?: undefined } | null {
  let read: SchemaFile | undefined;
  try {
    if (typeof raw === 'string') read = readSchemaFile(raw, baseDir);
    const schema = read?.schema ?? (raw as object);
    compile(schema, read?.document);
    return read ?? { schema };
  } catch (err) {
    const message = (err as Error).message.split('\n')[0]!;
    bad(at, /^the (schema file|fragment)/.test(message) ? message : `is not a usable JSON Schema${read === undefined ? '' : ` (${read.file})`}: ${message}`);
    return null;
  }
}

/** The methods whose bodies `requestBody` checks when it does not list them. */
export const BODY_METHODS = ['POST', 'PUT', 'PATCH'];

/** Methods whose requests carry no body a route could check. */
const NO_BODY = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT']);

/** Bodies nest at most this deep unless `requestBody.maxDepth` says otherwise. */
export const DEFAULT_BODY_DEPTH = 32;

/**
 * `routes[].requestBody` at load: the schema read (a file relative to the config file, or
 * inline) and compiled, so a typo in a schema is a config error naming the file, line and key,
 * never a rule skipped at run time. Null when absent or unusable (the problem reported).
 */
export function normalizeRequestBody(
  raw: Raw | undefined,
  routeMethods: readonly string[] | null,
  at: (string | number)[],
  baseDir: string,
  bad: Bad,
): RequestBodyConfig | null {
  if (raw === undefined) return null;
  const methods: string[] = raw.methods ?? (routeMethods === null ? BODY_METHODS : BODY_METHODS.filter((m) => routeMethods.includes(m)));
  if (raw.methods === undefined && methods.length === 0) {
    bad([...at, 'methods'], `the route takes none of ${BODY_METHODS.join(', ')}: list the methods whose bodies are checked`);
  }
  (raw.methods as string[] | undefined)?.forEach((m, j) => {
    if (NO_BODY.has(m)) bad([...at, 'methods', j], `${m} requests carry no body to check`);
    else if (routeMethods !== null && !routeMethods.includes(m)) bad([...at, 'methods', j], `${m} is not among the route's methods (${routeMethods.join(', ')})`);
  });
  const readOnly: 'refuse' | 'ignore' = raw.readOnly ?? 'refuse';
  const mediaTypes: ('json' | 'form')[] = raw.mediaTypes ?? ['json'];
  // Compiled as each kind of body will be checked: a form's text read as the types the schema names.
  const loaded =
    raw.schema === undefined
      ? null
      : loadSchema(raw.schema, baseDir, [...at, 'schema'], bad, (schema, document) => {
          for (const kind of mediaTypes) compileBodySchema(schema, { document, readOnly, text: kind === 'form' });
        });
  const schema = loaded?.schema ?? null;
  const schemaFile = loaded?.file;
  const document = loaded?.document;
  if (schema !== null && mediaTypes.includes('form')) {
    for (const problem of formSchemaProblems(schema, document?.value)) {
      const inline = schemaFile === undefined;
      bad([...at, 'schema', ...(inline ? problem.at : [])], inline || problem.at.length === 0 ? problem.message : `${problem.at.join('.')} (${schemaFile}) ${problem.message}`);
    }
  }
  return { schema, schemaFile, document, readOnly, methods, required: raw.required ?? true, maxDepth: raw.maxDepth ?? DEFAULT_BODY_DEPTH, mediaTypes };
}

/**
 * What in a schema no form can meet — a form is read as an object whose values are text (or
 * lists of text): a schema whose `type` is not `object`, a property that must be an object.
 * Only what is plain to see (the top level, its properties, local `$ref`s): a config error, not a
 * route that refuses every form it gets.
 */
function formSchemaProblems(schema: object, document: object | undefined): { at: string[]; message: string }[] {
  const root = document ?? schema;
  const top = followRef(schema, root);
  if (top === null) return [];
  const types = typesOf(top);
  if (types !== null && !types.includes('object')) {
    return [{ at: [], message: `a form is read as an object of fields, and this schema's type is ${types.join(' or ')}: no form could meet it` }];
  }
  const properties = top.properties;
  if (properties === null || typeof properties !== 'object') return [];
  const problems: { at: string[]; message: string }[] = [];
  for (const [name, property] of Object.entries(properties as Record<string, unknown>)) {
    const own = followRef(property, root);
    const propertyTypes = own === null ? null : typesOf(own);
    if (propertyTypes !== null && propertyTypes.includes('object') && propertyTypes.every((t) => t === 'object' || t === 'null')) {
      problems.push({ at: ['properties', name], message: "is an object, and a form's fields are text (or lists of text): no form could set it" });
    }
  }
  return problems;
}

/** A schema object, through `$ref`s into its own document (at most 8); null for anything else. */
function followRef(value: unknown, document: object | undefined): Record<string, unknown> | null {
  let node = value;
  for (let hops = 0; hops < 8; hops++) {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return null;
    const ref = (node as { $ref?: unknown }).$ref;
    if (typeof ref !== 'string') return node as Record<string, unknown>;
    const hash = ref.indexOf('#');
    if (hash === -1 || document === undefined) return null;
    node = resolvePointer(document, ref.slice(hash + 1));
  }
  return null;
}

function typesOf(schema: Record<string, unknown>): string[] | null {
  const type = schema.type;
  if (typeof type === 'string') return [type];
  return Array.isArray(type) && type.every((t) => typeof t === 'string') ? (type as string[]) : null;
}

/** Answers are read whole up to this many bytes unless `responseBody.maxSize` says otherwise. */
export const DEFAULT_RESPONSE_SIZE = 1024 * 1024;

/** Answers nest at most this deep unless `responseBody.maxDepth` says otherwise. */
export const DEFAULT_RESPONSE_DEPTH = 64;

/**
 * `routes[].responseBody` at load: each status's schema read and compiled the way the answer
 * check will use it (writeOnly refused or not), so a typo is a config error naming the file,
 * line and key. Null when absent or unusable (the problem reported).
 */
export function normalizeResponseBody(
  raw: Raw | undefined,
  at: (string | number)[],
  baseDir: string,
  bad: Bad,
  bytes: (value: unknown, fallback: number) => number,
): ResponseBodyConfig | null {
  if (raw === undefined) return null;
  const writeOnly: 'refuse' | 'ignore' = raw.writeOnly ?? 'refuse';
  const schemas: Record<string, LoadedSchema> = {};
  let usable = true;
  for (const [status, reference] of Object.entries((raw.schemas ?? {}) as Record<string, unknown>)) {
    const loaded = loadSchema(reference, baseDir, [...at, 'schemas', status], bad, (schema, document) =>
      compileBodySchema(schema, { document, readOnly: 'ignore', writeOnly }),
    );
    if (loaded === null) usable = false;
    else schemas[status] = { schema: loaded.schema, schemaFile: loaded.file, document: loaded.document };
  }
  if (!usable) return null;
  return {
    schemas,
    unlisted: raw.unlisted ?? 'pass',
    maxSize: bytes(raw.maxSize, DEFAULT_RESPONSE_SIZE),
    maxDepth: raw.maxDepth ?? DEFAULT_RESPONSE_DEPTH,
    writeOnly,
    onInvalid: raw.onInvalid ?? 'refuse',
  };
}
