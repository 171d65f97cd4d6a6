/**
 * Inbound authentication (issue #6): OAuth 2.0 bearer tokens, JWTs signed RS256 or ES256,
 * verified with `jose` against a JWKS (a URL, a file or an object), then the client's SMART
 * system scopes and its centre (a claim mapped in configuration).
 *
 * Failures are `AuthError`s carrying their HTTP status, an OperationOutcome and the
 * `WWW-Authenticate` value (RFC 6750): 401 for a missing, malformed, expired, not yet valid,
 * badly signed token or one from another issuer or for another audience; 403 for a valid
 * token that is under-scoped or not bound to a participating centre; 503 when a remote JWKS
 * cannot be fetched (nothing can be verified: fail closed, but do not blame the client).
 * The token is never logged, echoed or kept in an error (jose's errors, which carry the
 * claims, are not chained).
 */
import { readFileSync } from 'node:fs';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { operationOutcome } from './outcomes.js';
import { missingScopes, requiresCentre } from './scopes.js';

export type { JSONWebKeySet } from 'jose';

/** The authenticated caller. Structurally the `ClientIdentity` of `src/app/centre-access.ts`. */
export interface ClientIdentity {
  /** `client_id` claim, else `sub`. */
  clientId: string;
  /** `system|value` of the participating centre the token's centre claim maps to; undefined only on centre-free (operator) routes. */
  centre: string | undefined;
  /** The space-separated `scope` claim (or `scp`, string or array), split. */
  scopes: string[];
}

declare global {
  // Express's augmentation point for `res.locals` (interface merging needs a namespace).
  namespace Express {
    interface Locals {
      /** Set by authMiddleware on every authenticated request. */
      client?: ClientIdentity;
    }
  }
}

/** Why authentication failed: for logs, metrics and AuditEvents (never contains the token). */
export type AuthFailureReason =
  | 'missing'
  | 'malformed'
  | 'expired'
  | 'not-yet-valid'
  | 'bad-signature'
  | 'unsupported-alg'
  | 'bad-claims'
  | 'no-client-id'
  | 'no-centre'
  | 'unknown-centre'
  | 'insufficient-scope'
  | 'jwks-unavailable';

export class AuthError extends Error {
  override name = 'AuthError';
  readonly outcome: fhir4.OperationOutcome;
  constructor(
    readonly status: 401 | 403 | 503,
    readonly reason: AuthFailureReason,
    diagnostics: string,
    /** The `WWW-Authenticate` header value (empty for 503). */
    readonly wwwAuthenticate: string,
  ) {
    super(diagnostics);
    const code = status === 503 ? 'transient' : status === 403 ? 'forbidden' : reason === 'expired' ? 'expired' : 'login';
    this.outcome = operationOutcome([{ code, diagnostics }]);
  }
}

export type Algorithm = 'RS256' | 'ES256';

export interface AuthenticatorOptions {
  /** A JWKS URL (https, or http on a loopback host only). Exactly one of jwksUrl, jwksFile, jwks. */
  jwksUrl?: string;
  /** A JWKS JSON file, read once at creation. */
  jwksFile?: string;
  /** A JWKS object. */
  jwks?: JSONWebKeySet;
  /** Expected `iss`, exactly. */
  issuer: string;
  /** Expected in `aud`. */
  audience: string;
  /** Accepted signature algorithms; default both. */
  algorithms?: Algorithm[];
  /** Name of the claim naming the client's centre (e.g. `centre`). */
  centreClaim: string;
  /** Centre claim value → centre identifier `system|value` (a participating centre). */
  centres: ReadonlyMap<string, string>;
  /** Leeway for `exp` / `nbf` / `iat`, seconds; default 30. */
  clockToleranceSec?: number;
  /** Remote JWKS fetch timeout, ms; default 5000. */
  jwksTimeoutMs?: number;
}

export interface AuthenticateOptions {
  /** A token without a centre claim is refused (403) unless false; an unknown centre always is. Default true. */
  requireCentre?: boolean;
}

