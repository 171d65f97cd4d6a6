/**
 * Centre membership of a patient (issue #6, finding F7): derived from the PractitionerRole or
 * Organization the GP reference names; a bare Practitioner counts only when all its active
 * roles in participating centres are in one centre.
 */
import { describe, expect, it } from 'vitest';
import { CentreAccess } from '../../../src/app/centre-access.js';
import type { ClientIdentity } from '../../../src/app/centre-access.js';
import type { CentreDirectoryCache } from '../../../src/fhir/centre-directory.js';
import type { FhirServer } from '../../../src/fhir/fhir-server.port.js';
import type { CentreDirectory } from '../../../src/domain/types.js';
import type { ProgramCatalog } from '../../../src/programs/schema.js';

const A = 'urn:centre|A';
const B = 'urn:centre|B';

/** Roles on the server: id → [practitioner id, centre of its organization, active]. */
type Roles = Record<string, [string, string, boolean?]>;

function access(roles: Roles, patients: Record<string, string[]>): { access: CentreAccess; searches: string[] } {
  const searches: string[] = [];
  const members = new Map<string, { centre: string; evidence: string[] }>([
    ['Organization/orgA', { centre: A, evidence: [] }],
    ['Organization/orgB', { centre: B, evidence: [] }],
  ]);
  for (const [id, [, centre, active]] of Object.entries(roles)) if (active !== false) members.set(`PractitionerRole/${id}`, { centre, evidence: [] });
  const directory: CentreDirectory = { members };
  // Only what CentreAccess calls: readIfExists (Patient) and searchAll (PractitionerRole).
  const fhir = {
    async readIfExists(type: string, id: string) {
      return type === 'Patient' && patients[id] ? { resourceType: 'Patient', id, generalPractitioner: patients[id].map((reference) => ({ reference })) } : undefined;
    },
    async searchAll(type: string, params: Record<string, string>) {
      searches.push(`${type}?practitioner=${params['practitioner']}`);
      const practitioner = params['practitioner']?.replace('Practitioner/', '');
      return Object.entries(roles)
        .filter(([, [p]]) => p === practitioner)
        .map(([id, [p, , active]]) => ({ resourceType: 'PractitionerRole', id, practitioner: { reference: `Practitioner/${p}` }, ...(active === false ? { active: false } : {}) }));
    },
  } as unknown as FhirServer;
  const catalog = { programs: new Map([['p', { centres: [{ identifier: { system: 'urn:centre', value: 'A' } }] }]]) } as unknown as ProgramCatalog;
  const cache = { get: async () => directory } as unknown as CentreDirectoryCache;
  return { access: new CentreAccess(fhir, catalog, cache), searches };
}

const client = (centre: string): ClientIdentity => ({ clientId: centre, centre, scopes: [] });

describe('centre of a patient', () => {
  it('a PractitionerRole or Organization GP places the patient in that centre', async () => {
    const { access: a } = access({ rA: ['p1', A] }, { x: ['PractitionerRole/rA'], y: ['https://fhir.example/fhir/Organization/orgB/_history/2'] });
    expect(await a.centresOfPatient('x')).toEqual(new Set([A]));
    expect(await a.centresOfPatient('y')).toEqual(new Set([B]));
  });

  it('a bare Practitioner with roles in one centre places the patient there', async () => {
    const { access: a } = access({ rA: ['p1', A], rA2: ['p1', A] }, { x: ['Practitioner/p1'] });
    await expect(a.assertPatient(client(A), 'x')).resolves.toBeUndefined();
    await expect(a.assertPatient(client(B), 'x')).rejects.toMatchObject({ status: 404 });
  });

  it('a bare Practitioner given a role in a second centre places the patient in neither (F7)', async () => {
    const { access: a } = access({ rA: ['p1', A], rB: ['p1', B] }, { x: ['Practitioner/p1'] });
    expect(await a.centresOfPatient('x')).toEqual(new Set());
    await expect(a.assertPatient(client(B), 'x')).rejects.toMatchObject({ status: 404 });
  });

  it('an inactive role in another centre does not count', async () => {
    const { access: a } = access({ rA: ['p1', A], rB: ['p1', B, false] }, { x: ['Practitioner/p1'] });
    expect(await a.centresOfPatient('x')).toEqual(new Set([A]));
  });

  it('dot ids name nothing (and are never searched)', async () => {
    const { access: a, searches } = access({ rA: ['p1', A] }, { x: ['Practitioner/..', 'PractitionerRole/.', 'Organization/..'] });
    expect(await a.centresOfPatient('x')).toEqual(new Set());
    expect(searches).toEqual([]);
  });
});

describe('pushing a PractitionerRole', () => {
  const role = (practitioner: string, organization: string): fhir4.PractitionerRole => ({ resourceType: 'PractitionerRole', practitioner: { reference: practitioner }, organization: { reference: organization } });

  it('is refused for a Practitioner who holds a role in another centre (403)', async () => {
    const { access: a } = access({ rA: ['p1', A] }, {});
    await expect(a.assertPushable(client(B), role('Practitioner/p1', 'Organization/orgB'), undefined)).rejects.toMatchObject({ status: 403 });
  });

  it('is accepted for a new Practitioner or one of the same centre', async () => {
    const { access: a } = access({ rA: ['p1', A] }, {});
    await expect(a.assertPushable(client(A), role('Practitioner/p1', 'Organization/orgA'), undefined)).resolves.toBeUndefined();
    await expect(a.assertPushable(client(B), role('Practitioner/p2', 'Organization/orgB'), undefined)).resolves.toBeUndefined();
  });
});
