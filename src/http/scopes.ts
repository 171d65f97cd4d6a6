/**
 * SMART App Launch v2 system scopes (issue #6): which scopes each route needs, and whether a
 * token's granted scopes satisfy a required one. Pure: no Express, no I/O.
 *
 * Scope grammar honoured (SMART v2, with v1 compatibility):
 *   system/<Type|*>.<permissions>
 *   permissions: v2 `cruds` letters in that order (`c`, `rs`, `cruds`, ...), `*` (= cruds),
 *   or v1 `read` (= r s) / `write` (= c u d).
 * Only the `system/` context counts: `patient/` and `user/` scopes are for apps acting for a
 * person and grant nothing here. A granted scope with a query (`system/Observation.rs?category=x`)
 * is a restriction this adapter cannot enforce, so it grants nothing (fail closed).
 *
 * Two scopes of our own, outside the resource grammar, matched exactly and never granted by a
 * wildcard (`system/*.*` is data access, not operator rights), and not bound to a centre:
 * - `system/admin` (ADMIN_SCOPE): operator triggers (`$advance`, `$bill`), `/admin/queues`, `/metrics`;
 * - `system/Subscription.notify` (NOTIFY_SCOPE): rest-hook notifications from the FHIR server
 *   (`POST /hooks/subscription`).
 */

/** Operator rights: operator triggers, the queue dashboard, Prometheus metrics. */
export const ADMIN_SCOPE = 'system/admin';
/** The FHIR server's rest-hook notifications. */
export const NOTIFY_SCOPE = 'system/Subscription.notify';
/** Scopes of ours: matched exactly, not granted by wildcards, the client needs no centre. */
export const OPERATOR_SCOPES: ReadonlySet<string> = new Set([ADMIN_SCOPE, NOTIFY_SCOPE]);

type Permission = 'c' | 'r' | 'u' | 'd' | 's';
const ALL_PERMISSIONS: readonly Permission[] = ['c', 'r', 'u', 'd', 's'];
const TYPE = /^(?:\*|[A-Za-z][A-Za-z0-9]{0,63})$/;
const V2_PERMISSIONS = /^c?r?u?d?s?$/;

interface ParsedScope {
  resourceType: string;
  permissions: ReadonlySet<Permission>;
}

function parsePermissions(text: string, allowV1: boolean): Set<Permission> | undefined {
  if (text === '*') return new Set(ALL_PERMISSIONS);
  if (allowV1 && text === 'read') return new Set(['r', 's']);
  if (allowV1 && text === 'write') return new Set(['c', 'u', 'd']);
  if (text === '' || !V2_PERMISSIONS.test(text)) return undefined;
  return new Set([...text] as Permission[]);
}

/** `system/Type.perms` → its parts; undefined for anything else (other contexts, queries, junk). */
function parseScope(scope: string, allowV1: boolean): ParsedScope | undefined {
  if (!scope.startsWith('system/') || scope.includes('?')) return undefined;
  const body = scope.slice('system/'.length);
  const dot = body.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const resourceType = body.slice(0, dot);
  if (!TYPE.test(resourceType)) return undefined;
  const permissions = parsePermissions(body.slice(dot + 1), allowV1);
  return permissions ? { resourceType, permissions } : undefined;
}

/**
 * Whether the granted scopes (a token's `scope` claim, split on spaces) satisfy one required
 * scope. Permissions add up across granted scopes: `system/Patient.r system/Patient.s`
 * satisfies `system/Patient.rs`. A required scope that does not parse is never satisfied.
 */
export function scopeSatisfies(granted: readonly string[], required: string): boolean {
  if (OPERATOR_SCOPES.has(required)) return granted.includes(required);
  const wanted = parseScope(required, false);
  if (!wanted) return false;
  const held = new Set<Permission>();
  for (const scope of granted) {
    const parsed = parseScope(scope, true);
    if (!parsed) continue;
    if (parsed.resourceType !== '*' && parsed.resourceType !== wanted.resourceType) continue;
    for (const permission of parsed.permissions) held.add(permission);
  }
  return [...wanted.permissions].every((permission) => held.has(permission));
}