export interface Authenticator {
  /** The identity in a valid `Authorization: Bearer` header; throws AuthError otherwise. */
  authenticate(authorizationHeader: string | undefined, options?: AuthenticateOptions): Promise<ClientIdentity>;
}

const ALGORITHMS: readonly Algorithm[] = ['RS256', 'ES256'];
/** RFC 6750 b64token; a JWT is three base64url parts. Bounded: no header is worth more. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
const MAX_HEADER_LENGTH = 16 * 1024;

/** Safe inside a quoted-string of a header (RFC 6750 forbids `"` and `\` in these values). */
const quoted = (text: string): string => text.replace(/[^\x20-\x7e]|["\\]/g, "'");

const challenge = (error?: 'invalid_request' | 'invalid_token' | 'insufficient_scope', description?: string, scope?: string): string =>
  [
    'Bearer',
    [error ? `error="${error}"` : '', description ? `error_description="${quoted(description)}"` : '', scope ? `scope="${quoted(scope)}"` : ''].filter(Boolean).join(', '),
  ]
    .filter(Boolean)
    .join(' ');

/** `error: null`: a bare `Bearer` challenge (RFC 6750 §3.1: no error code when no token was sent). */
const unauthorized = (reason: AuthFailureReason, diagnostics: string, error: 'invalid_request' | 'invalid_token' | null = 'invalid_token'): AuthError =>
  error === null ? new AuthError(401, reason, diagnostics, challenge()) : new AuthError(401, reason, diagnostics, challenge(error, diagnostics));

const forbidden = (reason: AuthFailureReason, diagnostics: string, scope?: string): AuthError =>
  new AuthError(403, reason, diagnostics, challenge('insufficient_scope', diagnostics, scope));

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}

function isKeySet(value: unknown): value is JSONWebKeySet {
  return typeof value === 'object' && value !== null && Array.isArray((value as { keys?: unknown }).keys);
}

function keyResolver(options: AuthenticatorOptions): { getKey: JWTVerifyGetKey; remote: boolean } {
  const sources = [options.jwksUrl, options.jwksFile, options.jwks].filter((source) => source !== undefined);
  if (sources.length !== 1) throw new Error('Authentication needs exactly one of jwksUrl, jwksFile, jwks');
  if (options.jwksUrl !== undefined) {
    const url = new URL(options.jwksUrl);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
      throw new Error(`The JWKS URL must be https (http only on a loopback host): ${url.origin}`);
    }
    return { getKey: createRemoteJWKSet(url, { timeoutDuration: options.jwksTimeoutMs ?? 5000 }), remote: true };
  }
  let jwks: unknown = options.jwks;
  if (options.jwksFile !== undefined) {
    try {
      jwks = JSON.parse(readFileSync(options.jwksFile, 'utf8'));
    } catch (error) {
      throw new Error(`Cannot read the JWKS file ${options.jwksFile}: ${(error as Error).message}`);
    }
  }
  if (!isKeySet(jwks) || jwks.keys.length === 0) throw new Error('The JWKS must be an object with a non-empty "keys" array');
  if (jwks.keys.some((key) => 'd' in key || 'k' in key)) throw new Error('The JWKS must hold public keys only (a private or symmetric key was given)');
  return { getKey: createLocalJWKSet(jwks), remote: false };
}

