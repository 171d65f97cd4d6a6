/**
 * Declared operation parameters (issue #6, point 5): `readParameters` refuses what the
 * declaration does not allow, with a 400 OperationOutcome naming the parameter.
 */
import { describe, expect, it } from 'vitest';
import { OperationOutcomeError } from '../../../src/http/outcomes.js';
import { asParameters, parametersFromQuery, readParameters, type OperationDeclaration } from '../../../src/http/parameters.js';
import { enrolDeclaration, EXIT } from '../../../src/http/enrolment-routes.js';

const OP: OperationDeclaration = {
  name: '$test',
  parameters: [
    { name: 'program', types: ['code', 'string'], min: 1 },
    { name: 'asOf', types: ['date'] },
    { name: 'flag', types: ['boolean'] },
    { name: 'patient', types: ['Reference'], max: '*' },
    { name: 'member', max: 2, parts: [{ name: 'who', types: ['Reference'], min: 1 }, { name: 'role', types: ['code', 'Coding'], min: 1 }] },
  ],
};

const body = (...parameter: unknown[]): unknown => ({ resourceType: 'Parameters', parameter });
const program = { name: 'program', valueCode: 'p' };

/** The refusal of `run`: status and the first issue's expression. */
function refusal(run: () => unknown): { status: number; expression: string | undefined; diagnostics: string | undefined } {
  try {
    run();
  } catch (error) {
    if (!(error instanceof OperationOutcomeError)) throw error;
    const [issue] = error.outcome.issue;
    return { status: error.status, expression: issue?.expression?.[0], diagnostics: issue?.diagnostics };
  }
  throw new Error('not refused');
}

describe('readParameters', () => {
  it('accepts what is declared and returns it', () => {
    const given = body(program, { name: 'asOf', valueDate: '2026-01-31' }, { name: 'flag', valueBoolean: false }, { name: 'patient', valueReference: { reference: 'Patient/1' } }, { name: 'patient', valueReference: { reference: 'Patient/2' } }, {
      name: 'member',
      part: [{ name: 'who', valueReference: { reference: 'PractitionerRole/r' } }, { name: 'role', valueCoding: { system: 'urn:x', code: 'gp' } }],
    });
    expect(readParameters(given, OP)).toEqual(given);
  });

  it('an empty body is an empty Parameters (only `min` can fail)', () => {
    expect(readParameters(undefined, { name: '$x', parameters: [{ name: 'a', types: ['date'] }] })).toEqual({ resourceType: 'Parameters', parameter: [] });
    expect(refusal(() => readParameters({}, OP))).toMatchObject({ status: 400, expression: "Parameters.parameter.where(name='program')" });
  });

  it.each([
    ['a null entry', body(program, null), 'Parameters.parameter[1]'],
    ['a string entry', body(program, 'asOf'), 'Parameters.parameter[1]'],
    ['an array entry', body(program, []), 'Parameters.parameter[1]'],
    ['an unnamed entry', body(program, { valueDate: '2026-01-01' }), 'Parameters.parameter[1].name'],
    ['a numeric name', body(program, { name: 3, valueDate: '2026-01-01' }), 'Parameters.parameter[1].name'],
    ['an unknown name', body(program, { name: 'asof', valueDate: '2026-01-01' }), "Parameters.parameter.where(name='asof')"],
    ['an undeclared value[x]', body(program, { name: 'asOf', valueString: '2026-01-01' }), "Parameters.parameter.where(name='asOf')"],
    ['a value of the wrong JSON type', body({ name: 'program', valueCode: 7 }), "Parameters.parameter.where(name='program')"],
    ['a boolean as a string', body(program, { name: 'flag', valueBoolean: 'true' }), "Parameters.parameter.where(name='flag')"],
    ['two values', body({ name: 'program', valueCode: 'p', valueString: 'q' }), "Parameters.parameter.where(name='program')"],
    ['no value', body({ name: 'program' }), "Parameters.parameter.where(name='program')"],
    ['a repeated max-1 parameter', body(program, program), "Parameters.parameter.where(name='program')"],
    ['a Reference without reference', body(program, { name: 'patient', valueReference: { display: 'x' } }), "Parameters.parameter.where(name='patient')"],
    ['a Reference with an unknown member', body(program, { name: 'patient', valueReference: { reference: 'Patient/1', evil: 1 } }), "Parameters.parameter.where(name='patient')"],
    ['a Reference that is a string', body(program, { name: 'patient', valueReference: 'Patient/1' }), "Parameters.parameter.where(name='patient')"],
    ['a value on a parameter made of parts', body(program, { name: 'member', valueString: 'x' }), "Parameters.parameter.where(name='member')"],
    ['a part missing', body(program, { name: 'member', part: [{ name: 'who', valueReference: { reference: 'Practitioner/1' } }] }), "Parameters.parameter.where(name='member')[0].part.where(name='role')"],
    ['a null part', body(program, { name: 'member', part: [null] }), "Parameters.parameter.where(name='member')[0].part[0]"],
    ['parts that are not an array', body(program, { name: 'member', part: { name: 'who' } }), "Parameters.parameter.where(name='member')[0].part"],
    ['a bad part of the second occurrence', body(program, { name: 'member', part: [{ name: 'who', valueReference: { reference: 'Practitioner/1' } }, { name: 'role', valueCode: 'gp' }] }, { name: 'member', part: [{ name: 'who', valueString: 'x' }, { name: 'role', valueCode: 'gp' }] }), "Parameters.parameter.where(name='member')[1].part.where(name='who')"],
    ['too many of a max-2 parameter', body(program, ...Array.from({ length: 3 }, () => ({ name: 'member', part: [{ name: 'who', valueReference: { reference: 'Practitioner/1' } }, { name: 'role', valueCode: 'gp' }] }))), "Parameters.parameter.where(name='member')"],
    ['a modifier extension', body({ ...program, modifierExtension: [{ url: 'urn:x', valueBoolean: true }] }), "Parameters.parameter.where(name='program')"],
    ['a resource', body(program, { name: 'asOf', resource: { resourceType: 'Patient' } }), "Parameters.parameter.where(name='asOf')"],
    ['parameter not an array', { resourceType: 'Parameters', parameter: { name: 'program' } }, 'Parameters.parameter'],
    ['an unknown element of Parameters', { resourceType: 'Parameters', parameter: [program], extra: 1 }, 'Parameters'],
  ])('refuses %s (400, naming it)', (_label, given, expression) => {
    expect(refusal(() => readParameters(given, OP))).toMatchObject({ status: 400, expression });
  });

  it('accepts an (ignored) extension and an id on a parameter', () => {
    expect(() => readParameters(body({ ...program, id: 'x', extension: [{ url: 'urn:x', valueString: 'y' }] }), OP)).not.toThrow();
  });

  it('refuses a body that is not a Parameters', () => {
    expect(refusal(() => readParameters({ resourceType: 'Patient' }, OP))).toMatchObject({ status: 400, expression: 'Parameters' });
    expect(refusal(() => readParameters([program], OP))).toMatchObject({ status: 400, expression: 'Parameters' });
  });

  it('quotes a hostile name inside the expression', () => {
    expect(refusal(() => readParameters(body({ name: "a')or(true", valueCode: 'x' }), OP)).expression).toBe("Parameters.parameter.where(name='a\\')or(true')");
  });
});