/** The required scopes the granted ones do not satisfy (empty: all satisfied). */
export function missingScopes(granted: readonly string[], required: readonly string[]): string[] {
  return required.filter((scope) => !scopeSatisfies(granted, scope));
}

/** True when a client calling with these required scopes must be bound to a centre (any data scope). */
export function requiresCentre(required: readonly string[] | null): boolean {
  if (required === null) return false;
  return required.length === 0 || !required.every((scope) => OPERATOR_SCOPES.has(scope));
}

// --- The route table ----------------------------------------------------------------

/** `null`: a public route, no token. `[]`: a valid token, no scope checked here. */
type Requirement = readonly string[] | null | ((type: string) => readonly string[]);

interface RouteRule {
  /** Methods, upper case; HEAD is matched as GET (as Express does). `*`: any method. */
  methods: readonly string[];
  /** Matched against the raw (not decoded) path, case-insensitively, as Express 5 routes by default. */
  pattern: RegExp;
  requirement: Requirement;
}

const ID = '[^/]+';
const rule = (methods: string | string[], pattern: string, requirement: Requirement): RouteRule => ({
  methods: Array.isArray(methods) ? methods : [methods],
  pattern: new RegExp(`^${pattern}/?$`, 'i'),
  requirement,
});

/**
 * In the order Express tries the routes of `createApp` (first match wins): the specific
 * operations before `POST /fhir/:type`. A route missing here falls to UNMATCHED_ROUTE.
 */
const ROUTES: readonly RouteRule[] = [
  rule('GET', '/healthz', null),
  rule('GET', '/readyz', null),
  rule('GET', '/fhir/metadata', null),
  rule('GET', '/dashboard(?:/.*)?', null),
  rule('GET', '/metrics', [ADMIN_SCOPE]),
  rule('*', '/admin/queues(?:/.*)?', [ADMIN_SCOPE]),
  rule(['GET', 'POST'], `/fhir/Patient/${ID}/\\$evaluate-eligibility`, ['system/Patient.rs']),
  rule('POST', '/fhir/\\$screen', ['system/Patient.rs']),
  rule('GET', `/fhir/_async/${ID}`, ['system/Patient.rs']),
  rule('GET', `/fhir/_async/${ID}/${ID}`, ['system/Patient.rs']),
  rule('POST', `/fhir/Patient/${ID}/\\$enroll`, ['system/EpisodeOfCare.c']),
  rule('POST', `/fhir/Patient/${ID}/\\$decline`, ['system/Task.u']),
  rule('POST', `/fhir/EpisodeOfCare/${ID}/\\$exit`, ['system/EpisodeOfCare.u']),
  rule('POST', `/fhir/EpisodeOfCare/${ID}/\\$add-plan`, ['system/EpisodeOfCare.u']),
  rule('POST', `/fhir/EpisodeOfCare/${ID}/\\$advance`, [ADMIN_SCOPE]),
  rule('POST', '/fhir/\\$advance', [ADMIN_SCOPE]),
  rule('POST', '/fhir/Encounter', ['system/Encounter.c']),
  rule('POST', '/fhir/\\$bill', [ADMIN_SCOPE]),
  rule('GET', '/fhir/\\$budget', ['system/Claim.r']),
  // Program reports (issue #5): the indicator definitions, and their evaluation (centre-bound).
  rule(['GET', 'POST'], '/fhir/Measure/\\$report-pack', ['system/MeasureReport.rs']),
  rule(['GET', 'POST'], `/fhir/Measure/${ID}/\\$evaluate-measure`, ['system/MeasureReport.rs']),
  rule('GET', '/fhir/Measure', ['system/Measure.rs']),
  rule('GET', `/fhir/Measure/${ID}`, ['system/Measure.rs']),
  // The per-entry scopes (bundleScopes) are checked by the handler once the body is parsed.
  rule('POST', '/fhir', []),
  rule('POST', `/fhir/(${ID})`, (type) => [`system/${type}.c`]),
  rule('POST', '/hooks/subscription', [NOTIFY_SCOPE]),
];

/**
 * What a route absent from the table needs: operator rights. Fail closed: a route added to
 * the app without a line here is unreachable by data clients (they get 403, not the handler).
 */
export const UNMATCHED_ROUTE: readonly string[] = [ADMIN_SCOPE];