/** A JOSE failure as an AuthError with our own words (jose's messages and payload stay out). */
function translate(error: unknown, remote: boolean): AuthError {
  if (error instanceof errors.JWTExpired) return unauthorized('expired', 'The access token has expired');
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf' || error.claim === 'iat') return unauthorized('not-yet-valid', 'The access token is not valid yet');
    if (error.claim === 'iss') return unauthorized('bad-claims', 'The access token was not issued by the expected issuer');
    if (error.claim === 'aud') return unauthorized('bad-claims', 'The access token is not meant for this service (audience)');
    return unauthorized('bad-claims', `The access token has a missing or invalid claim ${/^[a-z_]{1,32}$/i.test(error.claim) ? error.claim : '(unnamed)'}`);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return unauthorized('unsupported-alg', 'The access token is signed with an algorithm this service does not accept');
  if (error instanceof errors.JWSSignatureVerificationFailed) return unauthorized('bad-signature', 'The access token signature does not verify');
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return unauthorized('bad-signature', 'The access token is not signed by a key of the trusted key set');
  }
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) {
    return new AuthError(503, 'jwks-unavailable', 'The key set to verify access tokens is unavailable; try again later', '');
  }
  // A remote key set answering other than 200 JSON (a generic JOSEError), or not answering at
  // all (a network error, not a JOSEError), is not the client's fault.
  if (remote && (!(error instanceof errors.JOSEError) || error.code === 'ERR_JOSE_GENERIC')) {
    return new AuthError(503, 'jwks-unavailable', 'The key set to verify access tokens is unavailable; try again later', '');
  }
  // Any other failure (a JWS that does not parse, `alg: none`, ...): refused, fail closed.
  return unauthorized('malformed', 'The access token is not a valid signed JWT');
}

function scopesOf(payload: JWTPayload): string[] {
  const claim = payload['scope'] ?? payload['scp'];
  const words = typeof claim === 'string' ? claim.split(' ') : Array.isArray(claim) ? claim.filter((s): s is string => typeof s === 'string') : [];
  return [...new Set(words.map((word) => word.trim()).filter(Boolean))];
}

export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { getKey, remote } = keyResolver(options);
  const algorithms = options.algorithms ?? [...ALGORITHMS];
  if (algorithms.length === 0 || algorithms.some((alg) => !ALGORITHMS.includes(alg))) {
    throw new Error(`Accepted token algorithms must be among ${ALGORITHMS.join(', ')}`);
  }
  if (!options.issuer || !options.audience || !options.centreClaim) throw new Error('Authentication needs an issuer, an audience and a centre claim name');

  return {
    async authenticate(header, authenticateOptions = {}) {
      if (header === undefined || header.trim() === '') throw unauthorized('missing', 'An access token is required (Authorization: Bearer)', null);
      if (header.length > MAX_HEADER_LENGTH) throw unauthorized('malformed', 'The Authorization header is too long', 'invalid_request');
      if (!/^Bearer(?: |$)/i.test(header)) throw unauthorized('malformed', 'Only the Bearer authorization scheme is accepted', null);
      const match = BEARER.exec(header);
      if (!match) throw unauthorized('malformed', 'The Authorization header does not hold a bearer token', 'invalid_request');
      const token = match[1] as string;

      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, getKey, {
          issuer: options.issuer,
          audience: options.audience,
          algorithms: [...algorithms],
          clockTolerance: options.clockToleranceSec ?? 30,
          requiredClaims: ['exp'],
        }));
      } catch (error) {
        throw translate(error, remote);
      }

      const clientId = [payload['client_id'], payload.sub].find((value): value is string => typeof value === 'string' && value.length > 0);
      if (!clientId) throw unauthorized('no-client-id', 'The access token names no client (client_id or sub)');

      const centreValue = payload[options.centreClaim];
      let centre: string | undefined;
      if (centreValue === undefined) {
        if (authenticateOptions.requireCentre ?? true) throw forbidden('no-centre', 'The access token is not bound to a participating centre');
      } else {
        centre = typeof centreValue === 'string' ? options.centres.get(centreValue) : undefined;
        if (!centre) throw forbidden('unknown-centre', 'The access token names a centre that does not take part in this service');
      }
      return { clientId, centre, scopes: scopesOf(payload) };
    },
  };
}

/**
 * The centre map of configuration (`AUTH_CENTRES`): a JSON object `{"<claim value>": "system|value"}`
 * or a comma-separated list `<claim value>=system|value,...`. Throws on anything else, on an
 * identifier that is not `system|value`, and on a claim value given twice.
 */
