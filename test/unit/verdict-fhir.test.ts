import { describe, expect, it } from 'vitest';
import { deterministicUuid, FORFAIT_UUID_NAMESPACE, UUID_NAMESPACE_DNS, UUID_NAMESPACE_URL } from '../../src/domain/ids.js';
import {
  ELIGIBILITY_OUTCOME_SYSTEM,
  enrolmentProposalTask,
  enrolmentProposalTaskId,
  guidanceResponseId,
  PROFILE_URLS,
  TASK_CODE_SYSTEM,
  UCUM_SYSTEM,
  verdictSummary,
  verdictToGuidanceResponse,
  verdictToParameters,
} from '../../src/domain/verdict-fhir.js';
import { eligible, fnmf, loadProgram, notEligible, undetermined } from './fhir/verdict-fixtures.js';

const grOptions = {
  id: 'gr-1',
  occurrenceDateTime: '2024-05-01T09:30:00+02:00',
  requestIdentifier: { system: 'urn:forfait-fhir:job', value: 'job-42' },
};

function part(parameter: fhir4.ParametersParameter, name: string): fhir4.ParametersParameter[] {
  return (parameter.part ?? []).filter((p) => p.name === name);
}

function criteria(parameters: fhir4.Parameters): fhir4.ParametersParameter[] {
  return (parameters.parameter ?? []).filter((p) => p.name === 'criterion');
}

describe('deterministicUuid (UUIDv5, RFC 4122)', () => {
  it('matches published and reference vectors', () => {
    // RFC 4122 / Wikipedia example, and Python's uuid.uuid5 for the others.
    expect(deterministicUuid(UUID_NAMESPACE_DNS, 'www.example.com')).toBe('2ed6657d-e927-568b-95e1-2665a8aea6a2');
    expect(deterministicUuid(UUID_NAMESPACE_DNS, 'python.org')).toBe('886313e1-3b8a-5372-9b90-0c9aee199e5d');
    expect(deterministicUuid(UUID_NAMESPACE_DNS, '')).toBe('4ebd0208-8328-5d69-8c44-ec50939c0967');
    expect(deterministicUuid(UUID_NAMESPACE_URL, 'https://example.org/résumé')).toBe('7096ddfa-d8c7-5689-a638-2476ff5ec096');
    expect(FORFAIT_UUID_NAMESPACE).toBe('d727aa1b-9b5b-5f7d-bc0e-3d505fc9ed10');
  });

  it('accepts an upper-case name space and rejects a non-UUID one', () => {
    expect(deterministicUuid(UUID_NAMESPACE_DNS.toUpperCase(), 'www.example.com')).toBe('2ed6657d-e927-568b-95e1-2665a8aea6a2');
    expect(() => deterministicUuid('not-a-uuid', 'x')).toThrow(TypeError);
  });

  it('gives stable, distinct, FHIR-valid resource ids per program and patient', () => {
    const rediab = loadProgram('rediab');
    const id = guidanceResponseId(fnmf, 'p1');
    expect(id).toBe(guidanceResponseId(fnmf, 'p1'));
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set([id, guidanceResponseId(fnmf, 'p2'), guidanceResponseId(rediab, 'p1'), enrolmentProposalTaskId(fnmf, 'p1')]).size).toBe(4);
  });
});

