/**
 * `POST /fhir` with a batch or transaction Bundle (for example a whole Synthea patient):
 * check every entry, then forward to the FHIR server in one request.
 * - transaction: one bad entry rejects the whole Bundle and nothing is written;
 * - batch: bad entries get their own error response, the good ones are stored.
 * Every entry is checked, whatever its resource type: the JSON structure of the whole Bundle
 * (`structuralIssues`), the entry's request (`POST Type`, or `PUT Type/id` naming the
 * resource's own id; `ifNoneExist` only as one `identifier=`), the resource against FHIR R4
 * (`validateResource`) and its references (`referenceIssues`: no other server). Resources of
 * the types the programs read are also checked against the business rules (`check`); types
 * this adapter owns or that configure the server are refused. Only the checked request
 * elements are forwarded.
 */
import { createHash } from 'node:crypto';
import type { EvaluationRequest } from '../queue/queues.js';
import { operationOutcome, OperationOutcomeError, type IssueInput } from '../http/outcomes.js';
import type { FhirServer } from '../fhir/fhir-server.port.js';
import type { CentreAccess, ClientIdentity } from './centre-access.js';
import { isValidFhirId, structuralIssues, validateResource } from '../fhir/validation.js';
import { DIRECTORY_TYPES, PUSHABLE_TYPES, patientIdOf, patientReferenceOf, referenceIssues, type IngestionService, type ReferenceContext } from './ingestion.service.js';

export interface BundleResult {
  response: fhir4.Bundle;
  /** Patient id → versioned references stored for that patient. */
  touched: Map<string, string[]>;
}

/** Bundles touching many resources of one patient are identified by a hash, keeping job data small. */
const MAX_TRIGGER_REFERENCES = 20;

export function triggerOf(references: string[]): string[] {
  const sorted = [...new Set(references)].sort();
  if (sorted.length <= MAX_TRIGGER_REFERENCES) return sorted;
  return [`bundle-sha256/${createHash('sha256').update(sorted.join('\n')).digest('hex')}`];
}

export function evaluationsFor(touched: Map<string, string[]>, programIds: string[]): EvaluationRequest[] {
  return [...touched].map(([patientId, references]) => ({ programIds, patientId, trigger: triggerOf(references) }));
}

