import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Ajv, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import formatsModule, { type FormatsPlugin } from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import { resolvePointer } from './json-pointer.js';

// ajv-formats is CommonJS: depending on how it is loaded its plugin is the module or its `default`.
const addFormats = ((formatsModule as unknown as { default?: FormatsPlugin }).default ?? formatsModule) as FormatsPlugin;

/**
 * Options for the schemas of `routes[].requestBody`: strict (an unknown keyword or format is a
 * config error, not a rule silently skipped), the first error only (a hostile body cannot make
 * the check collect thousands), never changing the data (no defaults, no coercion: the upstream
 * gets the bytes that were checked). `code.optimize: false` for the reason given in
 * config/load.ts (ajv's optimizer leaves V8's empty-object map without transitions).
 */
const OPTIONS: Options = {
  // Strict about the schema's own words (unknown keywords and formats, numbers); not about
  // style (a `required` name defined in another branch, untyped keywords).
  strictSchema: true,
  strictNumbers: true,
  strictTypes: false,
  strictTuples: false,
  strictRequired: false,
  allErrors: false,
  allowUnionTypes: true,
  coerceTypes: false,
  useDefaults: false,
  removeAdditional: false,
  code: { optimize: false },
};

type Draft = 'draft-07' | '2019-09' | '2020-12';

const DRAFTS: Record<string, Draft> = {
  'http://json-schema.org/draft-07/schema': 'draft-07',
  'https://json-schema.org/draft/2019-09/schema': '2019-09',
  'https://json-schema.org/draft/2020-12/schema': '2020-12',
};

/** The dialect a schema is read in: a JSON Schema draft, or an OpenAPI document's schema objects. */
export type SchemaDialect = Draft | 'openapi-3.0' | 'openapi-3.1';

/** What a schema comes with: the document a fragment points into, and how readOnly and writeOnly are read. */
export interface SchemaContext {
  /**
   * The data is text read as an object (a form body: each field's value a string, or an array of
   * them): `integer`, `number` and `boolean` take their text, an `array` a lone value, as a
   * query's schema does. Absent or false: JSON, never coerced.
   */
  readonly text?: boolean | undefined;
  /** The whole file a `#/…` fragment reference points into, registered under `uri`. */
  readonly document?: { readonly uri: string; readonly value: object; readonly dialect: SchemaDialect } | undefined;
  /** `refuse`: a property marked readOnly must not be in a request (OpenAPI's meaning); `ignore`: an annotation. */
  readonly readOnly: 'refuse' | 'ignore';
  /** `refuse`: a property marked writeOnly must not be in an answer (OpenAPI's meaning); `ignore` (default): an annotation. */
  readonly writeOnly?: 'refuse' | 'ignore' | undefined;
}

/**
 * Which marked properties a schema refuses: readOnly ones (request bodies), writeOnly ones
 * (answers), or none. One compiled validator, and one ajv instance per document, per reading.
 */
type Marking = 'readOnly' | 'writeOnly' | 'none';

function markingOf(context: SchemaContext): Marking {
  if (context.readOnly === 'refuse') return 'readOnly';
  return context.writeOnly === 'refuse' ? 'writeOnly' : 'none';
}

/** How a schema is compiled: which marked properties it refuses, and whether the data is text (a form). */
type Reading = Marking | `${Marking}+text`;

function readingOf(context: SchemaContext): Reading {
  const marking = markingOf(context);
  return context.text === true ? `${marking}+text` : marking;
}

function markingIn(reading: Reading): Marking {
  return reading.endsWith('+text') ? (reading.slice(0, -5) as Marking) : (reading as Marking);
}

function optionsFor(reading: Reading): Options {
  return reading.endsWith('+text') ? QUERY_OPTIONS : OPTIONS;
}

/**
 * Words of OpenAPI's schema objects that JSON Schema does not have, and the document's own top
 * level (ajv compiles the document's root on the way to a fragment): read as annotations.
 */
const OPENAPI_ANNOTATIONS = ['example', 'xml', 'externalDocs', 'discriminator', 'openapi', 'info', 'jsonSchemaDialect', 'servers', 'paths', 'webhooks', 'components', 'security', 'tags'];

/**
 * A new ajv instance per schema: ajv keeps every schema it compiled (by object and by `$id`) for
 * as long as the instance lives, so one shared instance would grow with every reload and refuse a
 * reloaded schema's `$id` as taken. The compiled function holds what it needs.
 */
