import { readFileSync } from 'node:fs';
import { Document, parse as parseYaml } from 'yaml';
import { escapePointer, resolvePointer } from '../validate/json-pointer.js';
import { JSON_MEDIA_TYPE } from '../validate/request-body.js';

/** What `gatehouse openapi` needs besides the document. */
export interface OpenApiRoutesOptions {
  /** How the generated config names the document (`requestBody.schema: <this>#/…`): relative to the config file. */
  readonly reference: string;
  /** The `upstreams[].name` every route goes to. */
  readonly upstream: string;
  /** An `issuers[].name` the routes that need a token accept (all issuers when absent). */
  readonly issuer?: string | undefined;
  /** A path every route's path is put under (`/v1`), as clients call the gateway; none when absent. */
  readonly prefix?: string | undefined;
  /**
   * `responseBody` for the operations' JSON answers: `refuse` (an answer outside the document is
   * a 502) or `log` (reported, passed on); none when absent.
   */
  readonly responses?: 'refuse' | 'log' | undefined;
}

/** One generated route, as it goes into the config. */
export interface GeneratedRoute {
  name: string;
  path: string;
  exact: true;
  methods: string[];
  upstream: string;
  public?: true;
  issuers?: string[];
  scopes?: string[];
  requestBody?: { schema?: string; mediaTypes?: ('json' | 'form')[]; required?: false };
  query?: { schema: Record<string, unknown> };
  params?: { schema: Record<string, unknown> };
  requestHeaders?: { schema: Record<string, unknown> };
  responseBody?: { schemas: Record<string, string>; onInvalid?: 'log' };
}