/** `Observation/1/_history/2` from a location that may be absolute. */
function locationReference(location: string | undefined): { type: string; id: string; reference: string } | undefined {
  if (!location) return undefined;
  const match = /([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(\/_history\/([A-Za-z0-9\-.]{1,64}))?\/?$/.exec(location);
  if (!match) return undefined;
  const [, type, id, , version] = match as unknown as [string, string, string, string | undefined, string | undefined];
  return { type, id, reference: version ? `${type}/${id}/_history/${version}` : `${type}/${id}` };
}

/** A care session of an enrolment (an Encounter naming its EpisodeOfCare). */
function isSession(resource: unknown): resource is fhir4.Encounter {
  const encounter = resource as { resourceType?: unknown; episodeOfCare?: unknown };
  return encounter?.resourceType === 'Encounter' && Array.isArray(encounter.episodeOfCare) && encounter.episodeOfCare.length > 0;
}

/**
 * Types a pushed Bundle may not write: what this adapter generates and owns (enrolments,
 * verdicts, tasks, the audit trail), server configuration (a Subscription would send data
 * elsewhere) and containers.
 */
export const REFUSED_BUNDLE_TYPES: ReadonlySet<string> = new Set([
  'EpisodeOfCare',
  'GuidanceResponse',
  'Task',
  'ClaimResponse',
  'AuditEvent',
  'Subscription',
  'Bundle',
  'Binary',
  'CapabilityStatement',
  'StructureDefinition',
  'SearchParameter',
  'OperationDefinition',
  'CodeSystem',
  'ValueSet',
  'ConceptMap',
  'NamingSystem',
  'ImplementationGuide',
  'CompartmentDefinition',
  'StructureMap',
  'Library',
  'PlanDefinition',
  'ActivityDefinition',
]);

/** Most issues in one entry's outcome of a batch-response (a batch may hold thousands of entries). */
const MAX_ENTRY_ISSUES = 10;
/** Most issues of a refused Bundle. */
const MAX_BUNDLE_ISSUES = 100;

/** `identifier=system|value`: the one conditional create accepted from a client (one token, no OR, no other parameter). */
const IF_NONE_EXIST = /^identifier=[^&,#\s\u0000-\u001f]{1,512}$/;
const ETAG = /^(W\/)?"?[A-Za-z0-9\-.]{1,64}"?$/;

type Failure = { status: 400 | 422; issues: IssueInput[] };

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const refused = (status: 400 | 422, code: IssueInput['code'], diagnostics: string, expression: string): { failure: Failure } => ({
  failure: { status, issues: [{ code, diagnostics, expression: [expression] }] },
});

/** Issues of one entry's request; else the sanitized request to forward. */
function checkRequest(entry: Record<string, unknown>, resource: fhir4.Resource, path: string): { failure?: Failure; request?: fhir4.BundleEntryRequest } {
  const request = entry['request'];
  const at = `${path}.request`;
  if (!isObject(request)) return refused(400, 'required', 'Each entry needs a request (method and url)', at);
  const method = request['method'];
  const url = request['url'];
  if (method !== 'POST' && method !== 'PUT') return refused(422, 'not-supported', `Only POST and PUT entries are accepted, got ${JSON.stringify(method ?? null)}`, `${at}.method`);
  const type = resource.resourceType;
  if (method === 'POST' && url !== type) return refused(400, 'invalid', `A POST entry's request.url must be its resource type ("${type}")`, `${at}.url`);
  if (method === 'PUT' && (!isValidFhirId(resource.id) || url !== `${type}/${resource.id}`)) {
    return refused(400, 'invalid', `A PUT entry's request.url must be "${type}/{id}" with the resource's own (valid) id`, `${at}.url`);
  }
  const ifNoneExist = request['ifNoneExist'];
  if (ifNoneExist !== undefined && (method !== 'POST' || typeof ifNoneExist !== 'string' || !IF_NONE_EXIST.test(ifNoneExist))) {
    return refused(400, 'invalid', 'request.ifNoneExist is accepted on POST entries only, as one identifier=system|value', `${at}.ifNoneExist`);
  }
  const ifMatch = request['ifMatch'];
  if (ifMatch !== undefined && (method !== 'PUT' || typeof ifMatch !== 'string' || !ETAG.test(ifMatch))) {
    return refused(400, 'invalid', 'request.ifMatch is accepted on PUT entries only, as a version (W/"n")', `${at}.ifMatch`);
  }
  for (const other of ['ifNoneMatch', 'ifModifiedSince']) {
    if (request[other] !== undefined) return refused(400, 'not-supported', `request.${other} is not accepted`, `${at}.${other}`);
  }
  return {
    request: {
      method,
      url: url as string,
      ...(typeof ifNoneExist === 'string' ? { ifNoneExist } : {}),
      ...(typeof ifMatch === 'string' ? { ifMatch } : {}),
    },
  };
}

/** Base R4 validation (400) and references (422) of a resource of a type the programs do not read. */
function checkOtherResource(resource: fhir4.Resource, path: string, context: ReferenceContext): Failure | undefined {
  const invalid = validateResource(resource);
  if (invalid.length) {
    const type = resource.resourceType;
    return {
      status: 400,
      issues: invalid.map((issue) => ({
        code: issue.code,
        diagnostics: issue.diagnostics ?? issue.details?.text ?? 'Invalid resource',
        expression: (issue.expression ?? [type]).map((e) => (e.startsWith(type) ? path + e.slice(type.length) : e)),
      })),
    };
  }
  const references = referenceIssues(resource, path, context);
  return references.length ? { status: 422, issues: references } : undefined;
}

/** The first `max` issues, the last one counting those left out. */
function capped(issues: IssueInput[], max: number): IssueInput[] {
  if (issues.length <= max) return issues;
  const kept = issues.slice(0, max - 1);
  kept.push({ code: 'too-costly', diagnostics: `${issues.length - kept.length} further issue(s) not listed` });
  return kept;
}

export interface IngestOptions {
  /**
   * Care sessions of a batch, one by one (they are checked against the enrolment and linked
   * from its CarePlan); a transaction cannot hold them, since that work cannot be part of its
   * all-or-nothing write.
   */
  recordSession?: (encounter: fhir4.Encounter) => Promise<fhir4.BundleEntry>;
  /**
   * Called once the entries are checked and prepared (ids of creates dropped, conditional
   * creates set), before anything is written, with the Bundle to be forwarded followed by the
   * care sessions (recorded one by one after it), and, per entry, its index in the pushed
   * Bundle. Throws to refuse (centre isolation).
   */
  authorize?: (forwarded: fhir4.Bundle, indexes: readonly number[]) => Promise<void>;
  /**
   * For a batch entry whose conditional create matched a stored resource (answered 200): the
   * stored resource (from the answer, or read by its location), to check that the client may
   * see it; when it throws, the entry is answered 403 without it and nothing is queued for it.
   */
  authorizeExisting?: (resource: fhir4.Resource) => Promise<void>;
}

export async function ingestBundle(body: unknown, fhir: FhirServer, ingestion: IngestionService, options: IngestOptions = {}): Promise<BundleResult> {
  const { recordSession } = options;
  if (!isObject(body) || body['resourceType'] !== 'Bundle') {
    throw new OperationOutcomeError(400, operationOutcome([{ code: 'invalid', diagnostics: 'POST /fhir takes a Bundle (batch or transaction)', expression: ['Bundle'] }]));
  }
  const bundle = body as unknown as fhir4.Bundle;
  if (bundle.type !== 'batch' && bundle.type !== 'transaction') {
    throw new OperationOutcomeError(400, operationOutcome([{ code: 'invalid', diagnostics: `Bundle.type must be batch or transaction, got ${JSON.stringify(bundle.type ?? null).slice(0, 40)}`, expression: ['Bundle.type'] }]));
  }
  if (bundle.entry !== undefined && !Array.isArray(bundle.entry)) {
    throw new OperationOutcomeError(400, operationOutcome([{ code: 'structure', diagnostics: 'Bundle.entry must be an array', expression: ['Bundle.entry'] }]));
  }
  const entries = bundle.entry ?? [];

  // The JSON structure of the whole Bundle: issues outside the entries refuse it all; an
  // entry's issues are that entry's.
  const failures = new Map<number, Failure>();
  const structure = structuralIssues(bundle, { path: 'Bundle', maxIssues: Number.MAX_SAFE_INTEGER });
  const bundleLevel: IssueInput[] = [];
  for (const issue of structure) {
    const input: IssueInput = { code: issue.code, diagnostics: issue.details?.text ?? 'Invalid Bundle', ...(issue.expression ? { expression: issue.expression } : {}) };
    const index = /^Bundle\.entry\[(\d+)\]/.exec(issue.expression?.[0] ?? '')?.[1];
    if (index === undefined) {
      bundleLevel.push(input);
      continue;
    }
    const failure = failures.get(Number(index)) ?? { status: 400 as const, issues: [] };
    failure.issues.push(input);
    failures.set(Number(index), failure);
  }
  if (bundleLevel.length) throw new OperationOutcomeError(400, operationOutcome(capped(bundleLevel, MAX_BUNDLE_ISSUES)));

  const fullUrls = new Set<string>();
  for (const entry of entries) if (typeof entry?.fullUrl === 'string' && entry.fullUrl.startsWith('urn:uuid:')) fullUrls.add(entry.fullUrl);
  const context: ReferenceContext = { bundleType: bundle.type, fullUrls };

  const requests = new Map<number, fhir4.BundleEntryRequest>();
  entries.forEach((raw, index) => {
    if (failures.has(index)) return;
    const path = `Bundle.entry[${index}]`;
    const entry = raw as unknown;
    if (!isObject(entry) || !isObject(entry['resource'])) {
      failures.set(index, { status: 400, issues: [{ code: 'structure', diagnostics: 'Each entry needs a resource', expression: [path] }] });
      return;
    }
    const resource = entry['resource'] as unknown as fhir4.Resource;
    const { failure, request } = checkRequest(entry, resource, path);
    if (failure || !request) {
      if (failure) failures.set(index, failure);
      return;
    }
    requests.set(index, request);
    const type = resource.resourceType;
    if (REFUSED_BUNDLE_TYPES.has(type)) {
      failures.set(index, { status: 422, issues: [{ code: 'not-supported', diagnostics: `This adapter does not accept ${type} in a pushed Bundle`, expression: [`${path}.resource`] }] });
      return;
    }
    if (isSession(resource)) {
      if (bundle.type === 'transaction' || !recordSession) {
        failures.set(index, { status: 422, issues: [{ code: 'not-supported', diagnostics: 'Care sessions (Encounters with an episodeOfCare) are sent one by one or in a batch Bundle, not in a transaction', expression: [`${path}.resource`] }] });
        return;
      }
      if (request.method !== 'POST') {
        failures.set(index, { status: 422, issues: [{ code: 'not-supported', diagnostics: 'A care session is recorded with POST', expression: [`${path}.request.method`] }] });
        return;
      }
    }
    const problem = (PUSHABLE_TYPES as readonly string[]).includes(type)
      ? ingestion.check(resource, `${path}.resource`, undefined, context)
      : checkOtherResource(resource, `${path}.resource`, context);
    if (problem) failures.set(index, problem);
  });

  if (bundle.type === 'transaction' && failures.size) {
    const all = [...failures.values()];
    const status = all.some((f) => f.status === 400) ? 400 : 422;
    const issues: IssueInput[] = [];
    for (const failure of all) for (const issue of failure.issues) issues.push(issue);
    throw new OperationOutcomeError(status, operationOutcome(capped(issues, MAX_BUNDLE_ISSUES)));
  }

  const sessionIndexes = entries.map((_, index) => index).filter((index) => !failures.has(index) && isSession(entries[index]?.resource));
  const forwardedIndexes = entries.map((_, index) => index).filter((index) => !failures.has(index) && !sessionIndexes.includes(index));
  // Only what was checked goes to the server: fullUrl, resource and the sanitized request.
  const forwarded: fhir4.Bundle = {
    resourceType: 'Bundle',
    type: bundle.type,
    entry: forwardedIndexes.map((index) => {
      const entry = entries[index] as fhir4.BundleEntry;
      return { ...(typeof entry.fullUrl === 'string' ? { fullUrl: entry.fullUrl } : {}), resource: entry.resource as fhir4.Resource, request: requests.get(index) as fhir4.BundleEntryRequest };
    }),
  };
  const { touchesDirectory } = ingestion.prepareBundle(forwarded);
  if (options.authorize) {
    // The care sessions too: one entry of another centre refuses the whole Bundle, sessions included.
    const sessions = sessionIndexes.map((index) => ({ resource: entries[index]?.resource as fhir4.Resource, request: { method: 'POST' as const, url: 'Encounter' } }));
    await options.authorize({ ...forwarded, entry: [...(forwarded.entry ?? []), ...sessions] }, [...forwardedIndexes, ...sessionIndexes]);
  }
  const serverResponse = forwardedIndexes.length
    ? bundle.type === 'transaction'
      ? await fhir.transaction(forwarded)
      : await fhir.batch(forwarded)
    : { resourceType: 'Bundle' as const, type: 'batch-response' as const, entry: [] };

  if (touchesDirectory) await ingestion.directoryChanged();

  // A batch create whose condition matched a stored resource (200) answers with that resource:
  // only if the client may see it (a transaction's were checked before writing).
  const hidden = new Map<number, fhir4.BundleEntry>();
  if (bundle.type === 'batch' && options.authorizeExisting) {
    for (const [position, responseEntry] of (serverResponse.entry ?? []).entries()) {
      if (!responseEntry.response?.status?.startsWith('200') || forwarded.entry?.[position]?.request?.method !== 'POST') continue;
      const type = forwarded.entry[position]?.resource?.resourceType;
      const location = locationReference(responseEntry.response.location);
      const existing =
        responseEntry.resource?.resourceType === type && responseEntry.resource?.id
          ? responseEntry.resource
          : location && location.type === type
            ? await fhir.readIfExists<fhir4.Resource>(location.type, location.id)
            : undefined;
      try {
        if (!existing) throw new Error('matched resource not readable');
        await options.authorizeExisting(existing);
      } catch {
        hidden.set(position, { response: { status: '403', outcome: operationOutcome([{ code: 'forbidden', diagnostics: 'This entry cannot be stored by this client', expression: [`Bundle.entry[${forwardedIndexes[position] as number}]`] }]) } });
      }
    }
  }

  // Stored location of each input entry, and fullUrl → stored reference (to resolve urn:uuid).
  const stored = new Map<number, { type: string; id: string; reference: string }>();
  const byFullUrl = new Map<string, { type: string; id: string }>();
  (serverResponse.entry ?? []).forEach((responseEntry, position) => {
    const index = forwardedIndexes[position] as number;
    if (!responseEntry.response?.status?.startsWith('2') || hidden.has(position)) return;
    const location = locationReference(responseEntry.response.location) ?? (responseEntry.resource?.id ? locationReference(`${responseEntry.resource.resourceType}/${responseEntry.resource.id}`) : undefined);
    if (!location) return;
    stored.set(index, location);
    const fullUrl = entries[index]?.fullUrl;
    if (fullUrl) byFullUrl.set(fullUrl, location);
  });

  const touched = new Map<string, string[]>();
  for (const [index, location] of stored) {
    const resource = entries[index]?.resource as fhir4.Resource;
    let patientId: string | undefined;
    if (location.type === 'Patient') patientId = location.id;
    else {
      const reference = patientReferenceOf(resource);
      const resolved = reference !== undefined ? byFullUrl.get(reference) : undefined;
      patientId = resolved ? (resolved.type === 'Patient' ? resolved.id : undefined) : patientIdOf(reference);
    }
    if (!patientId) continue;
    const list = touched.get(patientId) ?? [];
    list.push(location.reference);
    touched.set(patientId, list);
  }

  // Sessions one by one, in order (two sessions of one activity in a batch are both counted).
  const sessionResponses = new Map<number, fhir4.BundleEntry>();
  if (recordSession) {
    for (const index of sessionIndexes) {
      const entry = await recordSession(entries[index]?.resource as fhir4.Encounter);
      sessionResponses.set(index, entry);
    }
  }

  let response = serverResponse;
  if (bundle.type === 'batch') {
    const merged: fhir4.BundleEntry[] = entries.map((_, index) => {
      const failure = failures.get(index);
      if (failure) return { response: { status: String(failure.status), outcome: operationOutcome(capped(failure.issues, MAX_ENTRY_ISSUES)) } };
      const session = sessionResponses.get(index);
      if (session) return session;
      const position = forwardedIndexes.indexOf(index);
      return hidden.get(position) ?? serverResponse.entry?.[position] ?? { response: { status: '500' } };
    });
    response = { resourceType: 'Bundle', type: 'batch-response', entry: merged };
  }
  return { response, touched };
}

// ---------------------------------------------------------------------------------------------
// Centre isolation of a pushed Bundle (issue #6, point 2)

const forbiddenEntry = (index: number, diagnostics: string): OperationOutcomeError =>
  new OperationOutcomeError(403, operationOutcome([{ code: 'forbidden', diagnostics, expression: [`Bundle.entry[${index}]`] }]));

/**
 * What the identifier-conditional creates of a transaction resolve to on the server, before
 * anything is written: one batch of searches (`Type?identifier=...`, as the server will run
 * them), for the POST entries that carry an `identifier=` condition. Position in `forwarded`
 * → the resources found.
 */
async function resolveConditionalCreates(fhir: FhirServer, forwarded: fhir4.Bundle): Promise<Map<number, fhir4.Resource[]>> {
  const positions: number[] = [];
  const searches: fhir4.BundleEntry[] = [];
  (forwarded.entry ?? []).forEach((entry, position) => {
    const condition = entry.request?.ifNoneExist;
    if (entry.request?.method !== 'POST' || !entry.resource || !condition?.startsWith('identifier=')) return;
    positions.push(position);
    searches.push({ request: { method: 'GET', url: `${entry.resource.resourceType}?${condition}` } });
  });
  const found = new Map<number, fhir4.Resource[]>();
  if (!searches.length) return found;
  const answer = await fhir.batch({ resourceType: 'Bundle', type: 'batch', entry: searches });
  (answer.entry ?? []).forEach((entry, i) => {
    const position = positions[i] as number;
    const type = forwarded.entry?.[position]?.resource?.resourceType;
    const status = entry.response?.status ?? '';
    const searchset = entry.resource as fhir4.Bundle | undefined;
    if (!status.startsWith('2') || searchset?.resourceType !== 'Bundle') {
      // A search the server refuses: so would its conditional create be; refuse now rather than guess.
      throw new OperationOutcomeError(422, operationOutcome([{ code: 'processing', diagnostics: 'The conditional create of an entry cannot be resolved', expression: [`Bundle.entry[${position}].request.ifNoneExist`] }]));
    }
    const matches = (searchset.entry ?? []).flatMap((e) => (e.resource && e.resource.resourceType === type ? [e.resource] : []));
    if (matches.length) found.set(position, matches);
  });
  return found;
}

/**
 * Every entry of a pushed Bundle (as forwarded: `indexes` maps its entries to the pushed
 * ones) must concern the client's centre:
 * - in a transaction, an entry whose identifier-conditional create resolves to a stored
 *   resource is checked on that resource (a Patient of another centre, an Observation of
 *   another centre's patient: 403), since the server would answer with it and resolve the
 *   entry's fullUrl to it (one batch of searches, transactions only);
 * - a PUT is checked on the resource it would overwrite, if any (one read per PUT entry);
 * - a Patient on its GP; an Organization on its identifiers; a PractitionerRole on its
 *   organization, which may be an Organization entry of the same transaction (its fullUrl);
 *   other resources on their patient, which may be a Patient entry of the same transaction.
 */
export async function assertBundleInCentre(
  client: ClientIdentity,
  forwarded: fhir4.Bundle,
  indexes: readonly number[],
  deps: { fhir: FhirServer; centreAccess: CentreAccess },
): Promise<void> {
  const { fhir, centreAccess } = deps;
  const entries = forwarded.entry ?? [];
  const indexOf = (position: number): number => indexes[position] ?? position;
  /** Runs a centre check; `diagnostics`: refuse with a 403 that says only that (about stored resources), else the check's own refusal. */
  const check = async (position: number, run: () => Promise<void>, diagnostics: string): Promise<void> => {
    try {
      await run();
    } catch (error) {
      if (!diagnostics) throw error;
      if (error instanceof OperationOutcomeError) throw forbiddenEntry(indexOf(position), diagnostics);
      throw error;
    }
  };
  // A re-sent transaction matches many resources of one patient: that patient is checked once.
  const patientsChecked = new Map<string, Promise<void>>();
  const storedMatch = async (position: number, stored: fhir4.Resource, diagnostics: string): Promise<void> => {
    const patientReference = stored.resourceType === 'Patient' ? undefined : patientReferenceOf(stored);
    const once = patientReference !== undefined && !DIRECTORY_TYPES.has(stored.resourceType);
    let run = once ? patientsChecked.get(patientReference) : undefined;
    if (!run) {
      run = centreAccess.assertPushable(client, stored, patientReference);
      if (once) patientsChecked.set(patientReference, run);
    }
    const pending = run;
    await check(position, () => pending, diagnostics);
  };

  // What the conditional creates resolve to (transactions: their fullUrls then name these).
  const resolved = forwarded.type === 'transaction' ? await resolveConditionalCreates(fhir, forwarded) : new Map<number, fhir4.Resource[]>();
  for (const [position, matches] of resolved) {
    for (const match of matches) await storedMatch(position, match, 'This entry matches (by its identifier) a resource this client may not write to');
  }
  // What a PUT would overwrite.
  for (const [position, entry] of entries.entries()) {
    if (entry.request?.method !== 'PUT' || !entry.resource?.id) continue;
    const existing = await fhir.readIfExists<fhir4.Resource>(entry.resource.resourceType, entry.resource.id);
    if (existing) await storedMatch(position, existing, 'This entry would overwrite a resource this client may not write to');
  }

  const localPatients = new Set<string>();
  /** fullUrl of an accepted Organization entry → the stored Organization its create resolves to, if any. */
  const localOrganizations = new Map<string, string | undefined>();
  for (const [position, entry] of entries.entries()) {
    const resource = entry.resource;
    if (resource?.resourceType !== 'Patient' && resource?.resourceType !== 'Organization') continue;
    await check(position, () => centreAccess.assertPushable(client, resource, undefined), '');
    if (!entry.fullUrl) continue;
    if (resource.resourceType === 'Patient') localPatients.add(entry.fullUrl);
    else {
      const [stored] = resolved.get(position) ?? [];
      localOrganizations.set(entry.fullUrl, stored?.id ? `Organization/${stored.id}` : undefined);
    }
  }
  for (const [position, entry] of entries.entries()) {
    const resource = entry.resource;
    if (!resource || resource.resourceType === 'Patient' || resource.resourceType === 'Organization') continue;
    const organization = resource.resourceType === 'PractitionerRole' ? (resource as fhir4.PractitionerRole).organization?.reference : undefined;
    if (organization !== undefined && localOrganizations.has(organization)) {
      const stored = localOrganizations.get(organization);
      if (stored) {
        // The Organization entry resolves to a stored one of this centre: the usual checks, on it.
        const role = { ...(resource as fhir4.PractitionerRole), organization: { reference: stored } };
        await check(position, () => centreAccess.assertPushable(client, role, undefined), '');
      } else if (!(resource as fhir4.PractitionerRole).practitioner?.reference?.startsWith('urn:uuid:')) {
        // A new Organization of this centre: only for Practitioners created with it (an existing
        // Practitioner's roles are checked against the stored directory: push the Organization first).
        throw forbiddenEntry(indexOf(position), 'A PractitionerRole of a new Organization may only name a Practitioner of the same transaction; push the Organization first');
      }
      continue;
    }
    await check(position, () => centreAccess.assertPushable(client, resource, patientReferenceOf(resource), localPatients), '');
  }
}