describe('verdictToParameters', () => {
  it('starts with program, asOf and outcome, then one criterion per criterion, in order', () => {
    const parameters = verdictToParameters(eligible);
    expect(parameters.resourceType).toBe('Parameters');
    expect(parameters.meta?.profile).toEqual([PROFILE_URLS.verdictParameters]);
    expect(parameters.parameter?.slice(0, 3)).toEqual([
      { name: 'program', valueString: 'fnmf-prediabetes' },
      { name: 'asOf', valueDate: '2024-05-01' },
      { name: 'outcome', valueCode: 'eligible' },
    ]);
    expect(criteria(parameters).map((c) => part(c, 'code')[0]?.valueCode)).toEqual(eligible.criteria.map((c) => c.code));
  });

  it('maps every kind of judged value onto value[x]', () => {
    const [gp, age, glucose, bmi, diabetes] = criteria(verdictToParameters(eligible));
    expect(part(gp!, 'value')).toEqual([
      { name: 'value', valueCoding: { system: 'http://forfait-fhir.org/fhir/NamingSystem/demo-centre', code: 'CDS-MGEN-VAUGIRARD', display: 'Demo centre' } },
    ]);
    expect(part(age!, 'value')).toEqual([{ name: 'value', valueInteger: 52 }]);
    // The decimal string becomes a JSON number: "1.10" -> 1.1.
    expect(part(glucose!, 'value')).toEqual([{ name: 'value', valueQuantity: { value: 1.1, unit: 'g/L', system: UCUM_SYSTEM, code: 'g/L' } }]);
    expect(part(bmi!, 'value')[0]?.valueQuantity?.value).toBe(27.4);
    expect(part(diabetes!, 'value')).toEqual([{ name: 'value', valueBoolean: false }]);
    const [born, , low] = criteria(verdictToParameters(notEligible));
    expect(part(born!, 'value')).toEqual([{ name: 'value', valueDate: '1970-01-15' }]);
    expect(part(low!, 'value')).toEqual([{ name: 'value', valueString: 'normal' }]);
  });

  it('gives status, reason, one evidence per reference, flags, missing data and issues', () => {
    const [gp] = criteria(verdictToParameters(eligible));
    expect(part(gp!, 'status')).toEqual([{ name: 'status', valueCode: 'met' }]);
    expect(part(gp!, 'reason')).toEqual([{ name: 'reason', valueString: 'The GP practises in a participating centre.' }]);
    expect(part(gp!, 'evidence')).toEqual([
      { name: 'evidence', valueReference: { reference: 'Patient/p1/_history/3' } },
      { name: 'evidence', valueReference: { reference: 'PractitionerRole/r1/_history/1' } },
    ]);
    const glucose = criteria(verdictToParameters(notEligible))[1]!;
    expect(part(glucose, 'flag')).toEqual([{ name: 'flag', valueString: 'above range: possible diabetes' }]);
    const unknown = criteria(verdictToParameters(undetermined))[1]!;
    expect(part(unknown, 'value')).toEqual([]);
    expect(part(unknown, 'evidence')).toEqual([]);
    expect(part(unknown, 'missing')).toEqual([{ name: 'missing', valueString: 'fasting plasma glucose within the last 12 months' }]);
    expect(part(unknown, 'issue')).toEqual([{ name: 'issue', valueString: 'Unknown unit "mg/dl%" for a glucose value' }]);
  });

  it('refuses a quantity that is not a decimal', () => {
    const bad = { ...eligible, criteria: [{ ...eligible.criteria[0]!, value: { type: 'Quantity' as const, value: 'abc', unit: 'g/L', code: 'g/L' } }] };
    expect(() => verdictToParameters(bad)).toThrow(/not a decimal/);
  });
});

