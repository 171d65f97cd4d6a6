/**
 * Outbound authentication by SMART Backend Services
 * (https://hl7.org/fhir/smart-app-launch/backend-services.html): OAuth 2.0 client credentials
 * where the client authenticates with a signed JWT (`private_key_jwt`, RFC 7523) instead of a
 * shared secret.
 *
 * - The client assertion: header `{ alg, kid, typ: 'JWT' }`, claims `iss = sub = clientId`,
 *   `aud = tokenUrl`, a random `jti`, `iat`, and `exp` at most five minutes ahead.
 * - The token request: `POST tokenUrl` as `application/x-www-form-urlencoded` with
 *   `grant_type=client_credentials`, `scope`, `client_assertion_type` and `client_assertion`.
 * - The access token is cached until `expires_in − skewSeconds`; concurrent callers share
 *   one in-flight request; `invalidate(token)` drops it (after a 401) unless a newer one
 *   has replaced it already, so a burst of 401s costs one new token, not one each.
 *
 * Neither the assertion nor an access token ever appears in an error message: those reach
 * logs and job payloads. Secrets (the private key) come from a file or the environment,
 * read by `loadPrivateKey`; never from the repository.
 */
import { createPrivateKey, randomUUID, type JsonWebKey, type KeyObject as NodeKeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SignJWT, importPKCS8, type CryptoKey, type JWK, type KeyObject } from 'jose';

export type SmartSigningAlg = 'RS384' | 'ES384' | 'RS256' | 'ES256';
export const SMART_SIGNING_ALGS: readonly SmartSigningAlg[] = ['RS384', 'ES384', 'RS256', 'ES256'];

/** What an adapter needs: a current access token, and a way to drop one the server refused. */
export interface AccessTokenProvider {
  /** A valid access token (cached, or fetched now). Rejects with a SmartTokenError. */
  token(): Promise<string>;
  /**
   * Forget the cached token. With `token`, only if it is still the cached one (a 401 for an
   * old token must not throw away the fresh one another request already fetched).
   */
  invalidate(token?: string): void;
}

/** What adapters accept: a provider, or a bare function (re-asked after a 401, nothing to invalidate). */
export type TokenProviderOption = AccessTokenProvider | (() => Promise<string>);

export function toAccessTokenProvider(option: TokenProviderOption): AccessTokenProvider {
  return typeof option === 'function' ? { token: option, invalidate: () => undefined } : option;
}

/** A token request that failed. The message names the endpoint and the OAuth error code, never a secret. */
export class SmartTokenError extends Error {
  override name = 'SmartTokenError';
  constructor(
    message: string,
    /** HTTP status of the token endpoint, 0 when there was no answer (network, timeout). */
    readonly status: number,
    /** True when asking again later may succeed (network, timeout, 408/429/5xx). */
    readonly transient: boolean,
    /** The OAuth `error` code (RFC 6749 §5.2), when the endpoint sent one. */
    readonly oauthError?: string,
  ) {
    super(message);
  }
}

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface SmartBackendOptions {
  /** The authorization server's token endpoint (`token_endpoint` of `.well-known/smart-configuration`). */
  tokenUrl: string;
  /** The client id registered with the authorization server. */
  clientId: string;
  /** The private key that signs client assertions (see `loadPrivateKey`). */
  privateKey: CryptoKey | KeyObject | JWK;
  /** `kid` of the matching public key in the JWKS registered with the authorization server. */
  keyId: string;
  alg: SmartSigningAlg;
  /** Space-separated scopes, e.g. `system/Patient.rs system/Observation.cruds`. */
  scope: string;
  /** Defaults to the global fetch. */
  fetch?: FetchLike;
  /** Clock in ms since the epoch (defaults to Date.now). */
  now?: () => number;
  /** A token is renewed this many seconds before its `expires_in` runs out (default 60). */
  skewSeconds?: number;
  /** Lifetime of a client assertion in seconds, at most 300 per the spec (default 240). */
  assertionLifetimeSeconds?: number;
  /** Timeout of one token request, ms (default 10000). */
  timeoutMs?: number;
}

export interface SmartBackendTokenProvider extends AccessTokenProvider {
  /** Token requests sent so far (for metrics and tests). */
  readonly requests: number;
}

const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** When a token endpoint omits `expires_in` (it should not), assume a short life. */
const DEFAULT_EXPIRES_IN_S = 300;
const TRANSIENT_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504]);
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
/** Anything shaped like a JWT (an assertion or a JWT access token) is cut out of server-supplied text. */
const JWT_SHAPE = /[\w-]{8,}\.[\w-]{8,}\.[\w-]*/g;

interface CachedToken {
  value: string;
  /** ms since the epoch after which the token is not used any more. */
  renewAt: number;
}

/** Server-supplied text made safe for a message: no JWT-shaped strings, no control characters, short. */
function sanitise(text: string, max = 160): string {
  return text
    .replace(JWT_SHAPE, '[redacted]')
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .slice(0, max);
}