/**
 * The SMART scopes a request needs, all required: `null` for a public route (no token at
 * all), `[]` for a route that needs a valid token but checks its scopes itself (`POST /fhir`:
 * `bundleScopes` once the Bundle is parsed).
 *
 * `routePath` is the raw request path (`req.path` in a middleware mounted on the app, not
 * percent-decoded). It is matched the way Express 5 matches the app's routes: literal parts
 * against the raw path, case-insensitively, with an optional trailing slash, the first rule
 * in route order winning; the `:type` of `POST /fhir/:type` is percent-decoded as Express
 * decodes `req.params`. So the requirement is always the one of the handler Express runs.
 * `resourceType`, when given, overrides the type taken from the path of `POST /fhir/:type`
 * (for callers that know the matched route pattern rather than the path).
 */
export function requiredScopes(method: string, routePath: string, resourceType?: string): string[] | null {
  const verb = method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase();
  const path = routePath.split('?')[0] ?? '';
  for (const route of ROUTES) {
    if (!route.methods.includes('*') && !route.methods.includes(verb)) continue;
    const match = route.pattern.exec(path);
    if (!match) continue;
    const { requirement } = route;
    if (requirement === null) return null;
    if (typeof requirement !== 'function') return [...requirement];
    if (resourceType !== undefined) return [...requirement(resourceType)];
    try {
      return [...requirement(decodeURIComponent(match[1] ?? ''))];
    } catch {
      // Express answers 400 to a parameter it cannot decode; nothing runs, but stay closed.
      return [...UNMATCHED_ROUTE];
    }
  }
  return [...UNMATCHED_ROUTE];
}

const PERMISSIONS_OF_METHOD: Record<string, readonly Permission[]> = {
  POST: ['c'],
  // A PUT may create (update as create) as well as update.
  PUT: ['c', 'u'],
  PATCH: ['u'],
  DELETE: ['d'],
  GET: ['r', 's'],
  HEAD: ['r', 's'],
};

/** `Observation` from `Observation`, `Observation/1`, `Observation?x=y`, absolute URLs excluded. */
function typeOfRequestUrl(url: unknown): string | undefined {
  if (typeof url !== 'string') return undefined;
  const match = /^([A-Za-z][A-Za-z0-9]{0,63})(?:[/?]|$)/.exec(url);
  return match?.[1];
}

/**
 * The scopes a batch or transaction Bundle needs, one permission per scope: per entry,
 * `system/<type>.c` for a POST, `.c` and `.u` for a PUT (which may create), `.u` for PATCH,
 * `.d` for DELETE, `.r` and `.s` for GET; an entry without a method counts as a create, an
 * unknown method needs every permission. The type comes from both `resource.resourceType`
 * and `request.url` (both count when they differ). Entries without a usable type are skipped
 * (ingestBundle refuses them before any write). Sorted, without duplicates; `[]` for anything
 * that is not a Bundle with entries.
 */
export function bundleScopes(bundle: unknown): string[] {
  const entries = (bundle as { entry?: unknown } | null)?.entry;
  if (!Array.isArray(entries)) return [];
  const needed = new Map<string, Set<Permission>>();
  for (const entry of entries as unknown[]) {
    if (!entry || typeof entry !== 'object') continue;
    const { resource, request } = entry as { resource?: { resourceType?: unknown }; request?: { method?: unknown; url?: unknown } };
    const method = typeof request?.method === 'string' ? request.method.toUpperCase() : 'POST';
    const permissions = PERMISSIONS_OF_METHOD[method] ?? ALL_PERMISSIONS;
    const types = new Set<string>();
    const resourceType = resource?.resourceType;
    if (typeof resourceType === 'string' && TYPE.test(resourceType) && resourceType !== '*') types.add(resourceType);
    const urlType = typeOfRequestUrl(request?.url);
    if (urlType) types.add(urlType);
    for (const type of types) {
      const set = needed.get(type) ?? new Set<Permission>();
      for (const permission of permissions) set.add(permission);
      needed.set(type, set);
    }
  }
  return [...needed].flatMap(([type, permissions]) => ALL_PERMISSIONS.filter((p) => permissions.has(p)).map((p) => `system/${type}.${p}`)).sort();
}