describe('verdictToGuidanceResponse', () => {
  it('builds a success response holding the verdict as contained Parameters', () => {
    const gr = verdictToGuidanceResponse(eligible, fnmf, 'p1', grOptions);
    expect(gr).toMatchObject({
      resourceType: 'GuidanceResponse',
      id: 'gr-1',
      meta: { profile: [PROFILE_URLS.guidanceResponse] },
      requestIdentifier: { system: 'urn:forfait-fhir:job', value: 'job-42' },
      identifier: [{ system: 'http://forfait-fhir.org/fhir/PlanDefinition/fnmf-prediabetes/guidance-response', value: 'p1' }],
      moduleUri: 'http://forfait-fhir.org/fhir/PlanDefinition/fnmf-prediabetes',
      status: 'success',
      subject: { reference: 'Patient/p1' },
      occurrenceDateTime: '2024-05-01T09:30:00+02:00',
      reasonCode: [{ coding: [{ system: ELIGIBILITY_OUTCOME_SYSTEM, code: 'eligible', display: 'Eligible' }] }],
      outputParameters: { reference: '#verdict' },
    });
    expect(gr.contained).toHaveLength(1);
    const { id, ...contained } = gr.contained![0] as fhir4.Parameters;
    expect(id).toBe('verdict');
    expect(contained).toEqual(verdictToParameters(eligible));
    expect(gr.evaluationMessage).toBeUndefined();
    expect(gr.dataRequirement).toBeUndefined();
    expect(gr.note?.[0]?.text).toBe(
      'FNMF prediabetes prevention program (Article 51): eligible as of 2024-05-01. Met: gp-in-centre, age, fasting-glucose, bmi, no-diabetes.',
    );
  });

  it('says what a not-eligible verdict failed on, with its flags', () => {
    const gr = verdictToGuidanceResponse(notEligible, fnmf, 'p2', grOptions);
    expect(gr.status).toBe('success');
    expect(gr.reasonCode?.[0]?.coding?.[0]?.code).toBe('not-eligible');
    expect(gr.note?.[0]?.text).toBe(
      'FNMF prediabetes prevention program (Article 51): not-eligible as of 2024-05-01. Met: age. Not met: fasting-glucose, bmi. Flags: fasting-glucose: above range: possible diabetes.',
    );
  });

  it('asks for the missing data of an undetermined verdict and reports data issues', () => {
    const gr = verdictToGuidanceResponse(undetermined, fnmf, 'p3', grOptions);
    expect(gr.status).toBe('data-required');
    expect(gr.dataRequirement).toEqual([
      {
        type: 'Observation',
        codeFilter: [
          {
            path: 'code',
            code: [
              { system: 'http://loinc.org', code: '1558-6', display: 'Fasting glucose [Mass/volume] in Serum or Plasma' },
              { system: 'http://loinc.org', code: '14771-0' },
            ],
          },
        ],
      },
      { type: 'Observation', codeFilter: [{ path: 'code', code: [{ system: 'http://loinc.org', code: '39156-5' }] }] },
      { type: 'Observation', codeFilter: [{ path: 'code', code: [{ system: 'http://loinc.org', code: '29463-7' }] }] },
      { type: 'Consent' },
    ]);
    expect(gr.evaluationMessage).toEqual([{ reference: '#issues' }]);
    const outcome = gr.contained?.find((r) => r.resourceType === 'OperationOutcome') as fhir4.OperationOutcome;
    expect(outcome).toEqual({
      resourceType: 'OperationOutcome',
      id: 'issues',
      issue: [
        {
          severity: 'error',
          code: 'code-invalid',
          details: { text: 'criterion fasting-glucose' },
          diagnostics: 'Unknown unit "mg/dl%" for a glucose value (Observation/g3/_history/4)',
          expression: ['Observation.valueQuantity.code'],
        },
        { severity: 'warning', code: 'incomplete', details: { text: 'criterion consent' }, diagnostics: 'Consent without a date' },
      ],
    });
  });

  it('names the patient by reference only', () => {
    const text = JSON.stringify(verdictToGuidanceResponse(eligible, fnmf, 'p1', grOptions));
    expect(text.match(/Patient\/[^"/]+/g)?.every((m) => m === 'Patient/p1')).toBe(true);
  });

  it('refuses a verdict of another program and a patient id that is not a FHIR id', () => {
    expect(() => verdictToGuidanceResponse(eligible, loadProgram('rediab'), 'p1', grOptions)).toThrow(/program/);
    expect(() => verdictToGuidanceResponse(eligible, fnmf, 'p1/../x', grOptions)).toThrow(/FHIR logical id/);
  });

  it('is a pure function of its inputs', () => {
    expect(verdictToGuidanceResponse(undetermined, fnmf, 'p3', grOptions)).toEqual(verdictToGuidanceResponse(undetermined, fnmf, 'p3', grOptions));
  });
});

describe('enrolmentProposalTask', () => {
  const options = { id: 't-1', authoredOn: '2024-05-01T09:30:00+02:00' };

  it('asks the GP to propose enrolment', () => {
    const task = enrolmentProposalTask(eligible, fnmf, 'p1', { ...options, owner: { reference: 'Practitioner/gp1' } });
    expect(task).toMatchObject({
      resourceType: 'Task',
      id: 't-1',
      meta: { profile: [PROFILE_URLS.enrolmentProposalTask] },
      identifier: [{ system: 'http://forfait-fhir.org/fhir/PlanDefinition/fnmf-prediabetes/enrolment-proposal', value: 'p1' }],
      instantiatesUri: 'http://forfait-fhir.org/fhir/PlanDefinition/fnmf-prediabetes',
      status: 'requested',
      intent: 'proposal',
      code: { coding: [{ system: TASK_CODE_SYSTEM, code: 'propose-enrolment' }] },
      for: { reference: 'Patient/p1' },
      owner: { reference: 'Practitioner/gp1' },
      authoredOn: '2024-05-01T09:30:00+02:00',
      note: [{ text: verdictSummary(eligible, fnmf) }],
    });
    expect(task.description).toContain('FNMF prediabetes prevention program');
    expect(task.reasonReference).toBeUndefined();
    expect(task.focus).toBeUndefined();
  });

  it('omits the owner when none is given and keeps an optional focus', () => {
    const task = enrolmentProposalTask(eligible, fnmf, 'p1', { ...options, focus: { reference: 'GuidanceResponse/gr-1' } });
    expect(task.owner).toBeUndefined();
    expect(task.focus).toEqual({ reference: 'GuidanceResponse/gr-1' });
  });

  it('is only for eligible patients', () => {
    expect(() => enrolmentProposalTask(notEligible, fnmf, 'p2', options)).toThrow(/eligible patients only/);
    expect(() => enrolmentProposalTask(undetermined, fnmf, 'p3', options)).toThrow(/eligible patients only/);
  });
});