function ajvFor(dialect: SchemaDialect, marking: Marking, extensions: readonly string[], options: Options = OPTIONS): Ajv {
  const ajv =
    dialect === '2020-12' || dialect === 'openapi-3.1' ? new Ajv2020(options) : dialect === '2019-09' ? new Ajv2019(options) : new Ajv(options);
  addFormats(ajv, { mode: 'full' });
  if (dialect === 'openapi-3.0' || dialect === 'openapi-3.1') ajv.addVocabulary([...OPENAPI_ANNOTATIONS, ...extensions]);
  if (marking !== 'none') {
    // Evaluated only where the data has the property: present, it is refused.
    ajv.removeKeyword(marking);
    ajv.addKeyword({ keyword: marking, schemaType: 'boolean', validate: (marked: boolean) => !marked });
  }
  return ajv;
}

/**
 * Compiled validators by schema object and reading of readOnly/writeOnly: a schema is compiled
 * once, at load (and reused by the plan; a schema file unchanged across a reload gives the same object).
 */
const compiled = new WeakMap<object, Map<Reading, ValidateFunction>>();

/**
 * Compile a JSON Schema for request bodies. The draft follows `$schema` (draft-07, 2019-09 or
 * 2020-12; without it 2020-12, the one OpenAPI 3.1 uses), or the OpenAPI document the schema is
 * a fragment of (3.1: 2020-12; 3.0: its schema objects, `nullable` included). With `readOnly:
 * refuse`, a property marked `readOnly` is refused when present and dropped from `required`
 * (request bodies); with `writeOnly: refuse`, the same for `writeOnly` (answers).
 * Throws an Error saying what is wrong.
 *
 * @example
 * ```ts
 * const validate = compileBodySchema({ type: 'object', required: ['qty'] }, { readOnly: 'refuse' });
 * validate({ qty: 1 }); // true
 * ```
 */
export function compileBodySchema(schema: object, context: SchemaContext = { readOnly: 'refuse' }): ValidateFunction {
  const reading = readingOf(context);
  const marking = markingIn(reading);
  let byMode = compiled.get(schema);
  if (byMode === undefined) compiled.set(schema, (byMode = new Map()));
  const held = byMode.get(reading);
  if (held !== undefined) return held;
  const document = context.document;
  let validate: ValidateFunction;
  if (document === undefined) {
    const own = marking !== 'none' ? markedNotRequired(structuredClone(schema), marking) : schema;
    validate = ajvFor(declaredDraft(schema), marking, [], optionsFor(reading)).compile(own);
  } else {
    validate = documentAjv(document, reading).compile(schema);
  }
  byMode.set(reading, validate);
  return validate;
}

/**
 * One ajv instance per document (and reading of readOnly/writeOnly) for every route that points into it: the
 * document is added once, and the schemas several operations share (`#/components/schemas/Tag`)
 * are compiled once. The document object is the one {@link readSchemaFile} keeps while the file
 * is unchanged, so a reload reuses the instance (and its compiled schemas); a changed file gives
 * a new document, and the old instance goes with the plan that used it.
 */
const documentInstances = new WeakMap<object, Map<Reading, Ajv>>();

function documentAjv(document: NonNullable<SchemaContext['document']>, reading: Reading): Ajv {
  let byMode = documentInstances.get(document.value);
  if (byMode === undefined) documentInstances.set(document.value, (byMode = new Map()));
  let ajv = byMode.get(reading);
  if (ajv === undefined) {
    const marking = markingIn(reading);
    const value = marking !== 'none' ? markedNotRequired(structuredClone(document.value), marking) : document.value;
    ajv = ajvFor(document.dialect, marking, extensionKeywords(document.value), optionsFor(reading));
    // The whole file under its URL (not checked against a meta-schema: an OpenAPI document is not
    // a schema); only what a fragment reaches is compiled, and checked strictly.
    ajv.addSchema(value, document.uri, undefined, false);
    byMode.set(reading, ajv);
  }
  return ajv;
}

/**
 * Query schemas (`routes[].query`): the same strictness, and `coerceTypes: 'array'` — a query
 * value is text, so `?limit=10` meets `type: integer` and a lone value meets `type: array`; the
 * coerced copy is the checker's own (the query goes upstream as the client sent it).
 */
