import { describe, expect, it } from 'vitest';
import type { CriterionStatus } from '../../../src/domain/types.js';
import { criterion, patient, record } from './fhir-fixtures.js';
import { fnmf } from './program-fixtures.js';

describe('general-practitioner-in-centre', () => {
  it.each<[string, fhir4.Reference[] | undefined, CriterionStatus]>([
    ['GP practising in the centre', [{ reference: 'Practitioner/gp1' }], 'met'],
    ['absolute URL', [{ reference: 'https://fhir.example.org/fhir/Practitioner/gp1' }], 'met'],
    ['versioned reference', [{ reference: 'Practitioner/gp1/_history/7' }], 'met'],
    ['second of two GPs', [{ reference: 'Practitioner/gp2' }, { reference: 'Practitioner/gp1' }], 'met'],
    ['GP elsewhere', [{ reference: 'Practitioner/gp2' }], 'not-met'],
    ['same id, other type', [{ reference: 'Organization/gp1' }], 'not-met'],
    ['no GP recorded', undefined, 'not-met'],
    ['empty list', [], 'not-met'],
    ['identifier only: cannot be looked up', [{ identifier: { system: 'urn:oid:1.2.250.1.71.4.2.1', value: '10003456789' } }], 'unknown'],
  ])('%s → %s', (_name, generalPractitioner, status) => {
    const result = criterion(fnmf, 'gp-in-centre', record({ patient: patient({ generalPractitioner }) }));
    expect(result.status).toBe(status);
  });

  it('cites the patient and the directory evidence chain, names the centre', () => {
    const result = criterion(fnmf, 'gp-in-centre', record({ patient: patient({ generalPractitioner: [{ reference: 'Practitioner/gp1' }] }) }));
    expect(result.evidence).toEqual(['Patient/p1/_history/1', 'PractitionerRole/role1/_history/2', 'Organization/centre1/_history/1']);
    expect(result.reason).toContain('CDS médical et dentaire MGEN Vaugirard');
  });

  it('says when no GP is recorded', () => {
    expect(criterion(fnmf, 'gp-in-centre', record()).reason).toBe('No general practitioner recorded.');
  });
});
