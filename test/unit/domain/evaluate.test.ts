import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { observationCodesOfInterest, observationUnitIssues } from '../../../src/domain/evaluate.js';
import type { EligibilityOutcome, PatientRecord } from '../../../src/domain/types.js';
import {
  GP,
  ICD10,
  INSURER_SYSTEM,
  LOINC,
  SNOMED,
  bmiObs,
  condition,
  consent,
  coverage,
  criterion,
  evaluate,
  glucose,
  heightObs,
  observation,
  patient,
  record,
  specimen,
  weightObs,
} from './fhir-fixtures.js';
import { catalog, fnmf, onlyCriterion, rediab } from './program-fixtures.js';

/** A FNMF candidate meeting every criterion on 2025-06-15. */
function fnmfCandidate(overrides: Partial<PatientRecord> = {}): PatientRecord {
  return record({
    patient: patient({ birthDate: '1975-03-01', generalPractitioner: [{ reference: GP }] }),
    observations: [glucose(1.15, 'g/L', '2025-05-01'), bmiObs(27, '2025-05-01')],
    ...overrides,
  });
}

/** A REDIAB candidate meeting every criterion on 2025-06-15. */
function rediabCandidate(overrides: Partial<PatientRecord> = {}): PatientRecord {
  return record({
    patient: patient({ address: [{ use: 'home', postalCode: '62100' }] }),
    conditions: [condition('E11.9', ICD10, { clinical: 'active' })],
    coverages: [coverage([{ identifier: { system: INSURER_SYSTEM, value: 'CPAM-CALAIS' } }])],
    consents: [consent()],
    ...overrides,
  });
}

