/**
 * Guards against hostile input (issue #6, point 5): JSON shape limits checked on the raw body
 * before it is parsed, strict content types, FHIR id syntax before an id goes into a URL,
 * search values escaped and query strings built by URLSearchParams only, rate limits per
 * client. Every refusal is an OperationOutcome. References to other servers are refused by
 * `referenceIssues` (src/app/ingestion.service.ts), which knows the Bundle a resource is in.
 *
 * Wiring (in `createApp`, see the comments of each export): `strictFhirContentType()` on
 * `/fhir` and `/hooks` before body parsing; `express.json({ ..., verify: verifyJsonShape(...) })`;
 * `refuseHostileJson()` after `express.json`; `rateLimitPerClient(...)` after authentication
 * on the routes it protects. The other exports are helpers for the services.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator, rateLimit, type Store } from 'express-rate-limit';
import { isFhirId } from '../domain/references.js';
import { OperationOutcomeError, badRequest, operationOutcome, unsupportedMediaType, type IssueInput } from './outcomes.js';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

// ---------------------------------------------------------------------------------------------
// JSON shape, on the raw body

export interface JsonShapeLimits {
  /** Deepest nesting of objects and arrays (the top-level object is depth 1). */
  maxDepth: number;
  /** Most items in one array. */
  maxArrayItems?: number;
  /** Most members in one object. */
  maxKeys?: number;
}

export interface JsonShapeViolation {
  limit: 'depth' | 'array-items' | 'keys';
  /** The limit that was exceeded. */
  max: number;
  /** Index (in bytes, or characters for a string input) where the limit was exceeded. */
  offset: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;
const isJsonWhitespace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/**
 * One pass over JSON text (UTF-8 bytes or a string: the structural characters are ASCII and
 * never part of a multi-byte UTF-8 sequence), counting nesting and container sizes outside
 * strings (escapes respected). It does not validate the JSON: the parser does that after it;
 * this only stops a body before the parser and the recursive code after it see its shape.
 */
export function scanJsonShape(raw: Uint8Array | string, limits: JsonShapeLimits): JsonShapeViolation | undefined {
  const { maxDepth, maxArrayItems = Infinity, maxKeys = Infinity } = limits;
  const at: (i: number) => number = typeof raw === 'string' ? (i) => raw.charCodeAt(i) : (i) => raw[i] as number;
  const length = raw.length;
  // Per open container: whether it is an array, and how many items/members it has so far.
  const isArray: boolean[] = [];
  const counts: number[] = [];
  let inString = false;
  let escaped = false;

  const tooMany = (top: number, count: number, offset: number): JsonShapeViolation | undefined => {
    if (isArray[top] && count > maxArrayItems) return { limit: 'array-items', max: maxArrayItems, offset };
    if (!isArray[top] && count > maxKeys) return { limit: 'keys', max: maxKeys, offset };
    return undefined;
  };
  // A value or member starts in the innermost container: its first item counts as 1 (commas count the others).
  const startItem = (offset: number): JsonShapeViolation | undefined => {
    const top = counts.length - 1;
    if (top < 0 || counts[top] !== 0) return undefined;
    counts[top] = 1;
    return tooMany(top, 1, offset);
  };

  for (let i = 0; i < length; i++) {
    const c = at(i);
    if (inString) {
      if (escaped) escaped = false;
      else if (c === BACKSLASH) escaped = true;
      else if (c === QUOTE) inString = false;
      continue;
    }
    let violation: JsonShapeViolation | undefined;
    if (c === QUOTE) {
      violation = startItem(i);
      inString = true;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      violation = startItem(i);
      isArray.push(c === OPEN_ARRAY);
      counts.push(0);
      if (isArray.length > maxDepth) return { limit: 'depth', max: maxDepth, offset: i };
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      isArray.pop();
      counts.pop();
    } else if (c === COMMA) {
      const top = counts.length - 1;
      if (top >= 0) {
        const count = (counts[top] as number) + 1;
        counts[top] = count;
        violation = tooMany(top, count, i);
      }
    } else if (!isJsonWhitespace(c)) {
      violation = startItem(i);
    }
    if (violation) return violation;
  }
  return undefined;
}

/** A checker of raw JSON text for depth (and members per object), run before JSON.parse. */
export function jsonDepthLimit(maxDepth: number, maxKeys?: number): (raw: Uint8Array | string) => JsonShapeViolation | undefined {
  return (raw) => scanJsonShape(raw, { maxDepth, ...(maxKeys !== undefined ? { maxKeys } : {}) });
}

/** `type` of the errors `verifyJsonShape` throws (body-parser keeps it; the app's error handler can match it). */
export const JSON_TOO_DEEP = 'entity.too.deep';
export const JSON_TOO_WIDE = 'entity.too.wide';

function describeViolation(violation: JsonShapeViolation): string {
  switch (violation.limit) {
    case 'depth':
      return `The JSON body nests objects and arrays deeper than ${violation.max} levels (maxDepth ${violation.max})`;
    case 'array-items':
      return `The JSON body has an array of more than ${violation.max} items (maxArrayItems ${violation.max})`;
    case 'keys':
      return `The JSON body has an object of more than ${violation.max} members (maxKeys ${violation.max})`;
  }
}

/**
 * The error thrown for a body over a shape limit: an OperationOutcomeError (status 400) that
 * also carries body-parser's `type` (`entity.too.deep` / `entity.too.wide`) and `status`, so the
 * app's handler maps it either by class or by type.
 */
export class JsonShapeError extends OperationOutcomeError {
  override name = 'JsonShapeError';
  readonly type: typeof JSON_TOO_DEEP | typeof JSON_TOO_WIDE;
  readonly violation: JsonShapeViolation;