export function parseCentreMap(text: string): Map<string, string> {
  const trimmed = text.trim();
  let pairs: [string, unknown][];
  if (trimmed.startsWith('{')) {
    const parsed: unknown = JSON.parse(trimmed);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('The centre map must be a JSON object');
    pairs = Object.entries(parsed);
  } else {
    pairs = trimmed
      .split(',')
      .map((item) => item.trim())
      .filter(Boolean)
      .map((item) => {
        const at = item.indexOf('=');
        if (at <= 0) throw new Error(`Centre map entry "${item}" is not <claim value>=system|value`);
        return [item.slice(0, at).trim(), item.slice(at + 1).trim()];
      });
  }
  const map = new Map<string, string>();
  for (const [claim, identifier] of pairs) {
    if (typeof identifier !== 'string' || !/^[^|\s]+\|[^|\s]+$/.test(identifier)) throw new Error(`Centre "${claim}" must map to an identifier system|value`);
    if (map.has(claim)) throw new Error(`Centre claim value "${claim}" is mapped twice`);
    map.set(claim, identifier);
  }
  if (map.size === 0) throw new Error('The centre map is empty');
  return map;
}

/** Throws a 403 AuthError unless the client's scopes satisfy every required scope. */
export function assertScopes(client: ClientIdentity, required: readonly string[]): void {
  const missing = missingScopes(client.scopes, required);
  if (missing.length) throw forbidden('insufficient-scope', `The access token lacks the scope(s) ${missing.join(' ')}`, missing.join(' '));
}

/** The client authMiddleware authenticated (for handlers behind it). */
export function clientOf(res: Response): ClientIdentity {
  const client = res.locals.client;
  if (!client) throw new Error('No authenticated client on this request (is authMiddleware mounted before this route?)');
  return client;
}

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

/** Answers an AuthError: its status, OperationOutcome and WWW-Authenticate; not cached. */
export function sendAuthError(res: Response, error: AuthError): void {
  res.status(error.status).set({
    'Content-Type': FHIR_JSON,
    'Cache-Control': 'no-store',
    ...(error.wwwAuthenticate ? { 'WWW-Authenticate': error.wwwAuthenticate } : {}),
    ...(error.status === 503 ? { 'Retry-After': '5' } : {}),
  });
  res.send(JSON.stringify(error.outcome));
}

export interface AuthMiddlewareOptions {
  /** The scopes the request needs (`requiredScopes(req.method, req.path)`); null: a public route, no token. */
  scopeFor: (req: Request) => readonly string[] | null;
  /** Whether the client must be bound to a centre; default `requiresCentre(scopes)` (not for operator-only routes). */
  centreRequired?: (req: Request, scopes: readonly string[]) => boolean;
  /** Told of every refusal (for logs and audit; no token in it). */
  onFailure?: (req: Request, error: AuthError) => void;
}

/**
 * Authenticates the request and checks the route's scopes before anything else runs (no
 * body needed): `res.locals.client` on success; otherwise the 401/403/503 OperationOutcome
 * is the whole answer. Routes whose scopes depend on the body (`POST /fhir`) call
 * `assertScopes(clientOf(res), bundleScopes(req.body))` themselves.
 */
export function authMiddleware(authenticator: Authenticator, options: AuthMiddlewareOptions): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const scopes = options.scopeFor(req);
    if (scopes === null) {
      next();
      return;
    }
    try {
      const requireCentre = options.centreRequired ? options.centreRequired(req, scopes) : requiresCentre(scopes);
      const client = await authenticator.authenticate(req.headers.authorization, { requireCentre });
      assertScopes(client, scopes);
      res.locals.client = client;
    } catch (error) {
      if (!(error instanceof AuthError)) throw error;
      options.onFailure?.(req, error);
      sendAuthError(res, error);
      return;
    }
    next();
  };
}