const QUERY_OPTIONS: Options = { ...OPTIONS, coerceTypes: 'array' };
const compiledQuery = new WeakMap<object, ValidateFunction>();

/**
 * Compile a JSON Schema for a request's query, read as an object of parameter names to a value
 * (or, for a name given more than once, an array of them). Throws an Error saying what is wrong.
 *
 * @example
 * ```ts
 * const validate = compileQuerySchema({ type: 'object', properties: { limit: { type: 'integer', maximum: 100 } } });
 * ```
 */
export function compileQuerySchema(schema: object): ValidateFunction {
  const held = compiledQuery.get(schema);
  if (held !== undefined) return held;
  // readOnly is an annotation here: a query has no properties an answer carries.
  const validate = ajvFor(declaredDraft(schema), 'none', [], QUERY_OPTIONS).compile(schema);
  compiledQuery.set(schema, validate);
  return validate;
}

/** The draft a schema declares with `$schema` (2020-12 without one). */
export function declaredDraft(schema: object): Draft {
  const declared = (schema as { $schema?: unknown }).$schema;
  if (declared === undefined) return '2020-12';
  const known = typeof declared === 'string' ? DRAFTS[declared.replace(/#$/, '')] : undefined;
  if (known === undefined) {
    throw new Error(`$schema ${JSON.stringify(declared)} is not a draft gatehouse reads (draft-07, 2019-09 or 2020-12: ${Object.keys(DRAFTS).join(', ')})`);
  }
  return known;
}

/** The `x-…` extension keys an OpenAPI document uses: annotations to ajv, not unknown keywords. */
function extensionKeywords(document: object): string[] {
  const names = new Set<string>();
  walk(document, (node) => {
    for (const key of Object.keys(node)) if (key.startsWith('x-')) names.add(key);
  });
  return [...names];
}

/**
 * OpenAPI: "If the property is marked as readOnly being true and is in the required list, the
 * required will take effect on the response only" (and writeOnly, on the request only). A
 * request is then checked without the readOnly names in `required` (on the copy it is given),
 * and refused when it carries them (the keyword); an answer, the same with the writeOnly names.
 */
function markedNotRequired<T extends object>(root: T, keyword: 'readOnly' | 'writeOnly'): T {
  walk(root, (node) => {
    const properties = node.properties as Record<string, unknown> | undefined;
    const required = node.required;
    if (properties === undefined || typeof properties !== 'object' || !Array.isArray(required)) return;
    node.required = required.filter((name) => typeof name !== 'string' || !marks(properties[name], keyword, root, 0));
  });
  return root;
}

/** A property schema marked readOnly (or writeOnly) itself, through a local `$ref`, or in an `allOf` member. */
function marks(schema: unknown, keyword: 'readOnly' | 'writeOnly', root: object, depth: number): boolean {
  if (schema === null || typeof schema !== 'object' || depth > 8) return false;
  const s = schema as Record<string, unknown>;
  if (s[keyword] === true) return true;
  if (typeof s.$ref === 'string' && s.$ref.startsWith('#')) return marks(resolvePointer(root, s.$ref.slice(1)), keyword, root, depth + 1);
  if (Array.isArray(s.allOf)) return s.allOf.some((member) => marks(member, keyword, root, depth + 1));
  return false;
}

/** Every object (not array) in a JSON value, each once. */
function walk(value: unknown, visit: (node: Record<string, unknown>) => void, seen = new Set<unknown>()): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (!Array.isArray(value)) visit(value as Record<string, unknown>);
  for (const child of Object.values(value)) walk(child, visit, seen);
}


/** A schema read from a file: the schema to compile, and the document a fragment points into. */
export interface SchemaFile {
  readonly schema: object;
  readonly file: string;
  readonly document?: { readonly uri: string; readonly value: object; readonly dialect: SchemaDialect };
}

/**
 * Read a schema file (`.json`, or `.yaml` / `.yml`) relative to the config file's directory: a
 * JSON Schema, or with a `#/…` fragment a schema inside a document — an OpenAPI document's
 * `#/components/schemas/NewOrder`, or `#/paths/~1orders/post/requestBody/content/application~1json/schema`.
 * Throws an Error naming the file and what is wrong with it.
 */
export function readSchemaFile(reference: string, baseDir: string): SchemaFile {
  const hash = reference.indexOf('#');
  const file = hash === -1 ? reference : reference.slice(0, hash);
  const fragment = hash === -1 ? null : reference.slice(hash + 1);
  const absolute = path.resolve(baseDir, file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`the schema file ${absolute} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${(err as Error).message})`}`);
  }
  // Read again on every load (a reload sees a changed file); parsed again only when it changed,
  // once for every reference into it (so they share one document object, and one ajv instance).
  let held = readFiles.get(absolute);
  if (held === undefined || held.text !== text) {
    held = { text, value: parseSchemaText(text, absolute), results: new Map() };
    readFiles.set(absolute, held);
  }
  const key = fragment ?? '';
  let result = held.results.get(key);
  if (result === undefined) {
    result = fromValue(held.value, absolute, file, fragment);
    held.results.set(key, result);
  }
  return result;
}

/** The files read, by absolute path: their text, its parsed value, and what each reference into them gave. */
const readFiles = new Map<string, { text: string; value: object; results: Map<string, SchemaFile> }>();

function parseSchemaText(text: string, absolute: string): object {
  const yaml = /\.ya?ml$/i.test(absolute);
  let value: unknown;
  try {
    value = yaml ? parseYaml(text, { uniqueKeys: true }) : JSON.parse(text);
  } catch (err) {
    throw new Error(`the schema file ${absolute} is not valid ${yaml ? 'YAML' : 'JSON'}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`the schema file ${absolute} does not hold a JSON Schema object`);
  }
  return value;
}