export function createSmartBackendTokenProvider(options: SmartBackendOptions): SmartBackendTokenProvider {
  const { tokenUrl, clientId, privateKey, keyId, alg, scope } = options;
  const doFetch: FetchLike = options.fetch ?? ((url, init) => fetch(url, init));
  const now = options.now ?? Date.now;
  const skewMs = (options.skewSeconds ?? 60) * 1000;
  const assertionLifetime = options.assertionLifetimeSeconds ?? 240;
  const timeoutMs = options.timeoutMs ?? 10_000;

  let url: URL;
  try {
    url = new URL(tokenUrl);
  } catch {
    throw new Error(`SMART backend: the token URL is not a URL (${JSON.stringify(tokenUrl.slice(0, 200))})`);
  }
  // A client assertion is a credential for its lifetime: it travels over TLS, except to this machine.
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname))) {
    throw new Error(`SMART backend: the token URL must use https (got ${url.protocol}//${url.host})`);
  }
  if (!SMART_SIGNING_ALGS.includes(alg)) throw new Error(`SMART backend: unsupported alg ${String(alg)} (use ${SMART_SIGNING_ALGS.join(', ')})`);
  if (!clientId) throw new Error('SMART backend: clientId is required');
  if (!keyId) throw new Error('SMART backend: keyId is required (the kid of the registered public key)');
  if (!scope.trim()) throw new Error('SMART backend: scope is required');
  if (!(assertionLifetime > 0 && assertionLifetime <= 300)) {
    throw new Error('SMART backend: assertionLifetimeSeconds must be in (0, 300] (the spec allows at most five minutes)');
  }

  const endpoint = `${url.origin}${url.pathname}`;
  let cached: CachedToken | undefined;
  let inFlight: Promise<CachedToken> | undefined;
  let requests = 0;

  async function assertion(): Promise<string> {
    const issuedAt = Math.floor(now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg, kid: keyId, typ: 'JWT' })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(tokenUrl)
      .setJti(randomUUID())
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + assertionLifetime)
      .sign(privateKey);
  }

  async function requestToken(): Promise<CachedToken> {
    const startedAt = now();
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      scope,
      client_assertion_type: CLIENT_ASSERTION_TYPE,
      client_assertion: await assertion(),
    });
    requests++;
    let response: Response;
    let text: string;
    try {
      response = await doFetch(tokenUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: body.toString(),
        // A redirected POST would carry the assertion somewhere else.
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await response.text();
    } catch (raw) {
      const error = raw as Error & { cause?: { code?: string; message?: string } };
      const timedOut = error.name === 'TimeoutError' || error.name === 'AbortError';
      const reason = timedOut ? `timed out after ${timeoutMs} ms` : `network error (${sanitise(String(error.cause?.code ?? error.cause?.message ?? error.message))})`;
      throw new SmartTokenError(`SMART token request to ${endpoint}: ${reason}`, 0, true);
    }

    let json: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = text ? JSON.parse(text) : undefined;
      json = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
    } catch {
      json = undefined;
    }

    if (response.status < 200 || response.status > 299) {
      const oauthError = typeof json?.error === 'string' ? sanitise(json.error, 60) : undefined;
      const description = typeof json?.error_description === 'string' ? `: ${sanitise(json.error_description)}` : '';
      const redirect = response.status >= 300 && response.status <= 399 ? ' (redirect not followed: check the token URL)' : '';
      const detail = oauthError ? ` ${oauthError}${description}` : json || redirect ? '' : ' (no JSON error body)';
      throw new SmartTokenError(
        `SMART token request to ${endpoint}: HTTP ${response.status}${redirect}${detail}`,
        response.status,
        TRANSIENT_STATUSES.has(response.status),
        oauthError,
      );
    }

    const invalid = (reason: string): SmartTokenError =>
      // A token endpoint answering nonsense is most often a proxy or a deployment in progress.
      new SmartTokenError(`SMART token request to ${endpoint}: invalid answer (HTTP ${response.status}): ${reason}`, response.status, true);
    if (!json) throw invalid('not a JSON object');
    const accessToken = json.access_token;
    if (typeof accessToken !== 'string' || accessToken === '') throw invalid('no access_token');
    if (json.token_type !== undefined && (typeof json.token_type !== 'string' || json.token_type.toLowerCase() !== 'bearer')) {
      throw new SmartTokenError(
        `SMART token request to ${endpoint}: token_type ${JSON.stringify(sanitise(String(json.token_type), 20))} is not bearer`,
        response.status,
        false,
      );
    }
    const expiresIn = typeof json.expires_in === 'string' ? Number(json.expires_in) : json.expires_in;
    const lifetimeS = typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : DEFAULT_EXPIRES_IN_S;
    // Counted from when the request started: the server's clock started no earlier.
    const lifetimeMs = lifetimeS * 1000;
    const usable = lifetimeMs > skewMs ? lifetimeMs - skewMs : lifetimeMs / 2;
    return { value: accessToken, renewAt: startedAt + usable };
  }

  return {
    get requests() {
      return requests;
    },

    async token(): Promise<string> {
      if (cached && now() < cached.renewAt) return cached.value;
      // One request at a time: concurrent callers share it. Failures are not cached.
      inFlight ??= requestToken().then(
        (fresh) => {
          cached = fresh;
          inFlight = undefined;
          return fresh;
        },
        (error: unknown) => {
          inFlight = undefined;
          throw error;
        },
      );
      return (await inFlight).value;
    },

    invalidate(token?: string): void {
      if (token === undefined || cached?.value === token) cached = undefined;
    },
  };
}