  constructor(violation: JsonShapeViolation) {
    super(400, operationOutcome([{ code: 'too-costly', diagnostics: describeViolation(violation) }]));
    this.violation = violation;
    this.type = violation.limit === 'depth' ? JSON_TOO_DEEP : JSON_TOO_WIDE;
  }
}

/**
 * `express.json({ verify: verifyJsonShape({ maxDepth: 64, maxArrayItems: 10_000 }) })`: body-parser
 * hands the raw (inflated) body to `verify` before parsing it, and passes what it throws to the
 * error handler, keeping the error's `status` (400) and `type`.
 */
export function verifyJsonShape(limits: JsonShapeLimits): (req: unknown, res: unknown, buf: Buffer, encoding: string) => void {
  return (_req, _res, buf, encoding) => {
    let raw: Uint8Array | string = buf;
    const charset = (encoding || 'utf-8').toLowerCase();
    if (charset !== 'utf-8' && charset !== 'utf8') {
      try {
        raw = new TextDecoder(charset).decode(buf);
      } catch {
        return; // a charset we cannot decode: body-parser refuses it anyway
      }
    }
    const violation = scanJsonShape(raw, limits);
    if (violation) throw new JsonShapeError(violation);
  };
}

// ---------------------------------------------------------------------------------------------
// Keys that are no FHIR element and that prototype-walking code treats specially

export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

const FHIRPATH_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const fhirPathStep = (key: string): string => (FHIRPATH_NAME.test(key) ? `.${key}` : `.\`${key.replace(/[`\\]/g, (c) => `\\${c}`)}\``);

function rootPath(value: unknown, given?: string): string {
  if (given) return given;
  const type = (value as { resourceType?: unknown } | null)?.resourceType;
  return typeof type === 'string' && /^[A-Z][A-Za-z]{1,63}$/.test(type) ? type : 'Resource';
}

/**
 * Walks JSON iteratively (no recursion on hostile nesting), calling `visit` on every value in
 * document order with its FHIRPath, and the member name when it is an object member.
 */
function walkValues(root: unknown, path: string, visit: (value: unknown, path: string, key?: string) => void): void {
  const stack: [unknown, string, string | undefined][] = [[root, path, undefined]];
  while (stack.length) {
    const [value, at, key] = stack.pop() as [unknown, string, string | undefined];
    visit(value, at, key);
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push([value[i], `${at}[${i}]`, undefined]);
    } else if (typeof value === 'object' && value !== null) {
      const keys = Object.keys(value);
      for (let k = keys.length - 1; k >= 0; k--) {
        const member = keys[k] as string;
        stack.push([(value as Record<string, unknown>)[member], `${at}${fhirPathStep(member)}`, member]);
      }
    }
  }
}

/** Issues for every `__proto__`, `constructor` or `prototype` member anywhere in a parsed body. */
export function findForbiddenKeys(body: unknown, path?: string): IssueInput[] {
  const issues: IssueInput[] = [];
  walkValues(body, rootPath(body, path), (_value, at, key) => {
    if (key !== undefined && FORBIDDEN_KEYS.has(key)) issues.push({ code: 'structure', diagnostics: `"${key}" is not an element of any FHIR resource`, expression: [at] });
  });
  return issues;
}

/** C0 controls other than tab, LF and CR (http://hl7.org/fhir/R4/datatypes.html#string). */
const CONTROL_CHARACTER = /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/;