describe('evaluateEligibility', () => {
  it('returns one result per criterion, in program order', () => {
    const verdict = evaluate(fnmf, fnmfCandidate());
    expect(verdict.program).toBe('fnmf-prediabetes');
    expect(verdict.asOf).toBe('2025-06-15');
    expect(verdict.criteria.map((c) => c.code)).toEqual(['gp-in-centre', 'age', 'fasting-glucose', 'bmi', 'no-diabetes']);
    expect(verdict.criteria.map((c) => c.code)).toEqual(fnmf.definition.criteria.map((c) => c.code));
  });

  it.each<[string, () => PatientRecord, EligibilityOutcome]>([
    ['FNMF: every criterion met', () => fnmfCandidate(), 'eligible'],
    ['FNMF: active diabetes', () => fnmfCandidate({ conditions: [condition('44054006', SNOMED, { clinical: 'active' })] }), 'not-eligible'],
    ['FNMF: resolved diabetes', () => fnmfCandidate({ conditions: [condition('44054006', SNOMED, { clinical: 'resolved' })] }), 'eligible'],
    ['FNMF: glucose above range', () => fnmfCandidate({ observations: [glucose(1.3, 'g/L', '2025-05-01'), bmiObs(27, '2025-05-01')] }), 'not-eligible'],
    ['FNMF: no glucose', () => fnmfCandidate({ observations: [bmiObs(27, '2025-05-01')] }), 'undetermined'],
    ['FNMF: non-fasting glucose only', () => fnmfCandidate({ observations: [glucose(1.15, 'g/L', '2025-05-01', {}, '2345-7'), bmiObs(27, '2025-05-01')] }), 'undetermined'],
    ['FNMF: no glucose and BMI 24', () => fnmfCandidate({ observations: [bmiObs(24, '2025-05-01')] }), 'not-eligible'],
    ['FNMF: computed BMI', () => fnmfCandidate({ observations: [glucose(1.15, 'g/L', '2025-05-01'), weightObs(85, 'kg', '2025-05-01'), heightObs(175, 'cm', '2019-01-01')] }), 'eligible'],
    ['FNMF: no GP', () => fnmfCandidate({ patient: patient({ birthDate: '1975-03-01' }) }), 'not-eligible'],
    ['REDIAB: every criterion met', () => rediabCandidate(), 'eligible'],
    ['REDIAB: resolved diabetes', () => rediabCandidate({ conditions: [condition('E11.9', ICD10, { clinical: 'resolved' })] }), 'not-eligible'],
    ['REDIAB: no Consent yet', () => rediabCandidate({ consents: [] }), 'undetermined'],
    ['REDIAB: outside the districts', () => rediabCandidate({ patient: patient({ address: [{ use: 'home', postalCode: '59000' }] }) }), 'not-eligible'],
    ['REDIAB: insurer not joined', () => rediabCandidate({ coverages: [coverage([{ identifier: { system: INSURER_SYSTEM, value: 'MSA' } }])] }), 'not-eligible'],
    ['REDIAB: no Coverage, not in the districts', () => rediabCandidate({ coverages: [], patient: patient({ address: [{ postalCode: '59000' }] }) }), 'not-eligible'],
  ])('%s → %s', (_name, build, outcome) => {
    const patientRecord = build();
    const program = _name.startsWith('FNMF') ? fnmf : rediab;
    expect(evaluate(program, patientRecord).outcome).toBe(outcome);
  });

  it('judges as of the date given, never the clock', () => {
    const candidate = fnmfCandidate();
    // 45 only from 2020-03-02 (born 1975-03-01); the glucose of 2025-05-01 is after 2020.
    const then = evaluate(fnmf, candidate, '2020-03-01');
    expect(then.criteria.find((c) => c.code === 'age')?.status).toBe('not-met');
    expect(then.criteria.find((c) => c.code === 'fasting-glucose')?.status).toBe('unknown');
  });

  it('keeps every result free of patient identifiers in its reason', () => {
    const candidate = fnmfCandidate({ patient: patient({ birthDate: '1975-03-01', generalPractitioner: [{ reference: GP }], name: [{ family: 'Dupont', given: ['Marie'] }] }) });
    for (const result of evaluate(fnmf, candidate).criteria) {
      expect(result.reason).not.toMatch(/Dupont|Marie|p1/);
      expect(result.reason).toMatch(/^[A-Z].*\.$/);
    }
  });

  it('throws only on programming errors', () => {
    expect(() => evaluate(fnmf, fnmfCandidate(), '15/06/2025')).toThrow(/asOf/);
    const broken = structuredClone(fnmf);
    broken.definition.criteria = [{ code: 'x', kind: 'no-active-condition', valueSet: 'no-such-set', label: 'x', description: 'x' }];
    expect(() => evaluate(broken, fnmfCandidate())).toThrow(/no-such-set/);
    const badZone = structuredClone(fnmf);
    badZone.definition.timeZone = 'Mars/Olympus';
    expect(() => evaluate(badZone, fnmfCandidate())).toThrow(/time zone/);
  });
});