describe('operation declarations', () => {
  it('$enroll takes the options of the program data, with their types', () => {
    const declaration = enrolDeclaration([
      { name: 'personalisedApa', type: 'boolean', default: false, description: 'x' },
      { name: 'platformIntensity', type: 'code', values: ['light'], default: 'light', description: 'y' },
    ]);
    const base = [{ name: 'program', valueString: 'p' }, { name: 'start', valueDate: '2026-01-01' }];
    expect(() => readParameters(body(...base, { name: 'personalisedApa', valueBoolean: true }, { name: 'platformIntensity', valueCode: 'light' }), declaration)).not.toThrow();
    expect(refusal(() => readParameters(body(...base, { name: 'personalisedApa', valueCode: 'true' }), declaration)).expression).toBe("Parameters.parameter.where(name='personalisedApa')");
    expect(refusal(() => readParameters(body(...base, { name: 'reinforcedCoaching', valueBoolean: true }), declaration)).expression).toBe("Parameters.parameter.where(name='reinforcedCoaching')");
    // Without options (an unknown program), an option name is unknown.
    expect(refusal(() => readParameters(body(...base, { name: 'personalisedApa', valueBoolean: true }), enrolDeclaration([]))).status).toBe(400);
  });

  it('$exit needs its reason once, and a date', () => {
    expect(refusal(() => readParameters(body({ name: 'date', valueDate: '2026-01-01' }), EXIT)).expression).toBe("Parameters.parameter.where(name='reason')");
    expect(refusal(() => readParameters(body({ name: 'reason', valueCode: 'withdrew' }, { name: 'date', valueDate: 20260101 }), EXIT)).expression).toBe("Parameters.parameter.where(name='date')");
  });
});

describe('parametersFromQuery', () => {
  const GET: OperationDeclaration = { name: '$get', parameters: [{ name: 'program', types: ['code', 'string'], min: 1 }, { name: 'asOf', types: ['date'] }] };

  it('types each value by its declaration', () => {
    expect(parametersFromQuery({ program: 'p', asOf: '2026-01-01', _format: 'json' }, GET).parameter).toEqual([
      { name: 'program', valueCode: 'p' },
      { name: 'asOf', valueDate: '2026-01-01' },
    ]);
  });

  it.each([
    ['an unknown name', { program: 'p', other: '1' }, "Parameters.parameter.where(name='other')"],
    ['a repeated parameter', { program: ['p', 'q'] }, "Parameters.parameter.where(name='program')"],
    ['a nested value', { program: { a: '1' } }, "Parameters.parameter.where(name='program')"],
    ['a missing required parameter', { asOf: '2026-01-01' }, "Parameters.parameter.where(name='program')"],
    ['an empty value', { program: '' }, "Parameters.parameter.where(name='program')"],
  ])('refuses %s', (_label, query, expression) => {
    expect(refusal(() => parametersFromQuery(query, GET))).toMatchObject({ status: 400, expression });
  });
});

describe('asParameters (no declaration)', () => {
  it('refuses null and unnamed entries instead of crashing later', () => {
    expect(refusal(() => asParameters(body(null))).expression).toBe('Parameters.parameter[0]');
    expect(refusal(() => asParameters(body({ valueString: 'x' }))).expression).toBe('Parameters.parameter[0]');
  });
});