/**
 * Issues for every string (member name or value) holding a C0 control character other than
 * tab, LF and CR. FHIR strings may not hold them; Medplum's validator only checks `string`
 * elements, not `code`, `uri`, `id` or what it does not know, and a NUL in an identifier or a
 * URL breaks what receives it (search, logs, the insurer gateway).
 */
export function findControlCharacters(body: unknown, path?: string): IssueInput[] {
  const issues: IssueInput[] = [];
  walkValues(body, rootPath(body, path), (value, at, key) => {
    if ((key !== undefined && CONTROL_CHARACTER.test(key)) || (typeof value === 'string' && CONTROL_CHARACTER.test(value))) issues.push(controlIssue(at));
  });
  return issues;
}

const controlIssue = (at: string): IssueInput => ({
  code: 'invalid',
  diagnostics: 'Control characters (other than tab, LF and CR) are not allowed in FHIR strings',
  expression: [at],
});

/** Most issues one refusal lists (a hostile body may hold millions). */
const MAX_ISSUES = 20;

/**
 * After `express.json`, on `/fhir` and `/hooks`: a 400 OperationOutcome for a body holding
 * `__proto__`, `constructor` or `prototype` members or C0 control characters, with the
 * FHIRPath of each (at most 20).
 */
export function refuseHostileJson(): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    const body: unknown = req.body;
    if (typeof body === 'object' && body !== null) {
      const issues = [...findForbiddenKeys(body), ...findControlCharacters(body)];
      if (issues.length) {
        next(new OperationOutcomeError(400, operationOutcome(issues.slice(0, MAX_ISSUES))));
        return;
      }
    }
    next();
  };
}

// ---------------------------------------------------------------------------------------------
// Content types

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_TYPE = new RegExp(`^[ \\t]*(${TOKEN})/(${TOKEN})[ \\t]*`);
const PARAMETER = new RegExp(`^;[ \\t]*(${TOKEN})=(${TOKEN}|"(?:[^"\\\\]|\\\\.)*")[ \\t]*`);

export interface MediaType {
  type: string;
  parameters: Map<string, string>;
}

/** RFC 9110 media type (`type/subtype; name=value; ...`), names lower-cased; undefined when malformed or a parameter repeats. */
export function parseMediaType(header: string): MediaType | undefined {
  const head = MEDIA_TYPE.exec(header);
  if (!head) return undefined;
  const type = `${head[1] as string}/${head[2] as string}`.toLowerCase();
  const parameters = new Map<string, string>();
  let rest = header.slice(head[0].length);
  while (rest.length) {
    const parameter = PARAMETER.exec(rest);
    if (!parameter) return undefined;
    const name = (parameter[1] as string).toLowerCase();
    const raw = parameter[2] as string;
    const value = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
    if (parameters.has(name)) return undefined;
    parameters.set(name, value);
    rest = rest.slice(parameter[0].length);
  }
  return { type, parameters };
}

export const FHIR_JSON_TYPES: readonly string[] = ['application/fhir+json', 'application/json'];

/**
 * Why a Content-Type is refused, or undefined when it is FHIR JSON: `application/fhir+json` or
 * `application/json`, optionally with `charset=utf-8` (any case, quoted or not) and the FHIR
 * version parameter `fhirVersion=4.0` (http://hl7.org/fhir/R4/http.html#version-parameter).
 */
export function contentTypeProblem(header: string | undefined): string | undefined {
  if (header === undefined || header.trim() === '') return 'A body needs a Content-Type: application/fhir+json';
  const media = parseMediaType(header);
  if (!media) return 'Malformed Content-Type; send application/fhir+json';
  if (!FHIR_JSON_TYPES.includes(media.type)) return `Content-Type must be application/fhir+json, got "${media.type}"`;
  for (const [name, value] of media.parameters) {
    if (name === 'charset' && value.toLowerCase() === 'utf-8') continue;
    if (name === 'fhirversion' && value === '4.0') continue;
    if (name === 'charset') return `Only charset=utf-8 is accepted, got "${value}"`;
    if (name === 'fhirversion') return `This server speaks FHIR R4 (fhirVersion=4.0), got "${value}"`;
    return `Unsupported Content-Type parameter "${name}"`;
  }
  return undefined;
}

function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/**
 * 415 OperationOutcome for a POST, PUT or PATCH with a body that is not FHIR JSON (see
 * `contentTypeProblem`). Drop-in for the content-type middleware of `createApp`:
 * `app.use(['/fhir', '/hooks'], strictFhirContentType())` before `express.json`.
 */
