/**
 * Configuration, read once from the environment and validated; defaults live here and
 * nowhere else. Every variable is documented in the README's configuration table.
 */
import os from 'node:os';
import { z } from 'zod';

const booleanish = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const smartAlg = z.enum(['RS384', 'ES384', 'RS256', 'ES256']);

const configSchema = z.object({
  /** HTTP port of the adapter. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** Interface the HTTP API binds to. */
  HOST: z.string().default('127.0.0.1'),
  /**
   * Base URL of the API as clients reach it (Location, Content-Location, CapabilityStatement
   * `url`); never taken from the request's Host header. Default: `http://HOST:PORT` as bound.
   */
  PUBLIC_BASE_URL: z
    .string()
    .url()
    .refine((url) => /^https?:\/\//.test(url) && !/[?#]/.test(url), 'an http(s) URL without query or fragment')
    .transform((url) => url.replace(/\/+$/, ''))
    .optional(),
  /**
   * Requests per minute per client (token client id, else IP) on /fhir and /hooks; 0: no
   * limit. Counters in Redis. Default: 600 with authentication, none without (development on
   * loopback, where every caller has the same address). See `rateLimitPerMinute`.
   */
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(0).optional(),
  /** Redis for BullMQ. A loopback URL that does not answer gets a local redis-server started. */
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
  /** Start a local redis-server when REDIS_URL is loopback and nothing answers. */
  REDIS_START_LOCAL: booleanish.default(true),
  /** FHIR R4 server of record. Empty: an embedded in-memory server is started. */
  FHIR_BASE_URL: z.string().url().optional(),
  /** Port of the embedded FHIR server (0: any free port). */
  EMBEDDED_FHIR_PORT: z.coerce.number().int().min(0).max(65535).default(8081),
  /** Timeout of one request to the FHIR server, ms. */
  FHIR_TIMEOUT_MS: z.coerce.number().int().min(100).default(15000),
  /** Attempts for a FHIR request answered 429/5xx or timing out (Retry-After is honoured). */
  FHIR_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(4),
  /** Insurer gateway base URL (`POST {url}/Claim/$submit`). Empty: claims are written but not submitted. */
  GATEWAY_BASE_URL: z.string().url().optional(),
  /** Timeout of one request to the insurer gateway, ms. */
  GATEWAY_TIMEOUT_MS: z.coerce.number().int().min(100).default(30000),
  /** Bearer token for the gateway, read from this file (never from the repository). */
  GATEWAY_TOKEN_FILE: z.string().optional(),
  /** How long a claim submission keeps being retried while the gateway is down or failing, hours. */
  GATEWAY_RETRY_HOURS: z.coerce.number().min(0.01).max(720).default(48),
  /** SMART Backend Services token endpoint for the FHIR server (https, or http on loopback). Unset: no auth to it. */
  FHIR_AUTH_TOKEN_URL: z.string().url().optional(),
  FHIR_AUTH_CLIENT_ID: z.string().min(1).optional(),
  /** Private key file, PKCS#8 PEM or JWK JSON (never in the repository). */
  FHIR_AUTH_PRIVATE_KEY_FILE: z.string().optional(),
  /** kid of the registered public key. */
  FHIR_AUTH_KEY_ID: z.string().min(1).optional(),
  FHIR_AUTH_SCOPE: z.string().min(1).optional(),
  FHIR_AUTH_ALG: smartAlg.default('ES384'),
  /** The same for the insurer gateway (instead of GATEWAY_TOKEN_FILE). */
  GATEWAY_AUTH_TOKEN_URL: z.string().url().optional(),
  GATEWAY_AUTH_CLIENT_ID: z.string().min(1).optional(),
  GATEWAY_AUTH_PRIVATE_KEY_FILE: z.string().optional(),
  GATEWAY_AUTH_KEY_ID: z.string().min(1).optional(),
  GATEWAY_AUTH_SCOPE: z.string().min(1).optional(),
  GATEWAY_AUTH_ALG: smartAlg.default('ES384'),
  /** Client certificate and key (PEM) for mutual TLS with the gateway; both or neither. */
  GATEWAY_TLS_CERT_FILE: z.string().optional(),
  GATEWAY_TLS_KEY_FILE: z.string().optional(),
  /** CA that signed the gateway's certificate (default: Node's roots). */
  GATEWAY_TLS_CA_FILE: z.string().optional(),
  /** Passphrase of an encrypted GATEWAY_TLS_KEY_FILE (environment only). */
  GATEWAY_TLS_KEY_PASSPHRASE: z.string().optional(),
  /** Program data folder. */
  MAPPINGS_DIR: z.string().default('mappings'),
  /** Profiles folder (StructureDefinitions of what the adapter emits). */
  PROFILES_DIR: z.string().default('profiles'),
  /** Site data folder overlaying MAPPINGS_DIR file by file (same relative paths). */
  SITE_DIR: z.string().optional(),
  /** Programs this instance runs (comma-separated ids); empty: every program in MAPPINGS_DIR. */
  PROGRAMS: z.string().optional(),
  /** `all` runs HTTP and workers; `api` only HTTP; `worker` only workers. */
  ROLE: z.enum(['all', 'api', 'worker']).default('all'),
  /**
   * Port on which a worker-only process (ROLE=worker) serves /healthz, /readyz and /metrics
   * (on HOST); unset: it serves no HTTP. Ignored by the other roles (the API serves them on PORT).
   */
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  /** Concurrent eligibility evaluations per worker process. */
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(500).default(8),
  /** Prefix of every BullMQ key in Redis (lets several deployments share one Redis). */
  QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/).default('forfait'),
  /** Largest request body accepted (bytes); a Synthea patient bundle is up to ~2 MB. */
  MAX_BODY_BYTES: z.coerce.number().int().min(1024).default(25 * 1024 * 1024),
  /** Folder a Bulk Data `$screen` may read NDJSON files from (file:// URLs or paths inside it); unset: no file input. */
  BULK_INPUT_DIR: z.string().min(1).optional(),
  /** Where bulk screenings write their results (one folder per screening). Default: `<os tmpdir>/forfait-fhir-bulk`. */
  BULK_OUTPUT_DIR: z.string().min(1).optional(),
  /** Worker threads a bulk screening parses and evaluates with. Default: the CPUs Node may use (`os.availableParallelism()`). */
  BULK_WORKERS: z.coerce.number().int().min(1).max(64).default(os.availableParallelism()),
  /** pino level. */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Seconds a completed job is kept (its id then deduplicates re-sent data). */
  COMPLETED_JOB_RETENTION_S: z.coerce.number().int().min(60).default(7 * 24 * 3600),
  /** Time zone of calendar dates when a request gives none (`asOf` default = today there). */
  TZ_DEFAULT: z.string().default('Europe/Paris'),
  /** Load demo data into the FHIR server at start-up (npm start sets it through --demo). */
  DEMO_DATA: booleanish.default(false),
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  /** Inbound authentication: the JWKS of the authorisation server (https, or http on loopback). */
  AUTH_JWKS_URL: z.string().url().optional(),
  /** ... or a JWKS file (public keys only). */
  AUTH_JWKS_FILE: z.string().optional(),
  /** Expected `iss` of access tokens. */
  AUTH_ISSUER: z.string().optional(),
  /** Expected `aud` of access tokens. */
  AUTH_AUDIENCE: z.string().optional(),
  /** Accepted signature algorithms. */
  AUTH_ALGORITHMS: z.string().default('RS256,ES256'),
  /** Token claim naming the client's centre. */
  AUTH_CENTRE_CLAIM: z.string().default('centre'),
  /** Claim value → participating centre identifier: `claim=system|value,...` or a JSON object. */
  AUTH_CENTRES: z.string().optional(),
  /** Clock skew tolerated on exp/nbf, seconds. */
  AUTH_CLOCK_TOLERANCE_S: z.coerce.number().int().min(0).max(300).default(30),
}).superRefine((config, context) => {
  const sources = [config.AUTH_JWKS_URL, config.AUTH_JWKS_FILE].filter(Boolean).length;
  if (sources > 1) context.addIssue({ code: 'custom', path: ['AUTH_JWKS_URL'], message: 'give AUTH_JWKS_URL or AUTH_JWKS_FILE, not both' });
  if (sources === 1) {
    for (const key of ['AUTH_ISSUER', 'AUTH_AUDIENCE', 'AUTH_CENTRES'] as const) {
      if (!config[key]) context.addIssue({ code: 'custom', path: [key], message: `required when authentication is configured` });
    }
  }
  for (const prefix of ['FHIR_AUTH', 'GATEWAY_AUTH'] as const) {
    if (!config[`${prefix}_TOKEN_URL`]) continue;
    for (const key of [`${prefix}_CLIENT_ID`, `${prefix}_PRIVATE_KEY_FILE`, `${prefix}_KEY_ID`, `${prefix}_SCOPE`] as const) {
      if (!config[key]) context.addIssue({ code: 'custom', path: [key], message: `required with ${prefix}_TOKEN_URL` });
    }
  }
  if (config.GATEWAY_AUTH_TOKEN_URL && config.GATEWAY_TOKEN_FILE) context.addIssue({ code: 'custom', path: ['GATEWAY_TOKEN_FILE'], message: 'give GATEWAY_AUTH_TOKEN_URL or GATEWAY_TOKEN_FILE, not both' });
  if (Boolean(config.GATEWAY_TLS_CERT_FILE) !== Boolean(config.GATEWAY_TLS_KEY_FILE)) context.addIssue({ code: 'custom', path: ['GATEWAY_TLS_CERT_FILE'], message: 'GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE go together' });
  if (config.GATEWAY_TLS_CERT_FILE && !config.GATEWAY_BASE_URL?.startsWith('https:')) context.addIssue({ code: 'custom', path: ['GATEWAY_TLS_CERT_FILE'], message: 'mutual TLS needs an https GATEWAY_BASE_URL' });
  for (const algorithm of config.AUTH_ALGORITHMS.split(',')) {
    if (!['RS256', 'ES256'].includes(algorithm.trim())) context.addIssue({ code: 'custom', path: ['AUTH_ALGORITHMS'], message: `unsupported algorithm "${algorithm}" (RS256, ES256)` });
  }
});

/** True when inbound authentication is configured. */
export function authConfigured(config: Config): boolean {
  return Boolean(config.AUTH_JWKS_URL || config.AUTH_JWKS_FILE);
}

/** Requests per minute per client (0: none): RATE_LIMIT_PER_MINUTE, else 600 with authentication and none without. */
export function rateLimitPerMinute(config: Config): number {
  return config.RATE_LIMIT_PER_MINUTE ?? (authConfigured(config) ? 600 : 0);
}

export type Config = z.infer<typeof configSchema>;

/** Parses the environment; throws one Error listing every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== '') cleaned[key] = value;
  }
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
    throw new Error(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