/** The routes, and what the document says that they could not express (printed as comments). */
export interface OpenApiRoutes {
  readonly routes: GeneratedRoute[];
  readonly notes: string[];
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

type Obj = Record<string, unknown>;

const isObject = (value: unknown): value is Obj => value !== null && typeof value === 'object' && !Array.isArray(value);


/**
 * Routes for every operation of an OpenAPI 3.0 or 3.1 document: one `exact` route per path and
 * method (nothing under a listed path reachable), the operation's OAuth 2.0 / OpenID Connect
 * scopes as `scopes`, `security: []` as `public: true`, and a JSON request body checked against
 * the operation's own schema in the document (`requestBody.schema: <file>#/paths/…`). What the
 * document says that a route cannot (alternatives between security requirements, API keys,
 * non-JSON bodies) comes back in `notes`. Throws an Error for a document it cannot read.
 *
 * @example
 * ```ts
 * const { routes } = openApiRoutes(doc, { reference: './openapi.yaml', upstream: 'orders' });
 * ```
 */
export function openApiRoutes(doc: unknown, options: OpenApiRoutesOptions): OpenApiRoutes {
  if (!isObject(doc) || typeof doc.openapi !== 'string' || !/^3\.[01]\./.test(doc.openapi)) {
    throw new Error(`is not an OpenAPI 3.0 or 3.1 document (its "openapi" is ${JSON.stringify(isObject(doc) ? doc.openapi : undefined)})`);
  }
  if (!isObject(doc.paths)) throw new Error('has no "paths" object');
  const routes: GeneratedRoute[] = [];
  const notes: string[] = [];
  const schemes = isObject(doc.components) && isObject(doc.components.securitySchemes) ? doc.components.securitySchemes : {};
  const prefix = options.prefix === undefined ? '' : options.prefix.replace(/\/+$/, '');
  if (options.prefix !== undefined && !/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/.test(options.prefix)) {
    throw new Error(`cannot take the prefix ${JSON.stringify(options.prefix)}: a path such as /v1`);
  }
  const server = Array.isArray(doc.servers) && isObject(doc.servers[0]) && typeof doc.servers[0].url === 'string' ? doc.servers[0].url : undefined;
  const serverPath = server === undefined ? '' : (/^[a-z][a-z0-9+.-]*:\/\/[^/]*(\/.*)?$/i.exec(server)?.[1] ?? (server.startsWith('/') ? server : '')).replace(/\/+$/, '');
  if (serverPath !== '' && options.prefix === undefined) {
    notes.push(`servers[0].url (${server}) has the path ${serverPath}: the routes take the operations' paths as written; pass --prefix ${serverPath} if clients call the gateway under it`);
  }
  const names = new Set<string>();
  for (const [path, rawItem] of Object.entries(doc.paths)) {
    const item = resolveRef(doc, rawItem);
    if (!isObject(item) || !path.startsWith('/')) continue;
    for (const method of METHODS) {
      const op = item[method];
      if (!isObject(op)) continue;
      const where = `${method.toUpperCase()} ${path}`;
      const route: GeneratedRoute = {
        name: uniqueName(names, typeof op.operationId === 'string' ? op.operationId : `${method}-${path}`),
        path: prefix + gatehousePath(path, where, notes),
        exact: true,
        methods: [method.toUpperCase()],
        upstream: options.upstream,
      };
      applySecurity(route, op.security ?? doc.security, schemes, where, notes, options.issuer);
      const params = paramsSchemaOf(doc, item.parameters, op.parameters, path, where, notes);
      if (params !== null) route.params = { schema: params };
      const query = querySchemaOf(doc, item.parameters, op.parameters, where, notes);
      if (query !== null) route.query = { schema: query };
      const headers = headerSchemaOf(doc, item.parameters, op.parameters, where, notes);
      if (headers !== null) route.requestHeaders = { schema: headers };
      for (const name of parametersIn(doc, 'cookie', item.parameters, op.parameters).keys()) {
        notes.push(`${where}: the cookie parameter ${name} is not checked by gatehouse`);
      }
      const body = requestBodyOf(doc, op, `/paths/${escapePointer(path)}/${method}/requestBody`, where, notes);
      if (body !== null) {
        route.requestBody = {
          ...(body.pointer === null ? {} : { schema: `${options.reference}#${body.pointer}` }),
          ...(body.mediaTypes.length === 1 && body.mediaTypes[0] === 'json' ? {} : { mediaTypes: body.mediaTypes }),
          ...(body.required ? {} : { required: false as const }),
        };
      }
      if (options.responses !== undefined) {
        const answers = responseSchemasOf(doc, op, `/paths/${escapePointer(path)}/${method}/responses`, where, notes);
        if (answers !== null) {
          const schemas: Record<string, string> = {};
          for (const [status, pointer] of answers) schemas[status] = `${options.reference}#${pointer}`;
          route.responseBody = { schemas, ...(options.responses === 'log' ? { onInvalid: 'log' as const } : {}) };
        }
      }
      routes.push(route);
    }
  }
  if (routes.length === 0) notes.push('the document has no operations: no routes');
  return { routes, notes };
}

/** A route name from an operationId (or method and path): the name pattern, unique. */
function uniqueName(names: Set<string>, wanted: string): string {
  let base = wanted.replace(/[{}]/g, '').replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').replace(/-+$/, '').slice(0, 60) || 'operation';
  if (!NAME.test(base)) base = `op-${base}`.slice(0, 60);
  let name = base;
  for (let i = 2; names.has(name); i++) name = `${base}-${i}`;
  names.add(name);
  return name;
}

/** OpenAPI's path template as a route path: `{param}` segments kept; a segment that mixes text and a param becomes one param. */
function gatehousePath(path: string, where: string, notes: string[]): string {
  const segments = path.split('/').map((segment) => {
    if (!segment.includes('{')) return segment;
    const whole = /^\{([^{}]+)\}$/.exec(segment);
    const name = paramName(whole?.[1] ?? /\{([^{}]+)\}/.exec(segment)?.[1] ?? 'param');
    if (!whole) notes.push(`${where}: the segment ${JSON.stringify(segment)} is matched as a whole parameter {${name}} (a route segment is a literal or a parameter)`);
    else if (!PARAM_NAME.test(whole[1]!)) notes.push(`${where}: the parameter {${whole[1]}} is named {${name}} in the route (for claim rules)`);
    return `{${name}}`;
  });
  return segments.join('/') || '/';
}

/** A `{param}` name as a route path (and claim rules) can use it: letters, digits and `_`. */
function paramName(name: string): string {
  return name.replace(/[^A-Za-z0-9_]/g, '_').replace(/^(?=[0-9])/, '_');
}

/**
 * `security` (the operation's, else the document's): `[]` or an empty requirement → public; one
 * requirement → the OAuth 2.0 / OpenID Connect scopes it names (all required); several
 * alternatives → the first (gatehouse requires all of a route's scopes: the strictest reading).
 */
function applySecurity(route: GeneratedRoute, security: unknown, schemes: Obj, where: string, notes: string[], issuer: string | undefined): void {
  if (security === undefined) {
    notes.push(`${where}: no security requirement in the document: the route needs a valid token (default deny) and no scope`);
  } else if (Array.isArray(security) && (security.length === 0 || security.some((r) => isObject(r) && Object.keys(r).length === 0))) {
    route.public = true;
    if (security.length > 1) notes.push(`${where}: anonymous access is one of its security alternatives: the route is public`);
    return;
  } else if (Array.isArray(security) && isObject(security[0])) {
    if (security.length > 1) notes.push(`${where}: ${security.length} security alternatives; the route requires the first (${Object.keys(security[0]).join(' + ')})`);
    const scopes = new Set<string>();
    for (const [scheme, wanted] of Object.entries(security[0])) {
      const type = isObject(schemes[scheme]) ? schemes[scheme].type : undefined;
      if (type === 'oauth2' || type === 'openIdConnect') {
        if (Array.isArray(wanted)) for (const s of wanted) if (typeof s === 'string' && s !== '') scopes.add(s);
      } else {
        notes.push(`${where}: the security scheme ${scheme} (${String(type ?? 'not defined')}) is not checked by gatehouse; the route needs a valid access token`);
      }
    }
    if (scopes.size > 0) route.scopes = [...scopes];
  }
  if (issuer !== undefined) route.issuers = [issuer];
}

/** A form's media type, as OpenAPI documents write it (any case, parameters allowed). */
const FORM_MEDIA_TYPE = /^application\/x-www-form-urlencoded\s*(?:;|$)/i;

/**
 * The schema of an operation's request body, as a pointer into the document, and the kinds of
 * body the route takes: JSON, a form (application/x-www-form-urlencoded), or both when the
 * document gives both the same schema. Null without a body gatehouse can check.
 */
function requestBodyOf(doc: Obj, op: Obj, at: string, where: string, notes: string[]): { pointer: string | null; mediaTypes: ('json' | 'form')[]; required: boolean } | null {
  let body = op.requestBody;
  let pointer = at;
  // A body from components/requestBodies: the pointer follows the reference.
  if (isObject(body) && typeof body.$ref === 'string' && body.$ref.startsWith('#/')) {
    pointer = body.$ref.slice(1);
    body = resolveRef(doc, body);
  }
  if (!isObject(body)) return null;
  const content = isObject(body.content) ? body.content : {};
  const types = Object.keys(content);
  const json = types.find((t) => JSON_MEDIA_TYPE.test(t));
  const form = types.find((t) => FORM_MEDIA_TYPE.test(t));
  if (json === undefined && form === undefined) {
    if (types.length > 0) notes.push(`${where}: the request body (${types.join(', ')}) is neither JSON nor a form: not checked`);
    return null;
  }
  const schemaOf = (type: string | undefined) => {
    const media = type === undefined ? undefined : content[type];
    return isObject(media) && media.schema !== undefined ? media.schema : undefined;
  };
  const pointerTo = (type: string) => `${pointer}/content/${escapePointer(type)}/schema`;
  const required = body.required === true;
  const others = types.filter((t) => t !== json && t !== form);
  if (others.length > 0) notes.push(`${where}: the request body's ${others.join(', ')} ${others.length === 1 ? 'is' : 'are'} refused by the route (415): gatehouse checks JSON and form bodies`);
  if (json !== undefined) {
    const jsonSchema = schemaOf(json);
    if (jsonSchema === undefined) {
      notes.push(`${where}: the ${json} request body has no schema: any well-formed JSON`);
      return null;
    }
    if (form === undefined) return { pointer: pointerTo(json), mediaTypes: ['json'], required };
    const formSchema = schemaOf(form);
    if (formSchema !== undefined && JSON.stringify(formSchema) === JSON.stringify(jsonSchema)) return { pointer: pointerTo(json), mediaTypes: ['json', 'form'], required };
    notes.push(`${where}: the form body has ${formSchema === undefined ? 'no schema' : 'another schema than the JSON one'}: the route takes JSON only (a form gets 415)`);
    return { pointer: pointerTo(json), mediaTypes: ['json'], required };
  }
  const formSchema = schemaOf(form);
  if (formSchema === undefined) notes.push(`${where}: the ${form} request body has no schema: any well-formed form`);
  return { pointer: formSchema === undefined ? null : pointerTo(form!), mediaTypes: ['form'], required };
}

/**
 * The JSON schemas of an operation's answers by status (`200`, `2XX`, `default`), as pointers into
 * the document (through `components/responses` references); null when it has none. A status
 * without a JSON schema (no content, another media type) is not listed: its answers pass unread.
 */
function responseSchemasOf(doc: Obj, op: Obj, at: string, where: string, notes: string[]): [string, string][] | null {
  if (!isObject(op.responses)) return null;
  const out: [string, string][] = [];
  for (const [rawStatus, rawResponse] of Object.entries(op.responses)) {
    const status = rawStatus.toUpperCase();
    if (!/^([2-5][0-9][0-9]|[2-5]XX|DEFAULT)$/.test(status)) continue;
    let pointer = `${at}/${escapePointer(rawStatus)}`;
    let response = rawResponse;
    if (isObject(response) && typeof response.$ref === 'string' && response.$ref.startsWith('#/')) {
      pointer = response.$ref.slice(1);
      response = resolveRef(doc, response);
    }
    if (!isObject(response) || !isObject(response.content)) continue;
    const types = Object.keys(response.content);
    const json = types.find((t) => JSON_MEDIA_TYPE.test(t));
    const media = json === undefined ? undefined : response.content[json];
    if (json === undefined || !isObject(media) || media.schema === undefined) {
      if (types.length > 0) notes.push(`${where}: the ${rawStatus} answer (${types.join(', ')}) has no JSON schema: not checked`);
      continue;
    }
    out.push([status === 'DEFAULT' ? 'default' : status, `${pointer}/content/${escapePointer(json)}/schema`]);
  }
  return out.length > 0 ? out : null;
}

/**
 * The operation's query parameters (the path item's, overridden by the operation's of the same
 * name) as one inline schema: each parameter's schema under its name, the required ones in
 * `required`. Parameters not declared still pass (a document rarely lists every one a client
 * sends). Null without any.
 */
function querySchemaOf(doc: Obj, shared: unknown, own: unknown, where: string, notes: string[]): Record<string, unknown> | null {
  return parameterSchema(doc, parametersIn(doc, 'query', shared, own), 'query', where, notes);
}

/**
 * Headers OpenAPI says a header parameter does not describe ("If in is header and the name field
 * is Accept, Content-Type or Authorization, the parameter definition SHALL be ignored").
 */
const IGNORED_HEADERS = new Set(['accept', 'content-type', 'authorization']);

/**
 * The operation's header parameters as one inline schema under their lowercase names (headers
 * are matched lowercased), as a query's are. Null without any.
 */
function headerSchemaOf(doc: Obj, shared: unknown, own: unknown, where: string, notes: string[]): Record<string, unknown> | null {
  const byName = parametersIn(doc, 'header', shared, own);
  for (const name of byName.keys()) if (IGNORED_HEADERS.has(name)) byName.delete(name);
  return parameterSchema(doc, byName, 'header', where, notes);
}

/** Parameters (by name) as one inline object schema: each one's schema under its name, the required ones in `required`. */
function parameterSchema(doc: Obj, byName: Map<string, Obj>, location: 'query' | 'header', where: string, notes: string[]): Record<string, unknown> | null {
  if (byName.size === 0) return null;
  const properties: Record<string, unknown> = {};
  const required: string[] = [];
  for (const [name, param] of byName) {
    if (param.schema === undefined) {
      notes.push(`${where}: the ${location} parameter ${name} has no schema (content instead): any value`);
      properties[name] = {};
    } else {
      const inlined = inlineSchema(doc, param.schema, 0);
      if (inlined === undefined) {
        notes.push(`${where}: the ${location} parameter ${name}'s schema refers to itself: any value`);
        properties[name] = {};
      } else properties[name] = inlined;
    }
    if (param.required === true) required.push(name);
  }
  return required.length > 0 ? { type: 'object', properties, required } : { type: 'object', properties };
}

/**
 * The parameters of one location (`query`, `path`, `header`, `cookie`) by name: the path item's,
 * overridden by the operation's. Header names are case-insensitive: kept lowercased.
 */
function parametersIn(doc: Obj, location: string, shared: unknown, own: unknown): Map<string, Obj> {
  const byName = new Map<string, Obj>();
  for (const list of [shared, own]) {
    if (!Array.isArray(list)) continue;
    for (const raw of list) {
      const param = resolveRef(doc, raw);
      if (isObject(param) && param.in === location && typeof param.name === 'string') byName.set(location === 'header' ? param.name.toLowerCase() : param.name, param);
    }
  }
  return byName;
}

/**
 * The operation's path parameters as one inline schema, under the names the route's path gives
 * them (`{order-id}` is `{order_id}` there). A parameter in a segment with other text
 * (`{name}.pdf`, matched whole) or without a schema is left out, noted. Null without any.
 */
function paramsSchemaOf(doc: Obj, shared: unknown, own: unknown, path: string, where: string, notes: string[]): Record<string, unknown> | null {
  const byName = parametersIn(doc, 'path', shared, own);
  if (byName.size === 0) return null;
  const properties: Record<string, unknown> = {};
  for (const segment of path.split('/')) {
    const whole = /^\{([^{}]+)\}$/.exec(segment);
    if (whole === null) continue;
    const param = byName.get(whole[1]!);
    if (param === undefined) continue;
    const inlined = param.schema === undefined ? undefined : inlineSchema(doc, param.schema, 0);
    if (inlined === undefined) {
      notes.push(`${where}: the path parameter ${whole[1]} has no usable schema: any value`);
      continue;
    }
    properties[paramName(whole[1]!)] = inlined;
  }
  return Object.keys(properties).length > 0 ? { type: 'object', properties } : null;
}

/** OpenAPI words a config's inline JSON Schema would refuse as unknown keywords. */
const ANNOTATION_ONLY = new Set(['example', 'xml', 'externalDocs', 'discriminator']);

/** Keywords whose value maps names to schemas: the names are the API's, never dropped. */
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas']);

/** A schema with its local `$ref`s replaced by what they point at and OpenAPI's own words dropped; undefined for a cycle. */
function inlineSchema(doc: Obj, schema: unknown, depth: number, names = false): unknown {
  if (depth > 16) return undefined;
  if (Array.isArray(schema)) {
    const out: unknown[] = [];
    for (const item of schema) {
      const inlined = inlineSchema(doc, item, depth + 1);
      if (inlined === undefined) return undefined;
      out.push(inlined);
    }
    return out;
  }
  if (!isObject(schema)) return schema;
  if (typeof schema.$ref === 'string' && schema.$ref.startsWith('#/')) return inlineSchema(doc, resolveRef(doc, { $ref: schema.$ref }), depth + 1);
  const out: Obj = {};
  for (const [key, value] of Object.entries(schema)) {
    if (!names && (ANNOTATION_ONLY.has(key) || key.startsWith('x-'))) continue;
    const inlined = inlineSchema(doc, value, depth + 1, !names && SCHEMA_MAPS.has(key));
    if (inlined === undefined) return undefined;
    out[key] = inlined;
  }
  return out;
}

/** A local `$ref` (`#/components/…`) resolved, a few levels deep; anything else as it is. */
function resolveRef(doc: Obj, value: unknown, depth = 0): unknown {
  if (!isObject(value) || typeof value.$ref !== 'string' || !value.$ref.startsWith('#/') || depth > 8) return value;
  return resolveRef(doc, resolvePointer(doc, value.$ref.slice(1)), depth + 1);
}

/** What {@link readDocumentFile} returns for a file it could not read (the reason already written). */
export const UNREADABLE: unique symbol = Symbol('unreadable');

/**
 * An OpenAPI document file as `gatehouse openapi` and `gatehouse inventory` read it: JSON by its
 * `.json` name, else YAML (keys unique); `UNREADABLE` with the reason written to `err`.
 */
export function readDocumentFile(file: string, err: { write(text: string): unknown }): unknown {
  const json = /\.json$/i.test(file);
  try {
    const text = readFileSync(file, 'utf8');
    return json ? JSON.parse(text) : parseYaml(text, { uniqueKeys: true });
  } catch (e) {
    err.write(`gatehouse: ${file} cannot be read as ${json ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}\n`);
    return UNREADABLE;
  }
}

/**
 * `gatehouse openapi FILE --upstream NAME [--issuer NAME] [--prefix /v1] [--responses refuse|log]`:
 * print a `routes:` section for the document's operations. Exit 0, or 3 with the reason for a
 * file that is not an OpenAPI document.
 */
export function runOpenApiRoutes(
  file: string,
  options: { upstream: string; issuer?: string | undefined; prefix?: string | undefined; responses?: 'refuse' | 'log' | undefined },
  out: { write(text: string): unknown },
  err: { write(text: string): unknown },
): number {
  const doc = readDocumentFile(file, err);
  if (doc === UNREADABLE) return 3;
  let result: OpenApiRoutes;
  try {
    result = openApiRoutes(doc, { reference: file, ...options });
  } catch (e) {
    err.write(`gatehouse: ${file} ${(e as Error).message}\n`);
    return 3;
  }
  const yaml = new Document({ routes: result.routes });
  const header = [
    `routes for the operations of ${file} (gatehouse openapi): one exact route per path and method.`,
    `${options.responses === undefined ? 'requestBody.schema names' : 'requestBody.schema and responseBody.schemas name'} ${file} as it was given here: relative to the config file's directory.`,
    ...result.notes.map((n) => `note: ${n}`),
  ];
  yaml.commentBefore = header.map((line) => ` ${line}`).join('\n');
  out.write(yaml.toString({ lineWidth: 0 }));
  return 0;
}