export function strictFhirContentType(): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    if ((req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH') && hasBody(req)) {
      const problem = contentTypeProblem(req.headers['content-type']);
      if (problem) {
        next(unsupportedMediaType(problem));
        return;
      }
    }
    next();
  };
}

// ---------------------------------------------------------------------------------------------
// Ids and search URLs

const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

/** FHIR id syntax minus `.` and `..` (URL dot-segments): one definition, in src/domain/references.ts. */
export { isFhirId };

/** The id, or a 400 OperationOutcome (`badRequest`) naming what it was meant to identify. */
export function assertFhirId(value: unknown, what: string): string {
  if (!isFhirId(value)) throw badRequest(`Invalid ${what} id`, what);
  return value;
}

/** `Type/id` for a URL or a reference search, after checking both parts. */
export function localReference(type: string, id: unknown): string {
  if (!RESOURCE_TYPE.test(type)) throw badRequest(`Invalid resource type "${type}"`, type);
  return `${type}/${assertFhirId(id, type)}`;
}

/**
 * A value embedded in a search parameter, with the characters FHIR search gives a meaning
 * escaped (http://hl7.org/fhir/R4/search.html#escaping): `\` first, then `,` (OR), `$`
 * (composite) and `|` (token system). URL encoding is a separate, later step (`searchParams`).
 */
export function safeSearchValue(value: string): string {
  return value.replace(/[\\,$|]/g, (c) => `\\${c}`);
}

/** A token search value `system|code`, each part escaped. */
export function tokenSearchValue(system: string, code: string): string {
  return `${safeSearchValue(system)}|${safeSearchValue(code)}`;
}

export type SearchValue = string | number | boolean;

/**
 * A query string built by URLSearchParams only (never by concatenation); an array repeats the
 * parameter (AND), undefined leaves it out. Values are URL-encoded here but not search-escaped:
 * pass values that come from outside through `safeSearchValue` / `tokenSearchValue` first.
 */
export function searchParams(record: Readonly<Record<string, SearchValue | readonly SearchValue[] | undefined>>): string {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(record)) {
    if (value === undefined) continue;
    const values: readonly SearchValue[] = Array.isArray(value) ? (value as readonly SearchValue[]) : [value as SearchValue];
    for (const item of values) query.append(name, String(item));
  }
  return query.toString();
}

/** `Type?query` for a batch entry or a search, the type checked. */
export function searchUrl(type: string, record: Readonly<Record<string, SearchValue | readonly SearchValue[] | undefined>>): string {
  if (!RESOURCE_TYPE.test(type)) throw badRequest(`Invalid resource type "${type}"`, type);
  const query = searchParams(record);
  return query ? `${type}?${query}` : type;
}

// ---------------------------------------------------------------------------------------------
// Rate limits

export interface RateLimitOptions {
  windowMs: number;
  /** Requests allowed per client and window. */
  limit: number;
  /**
   * The client a request counts for (its authenticated client id once authentication exists).
   * To fall back on the address, use `ipKeyGenerator(req.ip ?? '')` (IPv6 grouped by /56).
   */
  keyOf: (req: Request, res: Response) => string;
  /** Shared store for several processes (e.g. a Redis store); in memory by default. */
  store?: Store;
  /** Requests that never count (health probes). */
  skip?: (req: Request, res: Response) => boolean;
  /** Let requests through when the store fails (e.g. Redis down) instead of failing them. */
  passOnStoreError?: boolean;
}

export { ipKeyGenerator };

/**
 * express-rate-limit per client: `RateLimit` / `RateLimit-Policy` headers (IETF draft 7), and
 * past the limit a 429 OperationOutcome (`throttled`) with `Retry-After` in seconds.
 */
export function rateLimitPerClient(options: RateLimitOptions): RequestHandler {
  return rateLimit({
    windowMs: options.windowMs,
    limit: options.limit,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    keyGenerator: options.keyOf,
    ...(options.store ? { store: options.store } : {}),
    ...(options.skip ? { skip: options.skip } : {}),
    ...(options.passOnStoreError ? { passOnStoreError: true } : {}),
    handler: (_req, res, _next, used) => {
      const retryAfter = res.getHeader('Retry-After');
      const outcome = operationOutcome([
        {
          code: 'throttled',
          diagnostics: `Too many requests: at most ${String(used.limit)} per ${Math.ceil(used.windowMs / 1000)} s for this client${retryAfter !== undefined ? `; retry after ${String(retryAfter)} s` : ''}`,
        },
      ]);
      res.status(used.statusCode).set('Content-Type', FHIR_JSON).send(JSON.stringify(outcome));
    },
  });
}