describe('the HL7 example observation-example-f001-glucose (6.3 mmol/L, LOINC 15074-8)', () => {
  const sample = JSON.parse(
    readFileSync(new URL('../../../../shared/fhir-samples/hl7-r4-examples/observation-example-f001-glucose.json', import.meta.url), 'utf8'),
  ) as fhir4.Observation;
  const glucoseOnly = onlyCriterion(fnmf, 'fasting-glucose');
  const asOf = '2013-06-01';

  it('is a glucose without fasting status: unknown as is', () => {
    const result = criterion(glucoseOnly, 'fasting-glucose', record({ observations: [sample] }), asOf);
    expect(result.status).toBe('unknown');
    expect(result.reason).toMatch(/not recorded as fasting/);
    expect(result.evidence).toEqual(['Observation/f001']);
    expect(evaluate(glucoseOnly, record({ observations: [sample] }), asOf).outcome).toBe('undetermined');
  });

  it('converts to 1.14 g/L with a fasting Specimen', () => {
    const fasting = { ...sample, specimen: { reference: 'Specimen/f001-sp' } };
    const result = criterion(glucoseOnly, 'fasting-glucose', record({ observations: [fasting], specimens: [specimen('f001-sp', 'F')] }), asOf);
    expect(result).toMatchObject({ status: 'met', value: { type: 'Quantity', value: '1.14', unit: 'g/L', code: 'g/L' } });
    expect(result.reason).toBe(
      'Latest fasting plasma glucose (2013-04-02): 6.3 mmol/l, i.e. 1.14 g/L, within the required range [1.10 ; 1.26] g/L.',
    );
    expect(result.evidence).toEqual(['Observation/f001', 'Specimen/f001-sp/_history/2']);
  });

  it('is dated by its effectivePeriod.start, in Paris time', () => {
    const fasting = { ...sample, method: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0916', code: 'F' }] } };
    // 12 months before 2014-04-02 is 2013-04-02: the value still counts on that day, not the next.
    expect(criterion(glucoseOnly, 'fasting-glucose', record({ observations: [fasting] }), '2014-04-02').status).toBe('met');
    expect(criterion(glucoseOnly, 'fasting-glucose', record({ observations: [fasting] }), '2014-04-03').status).toBe('unknown');
  });
});

describe('observationUnitIssues', () => {
  const programs = () => catalog.programs.values();
  it.each<[string, fhir4.Observation, string[]]>([
    ['fasting glucose in g/L', glucose(1.1, 'g/L', '2025-05-01'), []],
    ['fasting glucose in mmol', glucose(5.5, 'mmol', '2025-05-01'), ['glucose-mass-concentration']],
    ['unqualified glucose in mmol', glucose(5.5, 'mmol', '2025-05-01', {}, '2345-7'), ['glucose-mass-concentration']],
    ['site code without unit', observation({ system: 'http://forfait-fhir.org/fhir/CodeSystem/demo-lab', code: 'GLYC-AJ' }, { value: 1.1 }, '2025-05-01'), ['glucose-mass-concentration']],
    ['BMI in kg', observation({ code: '39156-5' }, { value: 25, code: 'kg' }, '2025-05-01'), ['body-mass-index']],
    ['weight in stone', weightObs(12, 'stone', '2025-05-01'), ['mass']],
    ['height in ft', heightObs(6, '[ft_i]', '2025-05-01'), ['length']],
    ['height in cm', heightObs(178, 'cm', '2025-05-01'), []],
    ['HbA1c in % (no criterion uses it)', observation({ code: '4548-4' }, { value: 6, code: '%' }, '2025-05-01'), []],
    ['glucose without value', observation({ code: '1558-6' }, undefined, '2025-05-01'), []],
    ['entered in error', glucose(5.5, 'mmol', '2025-05-01', { status: 'entered-in-error' }), []],
  ])('%s → %j', (_name, obs, dimensions) => {
    const issues = observationUnitIssues(obs, programs(), catalog);
    expect(issues).toHaveLength(dimensions.length);
    issues.forEach((issue, i) => {
      expect(issue).toMatchObject({ severity: 'error', code: 'code-invalid', expression: 'Observation.valueQuantity', resource: `Observation/${obs.id}/_history/1` });
      expect(issue.diagnostics).toContain(dimensions[i]);
    });
  });
});

describe('observationCodesOfInterest', () => {
  it('lists the enumerated codes of every Observation value set, once', () => {
    const codes = observationCodesOfInterest(catalog.programs.values(), catalog);
    expect(codes).toEqual([
      { system: LOINC, code: '1558-6' },
      { system: LOINC, code: '14771-0' },
      { system: LOINC, code: '1556-0' },
      { system: 'http://forfait-fhir.org/fhir/CodeSystem/demo-lab', code: 'GLYC-AJ' },
      { system: LOINC, code: '2345-7' },
      { system: LOINC, code: '2339-0' },
      { system: LOINC, code: '15074-8' },
      { system: LOINC, code: '39156-5' },
      { system: LOINC, code: '29463-7' },
      { system: LOINC, code: '8302-2' },
    ]);
    expect(observationCodesOfInterest([fnmf, fnmf], catalog)).toHaveLength(10);
    expect(observationCodesOfInterest([rediab], catalog)).toEqual([]);
  });
});