function fromValue(value: object, absolute: string, file: string, fragment: string | null): SchemaFile {
  const openapi = (value as { openapi?: unknown }).openapi;
  const dialect: SchemaDialect | null =
    typeof openapi === 'string' ? (/^3\.0\./.test(openapi) ? 'openapi-3.0' : /^3\.1\./.test(openapi) ? 'openapi-3.1' : null) : null;
  if (typeof openapi === 'string' && dialect === null) throw new Error(`the schema file ${absolute} is an OpenAPI ${openapi} document: gatehouse reads 3.0 and 3.1`);
  if (fragment === null) {
    if (dialect !== null) {
      throw new Error(`the schema file ${absolute} is an OpenAPI document: name the schema in it with a fragment, e.g. ${file}#/components/schemas/NewOrder`);
    }
    return { schema: value, file: absolute };
  }
  if (fragment !== '' && !fragment.startsWith('/')) throw new Error(`the fragment #${fragment} of ${file} is not a JSON pointer (#/components/schemas/NewOrder)`);
  const target = resolvePointer(value, fragment);
  if (target === null || typeof target !== 'object' || Array.isArray(target)) {
    throw new Error(`the schema file ${absolute} has no schema at #${fragment}`);
  }
  const uri = pathToFileURL(absolute).href;
  return {
    schema: { $ref: `${uri}#${fragment}` },
    file: absolute,
    document: { uri, value, dialect: dialect ?? declaredDraft(value) },
  };
}

const MAX_MESSAGE = 300;

/**
 * What the first error of a failed validation says, for the client: where (a JSON pointer into
 * the body) and which rule. Never the value itself (the body may carry secrets into logs).
 */
export function describeSchemaError(error: ErrorObject | undefined): string {
  if (error === undefined) return 'it does not match the schema';
  const at = error.instancePath === '' ? 'the top level' : error.instancePath;
  const p = error.params as Record<string, unknown>;
  let rule: string;
  switch (error.keyword) {
    case 'additionalProperties':
      rule = `the property ${JSON.stringify(p.additionalProperty)} is not allowed`;
      break;
    case 'unevaluatedProperties':
      rule = `the property ${JSON.stringify(p.unevaluatedProperty)} is not allowed`;
      break;
    case 'required':
      rule = `the property ${JSON.stringify(p.missingProperty)} is required`;
      break;
    case 'readOnly':
      rule = 'is read-only (readOnly): answers carry it, requests do not';
      break;
    case 'writeOnly':
      rule = 'is write-only (writeOnly): requests carry it, answers do not';
      break;
    case 'enum':
      rule = `must be one of: ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
      break;
    default:
      rule = error.message ?? `fails ${error.keyword}`;
  }
  const message = `at ${at}: ${rule}`;
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 1)}…` : message;
}
