/** Bulk Data shapes: reading an `$export` manifest, writing ours, and where an input may be. */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BulkInputError, locateInput } from '../../../src/app/bulk-screening.js';
import { inputIssue, inputsOfManifest, outputManifest, SCREENING_EXTENSION } from '../../../src/domain/bulk/manifest.js';
import { compactVerdict } from '../../../src/domain/bulk/join.js';
import { initValidation, validateResource } from '../../../src/fhir/validation.js';

beforeAll(() => {
  initValidation();
});

describe('inputsOfManifest', () => {
  it('reads the files of an $export manifest', () => {
    const read = inputsOfManifest({
      transactionTime: '2026-11-01T00:00:00Z',
      request: 'https://fhir.example/fhir/$export',
      requiresAccessToken: true,
      output: [{ type: 'Patient', url: 'https://fhir.example/files/1.ndjson', count: 3 }, { url: 'https://fhir.example/files/2.ndjson' }],
      error: [],
    });
    expect(read).toEqual({ ok: true, inputs: [{ type: 'Patient', url: 'https://fhir.example/files/1.ndjson' }, { url: 'https://fhir.example/files/2.ndjson' }] });
  });

  it.each([
    [[], 'a Bulk Data manifest is a JSON object'],
    [{ transactionTime: 'x' }, 'a Bulk Data manifest has an "output" array'],
    [{ output: [{ type: 'Patient' }] }, 'output[0] has no "url"'],
    [{ output: [{ type: 3, url: 'a' }] }, 'output[0].type must be a string'],
  ])('refuses %j', (value, reason) => {
    expect(inputsOfManifest(value)).toEqual({ ok: false, reason });
  });
});

describe('outputManifest', () => {
  it('lists the output with our URLs and counts, and the error file only when it has lines', () => {
    const options = {
      transactionTime: '2026-11-01T08:00:00.000Z',
      request: 'https://adapter.example/fhir/$screen',
      requiresAccessToken: true,
      output: [{ type: 'Parameters', file: 'Parameters.ndjson', count: 10 }],
      errors: [{ type: 'OperationOutcome', file: 'OperationOutcome.ndjson', count: 0 }],
      fileUrl: (file: string) => `https://adapter.example/fhir/_async/abc/${file}`,
      program: 'fnmf-prediabetes',
      asOf: '2026-11-01',
      counts: { eligible: 2, 'not-eligible': 7, undetermined: 1, error: 0 },
      tasksWritten: 2,
    };
    expect(outputManifest(options)).toEqual({
      transactionTime: '2026-11-01T08:00:00.000Z',
      request: 'https://adapter.example/fhir/$screen',
      requiresAccessToken: true,
      output: [{ type: 'Parameters', url: 'https://adapter.example/fhir/_async/abc/Parameters.ndjson', count: 10 }],
      error: [],
      extension: { [SCREENING_EXTENSION]: { program: 'fnmf-prediabetes', asOf: '2026-11-01', counts: options.counts, tasksWritten: 2 } },
    });
    const withErrors = outputManifest({ ...options, errors: [{ type: 'OperationOutcome', file: 'OperationOutcome.ndjson', count: 1 }] });
    expect(withErrors.error).toEqual([{ type: 'OperationOutcome', url: 'https://adapter.example/fhir/_async/abc/OperationOutcome.ndjson', count: 1 }]);
  });

  it('writes lines that validate as FHIR R4', () => {
    const verdict = compactVerdict('p1', {
      program: 'fnmf-prediabetes',
      asOf: '2026-11-01',
      outcome: 'undetermined',
      criteria: [{ code: 'age', status: 'met', reason: 'r', evidence: [] }, { code: 'bmi', status: 'unknown', reason: 'r', evidence: [] }],
    });
    expect(validateResource(verdict)).toEqual([]);
    expect(validateResource(inputIssue('structure', 'Patient.ndjson line 3: not valid JSON', 'Patient.ndjson:3'))).toEqual([]);
  });
});

describe('locateInput', () => {
  const root = path.resolve('/srv/bulk-in');
  const options = { inputDir: root, fhirBaseUrl: 'http://127.0.0.1:8081/fhir' };

  it('accepts files inside BULK_INPUT_DIR, as paths or file:// URLs', () => {
    expect(locateInput('Patient.ndjson', options)).toEqual({ kind: 'file', path: path.join(root, 'Patient.ndjson') });
    expect(locateInput('run-1/Observation.ndjson', options)).toEqual({ kind: 'file', path: path.join(root, 'run-1/Observation.ndjson') });
    expect(locateInput(`file://${root}/Patient.ndjson`, options)).toEqual({ kind: 'file', path: path.join(root, 'Patient.ndjson') });
  });

  it.each([
    ['../etc/passwd'],
    ['/etc/passwd'],
    ['file:///etc/passwd'],
    ['run-1/../../secret.ndjson'],
    [`${root}-sibling/Patient.ndjson`],
  ])('refuses a file outside BULK_INPUT_DIR: %s', (url) => {
    expect(() => locateInput(url, options)).toThrow(BulkInputError);
  });

  it('accepts URLs on the FHIR server origin only', () => {
    expect(locateInput('http://127.0.0.1:8081/files/Patient.ndjson', options)).toMatchObject({ kind: 'http' });
    for (const url of ['http://127.0.0.1:8082/fhir/x.ndjson', 'http://169.254.169.254/latest/meta-data', 'https://127.0.0.1:8081/fhir/x', 'http://user:pw@127.0.0.1:8081/fhir/x', 'ftp://127.0.0.1/x', 'gopher://x']) {
      expect(() => locateInput(url, options), url).toThrow(BulkInputError);
    }
  });

  it('refuses every file without a BULK_INPUT_DIR', () => {
    expect(() => locateInput('Patient.ndjson', { fhirBaseUrl: options.fhirBaseUrl })).toThrow(/BULK_INPUT_DIR is not configured/);
  });
});
