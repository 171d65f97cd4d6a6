/**
 * Fetches what one patient's evaluation needs in as few requests as possible: one batch
 * Bundle of searches (the embedded server ignores `_revinclude`, and a batch works on every
 * server), then, only when needed, one batch of reads for the Specimens and payor
 * Organizations those resources point to.
 */
import { localId } from '../domain/references.js';
import type { PatientRecord } from '../domain/types.js';
import { FhirServerError, type FhirServer } from './fhir-server.port.js';

export interface RecordQuery {
  patientId: string;
  /** Observation codes worth fetching (`system|code`), from the programs' value sets. */
  observationCodes: readonly { system: string; code: string }[];
}

const PAGE_SIZE = '1000';

export class PatientNotFoundError extends Error {
  override name = 'PatientNotFoundError';
}

/** The id of a `type` reference on any base, any version (ids `.` and `..` refused: src/domain/references.ts). */
const localReference = (reference: string | undefined, type: string): string | undefined => localId(reference, type, { anyBase: true });

export interface FetchedRecord {
  record: PatientRecord;
  /** Results of `extraRequests`, in order: the resource (a Bundle for a search), or undefined on 404. */
  extras: (fhir4.Resource | undefined)[];
}

/**
 * `extraRequests` are relative GET URLs folded into the same batch (the worker reads the
 * current GuidanceResponse, Task and enrolment with the patient's data: one round trip).
 */
export async function fetchPatientRecord(fhir: FhirServer, query: RecordQuery, extraRequests: readonly string[] = []): Promise<FetchedRecord> {
  const { patientId } = query;
  const subject = `Patient/${patientId}`;
  const codes = query.observationCodes.map((c) => `${c.system}|${c.code}`).join(',');
  const searches: [string, Record<string, string>][] = [
    // _include: the Specimens and payor Organizations come in the same round trip on servers
    // that support it; whatever a server leaves out is read in a second batch below.
    ['Observation', { subject, code: codes, _include: 'Observation:specimen', _count: PAGE_SIZE }],
    ['Condition', { subject, _count: PAGE_SIZE }],
    ['Coverage', { beneficiary: subject, _include: 'Coverage:payor', _count: PAGE_SIZE }],
    ['Consent', { patient: subject, _count: PAGE_SIZE }],
  ];
  const bundle: fhir4.Bundle = {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { request: { method: 'GET', url: subject } },
      ...searches.map(([type, params]) => ({ request: { method: 'GET' as const, url: `${type}?${new URLSearchParams(params).toString()}` } })),
      ...extraRequests.map((url) => ({ request: { method: 'GET' as const, url } })),
    ],
  };
  const response = await fhir.batch(bundle);
  const entries = response.entry ?? [];
  const [patientEntry, ...rest] = entries;
  const searchEntries = rest.slice(0, searches.length);
  const extras = rest.slice(searches.length).map((entry) => {
    const status = entry.response?.status ?? '';
    if (status.startsWith('404') || status.startsWith('410')) return undefined;
    if (!status.startsWith('2') || !entry.resource) {
      throw new FhirServerError(`FHIR batch: extra read answered ${status || 'nothing'}`, Number.parseInt(status, 10) || 0, undefined, true);
    }
    return entry.resource;
  });
  const patientStatus = patientEntry?.response?.status ?? '';
  if (!patientEntry?.resource || patientEntry.resource.resourceType !== 'Patient') {
    if (patientStatus.startsWith('404') || patientStatus.startsWith('410')) throw new PatientNotFoundError(`Patient/${patientId} not found`);
    throw new FhirServerError(`FHIR batch: Patient read answered ${patientStatus || 'nothing'}`, Number.parseInt(patientStatus, 10) || 0, undefined, true);
  }
  const results = await Promise.all(
    searches.map(async ([type, params], index) => {
      const entry = searchEntries[index];
      const status = entry?.response?.status ?? '';
      if (!status.startsWith('2') || entry?.resource?.resourceType !== 'Bundle') {
        throw new FhirServerError(`FHIR batch: ${type} search answered ${status || 'nothing'}`, Number.parseInt(status, 10) || 0, undefined, true);
      }
      const page = entry.resource as fhir4.Bundle;
      // A server that pages (HAPI) gives a next link: fetch the whole result instead.
      if (page.link?.some((link) => link.relation === 'next')) return fhir.searchAll(type, params);
      return (page.entry ?? []).flatMap((e) => (e.resource?.resourceType === type && e.search?.mode !== 'include' ? [e.resource] : []));
    }),
  );
  const record: PatientRecord = {
    patient: patientEntry.resource as fhir4.Patient,
    observations: results[0] as fhir4.Observation[],
    conditions: results[1] as fhir4.Condition[],
    coverages: results[2] as fhir4.Coverage[],
    consents: results[3] as fhir4.Consent[],
    specimens: [],
    organizations: [],
  };

  const specimenIds = new Set(record.observations.flatMap((o) => localReference(o.specimen?.reference, 'Specimen') ?? []));
  const payorIds = new Set(
    record.coverages.flatMap((c) => (c.payor ?? []).flatMap((p) => (p.identifier ? [] : localReference(p.reference, 'Organization') ?? []))),
  );
  for (const entry of searchEntries.flatMap((e) => (e.resource as fhir4.Bundle | undefined)?.entry ?? [])) {
    const included = entry.search?.mode === 'include' ? entry.resource : undefined;
    if (included?.resourceType === 'Specimen' && specimenIds.delete(included.id ?? '')) record.specimens.push(included as fhir4.Specimen);
    else if (included?.resourceType === 'Organization' && payorIds.delete(included.id ?? '')) record.organizations.push(included as fhir4.Organization);
  }
  if (specimenIds.size || payorIds.size) {
    const reads: fhir4.BundleEntry[] = [
      ...[...specimenIds].map((id) => ({ request: { method: 'GET' as const, url: `Specimen/${id}` } })),
      ...[...payorIds].map((id) => ({ request: { method: 'GET' as const, url: `Organization/${id}` } })),
    ];
    const second = await fhir.batch({ resourceType: 'Bundle', type: 'batch', entry: reads });
    for (const entry of second.entry ?? []) {
      if (entry.resource?.resourceType === 'Specimen') record.specimens.push(entry.resource as fhir4.Specimen);
      else if (entry.resource?.resourceType === 'Organization') record.organizations.push(entry.resource as fhir4.Organization);
    }
  }
  return { record, extras };
}
