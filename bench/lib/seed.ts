/**
 * Benchmark data: the demo centre, GPs and patients of `npm start` (src/demo/demo-data.ts),
 * with server ids, and copies of a patient's resources to make a population of any size.
 */
import { demoBundle } from '../../src/demo/demo-data.js';

export interface CloneRequest {
  /** Resources of one patient (and what belongs to it only), ids as stored. */
  template: fhir4.Resource[];
  count: number;
  /** Number of the first copy (copies `first` to `first + count - 1`): chunks of a large seeding never reuse ids. */
  first?: number;
}

/** The demo transaction's resources with ids (the urn:uuid's UUID) and references rewritten. */
export function demoResources(today: string): fhir4.Resource[] {
  const bundle = demoBundle(today);
  const ids = new Map<string, string>();
  for (const entry of bundle.entry ?? []) {
    if (entry.fullUrl && entry.resource) ids.set(entry.fullUrl, `${entry.resource.resourceType}/${entry.fullUrl.slice('urn:uuid:'.length)}`);
  }
  return (bundle.entry ?? []).map((entry) => {
    const resource = JSON.parse(JSON.stringify(entry.resource), (key, value: unknown) =>
      key === 'reference' && typeof value === 'string' && ids.has(value) ? ids.get(value) : value,
    ) as fhir4.Resource;
    return { ...resource, id: (ids.get(entry.fullUrl ?? '') ?? '').split('/')[1] as string };
  });
}

/** A patient's own resources: the Patient and everything whose subject/patient/beneficiary is it. */
export function patientResources(all: readonly fhir4.Resource[], patientId: string): fhir4.Resource[] {
  const ref = `Patient/${patientId}`;
  return all.filter((r) => {
    if (r.resourceType === 'Patient') return r.id === patientId;
    const x = r as { subject?: fhir4.Reference; patient?: fhir4.Reference; beneficiary?: fhir4.Reference };
    return x.subject?.reference === ref || x.patient?.reference === ref || x.beneficiary?.reference === ref;
  });
}

/**
 * Copy `n` of a template: fresh ids (`b<n>-<old id>`), every reference between the template's
 * resources rewritten, every identifier value suffixed with `-b<n>`, so each copy is a distinct
 * patient (with distinct business identifiers).
 */
export function cloneTemplate(template: readonly fhir4.Resource[], n: number): fhir4.Resource[] {
  const ids = new Map<string, string>();
  for (const resource of template) ids.set(`${resource.resourceType}/${resource.id}`, `${resource.resourceType}/b${n}-${(resource.id ?? '').slice(0, 40)}`);
  let text = JSON.stringify(template);
  for (const [from, to] of ids) text = text.split(`"${from}"`).join(`"${to}"`);
  const copies = JSON.parse(text) as (fhir4.Resource & { identifier?: fhir4.Identifier[] })[];
  return copies.map((resource) => {
    const id = ids.get(`${resource.resourceType}/${resource.id}`)?.split('/')[1];
    const identifier = Array.isArray(resource.identifier) ? resource.identifier.map((i) => ({ ...i, value: `${i.value ?? ''}-b${n}` })) : resource.identifier;
    return { ...resource, ...(id ? { id } : {}), ...(identifier ? { identifier } : {}) } as fhir4.Resource;
  });
}

/** Stores resources on a FHIR server (the embedded one) with their ids: batches of PUTs. */
export async function putAll(fhirBaseUrl: string, resources: readonly fhir4.Resource[]): Promise<void> {
  for (let i = 0; i < resources.length; i += 200) {
    const bundle: fhir4.Bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: resources.slice(i, i + 200).map((resource) => ({ resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } })),
    };
    const response = await fetch(fhirBaseUrl, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(bundle) });
    const body = (await response.json()) as fhir4.Bundle;
    const failed = (body.entry ?? []).filter((e) => !e.response?.status?.startsWith('2'));
    if (!response.ok || failed.length) throw new Error(`seeding ${fhirBaseUrl}: HTTP ${response.status}, ${failed.length} entries failed: ${JSON.stringify(failed[0] ?? body).slice(0, 300)}`);
  }
}
