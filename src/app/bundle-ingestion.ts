/**
 * `POST /fhir` with a batch or transaction Bundle (for example a whole Synthea patient):
 * check every entry, then forward to the FHIR server in one request.
 * - transaction: one bad entry rejects the whole Bundle and nothing is written;
 * - batch: bad entries get their own error response, the good ones are stored.
 * Resources of the types the programs read are checked in full; other types (a Synthea
 * bundle also holds Encounters, Claims, ...) are stored as given, as a FHIR server would.
 */
import { createHash } from 'node:crypto';
import type { EvaluationRequest } from '../queue/queues.js';
import { operationOutcome, OperationOutcomeError, type IssueInput } from '../http/outcomes.js';
import type { FhirServer } from '../fhir/fhir-server.port.js';
import { PUSHABLE_TYPES, patientIdOf, patientReferenceOf, isRelativeReference, type IngestionService } from './ingestion.service.js';

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
  return [...touched].flatMap(([patientId, references]) =>
    programIds.map((programId) => ({ programId, patientId, trigger: triggerOf(references) })),
  );
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
 * `recordSession` handles the care sessions of a batch one by one (they are checked against
 * the enrolment and linked from its CarePlan); a transaction cannot hold them, since that
 * work cannot be part of its all-or-nothing write.
 */
export async function ingestBundle(
  body: unknown,
  fhir: FhirServer,
  ingestion: IngestionService,
  recordSession?: (encounter: fhir4.Encounter) => Promise<fhir4.BundleEntry>,
): Promise<BundleResult> {
  const bundle = body as fhir4.Bundle;
  if (bundle.resourceType !== 'Bundle') {
    throw new OperationOutcomeError(400, operationOutcome([{ code: 'invalid', diagnostics: 'POST /fhir takes a Bundle (batch or transaction)', expression: ['Bundle'] }]));
  }
  if (bundle.type !== 'batch' && bundle.type !== 'transaction') {
    throw new OperationOutcomeError(400, operationOutcome([{ code: 'invalid', diagnostics: `Bundle.type must be batch or transaction, got "${String(bundle.type)}"`, expression: ['Bundle.type'] }]));
  }
  if (bundle.entry !== undefined && !Array.isArray(bundle.entry)) {
    throw new OperationOutcomeError(400, operationOutcome([{ code: 'structure', diagnostics: 'Bundle.entry must be an array', expression: ['Bundle.entry'] }]));
  }
  const entries = bundle.entry ?? [];
  const fullUrls = new Set(entries.flatMap((entry) => (entry?.fullUrl ? [entry.fullUrl] : [])));
  const isLocal = (reference: string): boolean =>
    isRelativeReference(reference) || (bundle.type === 'transaction' && fullUrls.has(reference));

  const failures = new Map<number, { status: 400 | 422; issues: IssueInput[] }>();
  entries.forEach((entry, index) => {
    const path = `Bundle.entry[${index}]`;
    const method = entry?.request?.method;
    if (!entry || typeof entry !== 'object' || !entry.resource) {
      failures.set(index, { status: 400, issues: [{ code: 'structure', diagnostics: 'Each entry needs a resource', expression: [path] }] });
      return;
    }
    if (method !== 'POST' && method !== 'PUT') {
      failures.set(index, { status: 422, issues: [{ code: 'not-supported', diagnostics: `Only POST and PUT entries are accepted, got ${String(method)}`, expression: [`${path}.request.method`] }] });
      return;
    }
    if (isSession(entry.resource)) {
      if (bundle.type === 'transaction' || !recordSession) {
        failures.set(index, { status: 422, issues: [{ code: 'not-supported', diagnostics: 'Care sessions (Encounters with an episodeOfCare) are sent one by one or in a batch Bundle, not in a transaction', expression: [`${path}.resource`] }] });
      }
      return;
    }
    const type = (entry.resource as { resourceType?: unknown }).resourceType;
    if (typeof type === 'string' && !(PUSHABLE_TYPES as readonly string[]).includes(type) && /^[A-Z][A-Za-z]+$/.test(type)) return;
    const problem = ingestion.check(entry.resource, `${path}.resource`, undefined, isLocal);
    if (problem) failures.set(index, problem);
  });

  if (bundle.type === 'transaction' && failures.size) {
    const all = [...failures.values()];
    const status = all.some((f) => f.status === 400) ? 400 : 422;
    throw new OperationOutcomeError(status, operationOutcome(all.flatMap((f) => f.issues)));
  }

  const sessionIndexes = entries.map((_, index) => index).filter((index) => !failures.has(index) && isSession(entries[index]?.resource));
  const forwardedIndexes = entries.map((_, index) => index).filter((index) => !failures.has(index) && !sessionIndexes.includes(index));
  const forwarded: fhir4.Bundle = { resourceType: 'Bundle', type: bundle.type, entry: forwardedIndexes.map((index) => entries[index] as fhir4.BundleEntry) };
  const { touchesDirectory } = ingestion.prepareBundle(forwarded);
  const serverResponse = forwardedIndexes.length
    ? bundle.type === 'transaction'
      ? await fhir.transaction(forwarded)
      : await fhir.batch(forwarded)
    : { resourceType: 'Bundle' as const, type: 'batch-response' as const, entry: [] };

  if (touchesDirectory) await ingestion.directoryChanged();

  // Stored location of each input entry, and fullUrl → stored reference (to resolve urn:uuid).
  const stored = new Map<number, { type: string; id: string; reference: string }>();
  const byFullUrl = new Map<string, { type: string; id: string }>();
  (serverResponse.entry ?? []).forEach((responseEntry, position) => {
    const index = forwardedIndexes[position] as number;
    if (!responseEntry.response?.status?.startsWith('2')) return;
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
      if (failure) return { response: { status: String(failure.status), outcome: operationOutcome(failure.issues) } };
      const session = sessionResponses.get(index);
      if (session) return session;
      return serverResponse.entry?.[forwardedIndexes.indexOf(index)] ?? { response: { status: '500' } };
    });
    response = { resourceType: 'Bundle', type: 'batch-response', entry: merged };
  }
  return { response, touched };
}