function algFits(key: NodeKeyObject, alg: SmartSigningAlg): string | undefined {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (alg.startsWith('RS')) {
    if (type !== 'rsa') return `${alg} needs an RSA key, this is ${type ?? 'not an asymmetric key'}`;
    if ((details.modulusLength ?? 0) < 2048) return `${alg} needs an RSA key of at least 2048 bits, this one has ${details.modulusLength ?? '?'}`;
    return undefined;
  }
  const curve = alg === 'ES256' ? 'prime256v1' : 'secp384r1';
  if (type !== 'ec') return `${alg} needs an EC key, this is ${type ?? 'not an asymmetric key'}`;
  if (details.namedCurve !== curve) return `${alg} needs an EC key on ${alg === 'ES256' ? 'P-256' : 'P-384'}, this one is on ${details.namedCurve ?? '?'}`;
  return undefined;
}

/**
 * Reads the private key that signs client assertions from a file: PEM (PKCS#8 `BEGIN PRIVATE
 * KEY`; PKCS#1 `BEGIN RSA PRIVATE KEY` and SEC1 `BEGIN EC PRIVATE KEY` are converted) or a JWK
 * JSON object with its private part (`d`). Checks that the key suits `alg` and returns a
 * non-extractable CryptoKey. Errors name the file, never its content.
 */
export async function loadPrivateKey(file: string, alg: SmartSigningAlg): Promise<CryptoKey> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (raw) {
    throw new Error(`private key ${file}: cannot read the file (${(raw as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return importPrivateKey(text, alg, file);
}

/**
 * `loadPrivateKey` for a key already in memory (e.g. an environment variable filled by a
 * secret store). `source` names it in errors (a file or a variable name), never the key.
 */
export async function importPrivateKey(pemOrJwk: string, alg: SmartSigningAlg, source: string): Promise<CryptoKey> {
  const file = source;
  if (!SMART_SIGNING_ALGS.includes(alg)) throw new Error(`private key ${file}: unsupported alg ${String(alg)} (use ${SMART_SIGNING_ALGS.join(', ')})`);
  const text = pemOrJwk.trim();
  let key: NodeKeyObject;
  try {
    if (text.startsWith('{')) {
      let jwk: JsonWebKey;
      try {
        jwk = JSON.parse(text) as JsonWebKey;
      } catch {
        throw new Error('not valid JSON');
      }
      if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk) || 'keys' in jwk) {
        throw new Error('expected one JWK object (not a JWKS)');
      }
      if (typeof jwk.d !== 'string') throw new Error('the JWK has no private part (d): it is a public key');
      key = createPrivateKey({ key: jwk, format: 'jwk' });
    } else if (text.includes('-----BEGIN')) {
      if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
        throw new Error('the key is encrypted: store it unencrypted in a file only the service can read (or in a secret store)');
      }
      if (!/-----BEGIN (RSA |EC )?PRIVATE KEY-----/.test(text)) throw new Error('no PEM private key found (expected BEGIN PRIVATE KEY)');
      key = createPrivateKey({ key: text, format: 'pem' });
    } else {
      throw new Error('neither PEM nor a JWK JSON object');
    }
  } catch (raw) {
    // Node's own messages (e.g. "error:1E08010C:DECODER routines::unsupported") carry no key material.
    throw new Error(`private key ${file}: ${(raw as Error).message}`);
  }
  const mismatch = algFits(key, alg);
  if (mismatch) throw new Error(`private key ${file}: ${mismatch}`);
  const pkcs8 = key.export({ type: 'pkcs8', format: 'pem' }).toString();
  return importPKCS8(pkcs8, alg, { extractable: false });
}

export interface SmartBackendSettings extends Omit<SmartBackendOptions, 'privateKey'> {
  /** File holding the private key, PEM or JWK (see `loadPrivateKey`). */
  privateKeyFile: string;
}

/** `loadPrivateKey` then `createSmartBackendTokenProvider`: what start-up wiring needs, in one call. */
export async function smartBackendFromFiles(settings: SmartBackendSettings): Promise<SmartBackendTokenProvider> {
  const { privateKeyFile, ...options } = settings;
  return createSmartBackendTokenProvider({ ...options, privateKey: await loadPrivateKey(privateKeyFile, settings.alg) });
}
