/**
 * Hostile-input guards (issue #6, point 5), table by table. The middlewares run in a small
 * Express app on a random loopback port, with an error handler like the adapter's (an
 * OperationOutcomeError leaves as its outcome), so what body-parser does to their errors is
 * part of what is tested.
 */
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JSON_TOO_DEEP,
  JSON_TOO_WIDE,
  JsonShapeError,
  assertFhirId,
  contentTypeProblem,
  findControlCharacters,
  findForbiddenKeys,
  isFhirId,
  jsonDepthLimit,
  localReference,
  parseMediaType,
  rateLimitPerClient,
  refuseHostileJson,
  safeSearchValue,
  scanJsonShape,
  searchParams,
  searchUrl,
  strictFhirContentType,
  tokenSearchValue,
  verifyJsonShape,
  type JsonShapeLimits,
} from '../../../src/http/input-guards.js';
import { referenceIssues } from '../../../src/app/ingestion.service.js';
import { OperationOutcomeError } from '../../../src/http/outcomes.js';

const deepArrays = (n: number): string => '['.repeat(n) + ']'.repeat(n);

describe('scanJsonShape', () => {
  const cases: [string, string, JsonShapeLimits, 'depth' | 'array-items' | 'keys' | undefined][] = [
    ['an empty object at depth 1', '{}', { maxDepth: 1 }, undefined],
    ['an object in an object, max 1', '{"a":{}}', { maxDepth: 1 }, 'depth'],
    ['three arrays, max 3', '[[[]]]', { maxDepth: 3 }, undefined],
    ['three arrays, max 2', '[[[]]]', { maxDepth: 2 }, 'depth'],
    ['depth counts open containers, not siblings', '[[],[],[],[]]', { maxDepth: 2 }, undefined],
    ['brackets inside a string', '{"a":"[[[[{{{{"}', { maxDepth: 1 }, undefined],
    ['an escaped quote keeps the string open', '{"a":"\\"[[[["}', { maxDepth: 1 }, undefined],
    ['an escaped backslash closes the string', '{"a":"\\\\","b":[[1]]}', { maxDepth: 2 }, 'depth'],
    ['a \\u escape is not structural', '{"a":"\\u005b\\u007b"}', { maxDepth: 1 }, undefined],
    ['3 items, max 3', '[1,2,3]', { maxDepth: 5, maxArrayItems: 3 }, undefined],
    ['3 items, max 2', '[1,2,3]', { maxDepth: 5, maxArrayItems: 2 }, 'array-items'],
    ['1 item, max 0', '[1]', { maxDepth: 5, maxArrayItems: 0 }, 'array-items'],
    ['no item, max 0', '[ ]', { maxDepth: 5, maxArrayItems: 0 }, undefined],
    ['commas inside strings do not count', '["a,b,c,d"]', { maxDepth: 5, maxArrayItems: 1 }, undefined],
    ['each array counts its own items', '[[1,2],[3,4]]', { maxDepth: 5, maxArrayItems: 2 }, undefined],
    ['items of a nested array do not count for the outer one', '[[1,2,3]]', { maxDepth: 5, maxArrayItems: 1 }, 'array-items'],
    ['2 members, max 1', '{"a":1,"b":2}', { maxDepth: 5, maxKeys: 1 }, 'keys'],
    ['array items are not members', '{"a":[1,2,3]}', { maxDepth: 5, maxKeys: 1 }, undefined],
    ['members of a nested object count for it', '{"a":{"b":1,"c":2}}', { maxDepth: 5, maxKeys: 1 }, 'keys'],
    ['very deep nesting', deepArrays(100_000), { maxDepth: 64 }, 'depth'],
    ['invalid JSON is left to the parser', '{"a":', { maxDepth: 5 }, undefined],
    ['unbalanced closers do not underflow', ']]]}}}[[', { maxDepth: 2 }, undefined],
  ];

  it.each(cases)('%s', (_label, text, limits, expected) => {
    expect(scanJsonShape(text, limits)?.limit).toBe(expected);
    // The same answer on the UTF-8 bytes (what body-parser's verify receives).
    expect(scanJsonShape(Buffer.from(text, 'utf8'), limits)?.limit).toBe(expected);
  });

  it('multi-byte UTF-8 never looks structural', () => {
    const text = JSON.stringify({ 'é€😀': ['ü', '[', '{', '\u0000', '\ud800'] });
    expect(scanJsonShape(Buffer.from(text, 'utf8'), { maxDepth: 2, maxArrayItems: 5, maxKeys: 1 })).toBeUndefined();
  });

  it('tells where the limit was crossed', () => {
    expect(scanJsonShape('[[[[', { maxDepth: 2 })).toEqual({ limit: 'depth', max: 2, offset: 2 });
    expect(scanJsonShape('[1,2,3]', { maxDepth: 2, maxArrayItems: 2 })).toEqual({ limit: 'array-items', max: 2, offset: 4 });
  });

  it('jsonDepthLimit(maxDepth, maxKeys) checks depth and members', () => {
    const check = jsonDepthLimit(2, 2);
    expect(check('{"a":{"b":1}}')).toBeUndefined();
    expect(check('{"a":{"b":{}}}')?.limit).toBe('depth');
    expect(check('{"a":1,"b":2,"c":3}')?.limit).toBe('keys');
    expect(check(`[${'1,'.repeat(10_000)}1]`)).toBeUndefined();
  });
});

describe('verifyJsonShape', () => {
  const verify = verifyJsonShape({ maxDepth: 3, maxArrayItems: 2 });

  it.each([
    ['within limits', '{"a":[[1,2]]}', 'utf-8', undefined],
    ['too deep', '{"a":[[[1]]]}', 'utf-8', JSON_TOO_DEEP],
    ['too many items', '{"a":[1,2,3]}', 'utf-8', JSON_TOO_WIDE],
    ['too deep in UTF-16', '{"a":[[[1]]]}', 'utf-16le', JSON_TOO_DEEP],
  ] as const)('%s', (_label, text, charset, type) => {
    const buffer = Buffer.from(text, charset === 'utf-16le' ? 'utf16le' : 'utf8');
    let thrown: unknown;
    try {
      verify({}, {}, buffer, charset);
    } catch (error) {
      thrown = error;
    }
    if (!type) {
      expect(thrown).toBeUndefined();
      return;
    }
    expect(thrown).toBeInstanceOf(JsonShapeError);
    const error = thrown as JsonShapeError;
    expect(error.status).toBe(400);
    expect(error.type).toBe(type);
    expect(error.message).toMatch(type === JSON_TOO_DEEP ? /maxDepth 3/ : /maxArrayItems 2/);
    expect(error.outcome.issue[0]?.code).toBe('too-costly');
  });
});

describe('parseMediaType / contentTypeProblem', () => {
  it.each([
    ['application/fhir+json', undefined],
    ['application/json', undefined],
    ['application/fhir+json; charset=utf-8', undefined],
    ['application/fhir+json;charset=UTF-8', undefined],
    ['Application/FHIR+JSON; Charset="utf-8"', undefined],
    ['application/fhir+json; fhirVersion=4.0', undefined],
    ['application/fhir+json; charset=utf-8; fhirVersion=4.0', undefined],
    ['application/json ; charset=utf-8', undefined],
  ])('accepts %j', (header, expected) => {
    expect(contentTypeProblem(header)).toBe(expected);
  });

  it.each([
    [undefined, /needs a Content-Type/],
    ['', /needs a Content-Type/],
    ['application/fhir+json; charset=latin1', /charset=utf-8/],
    ['application/fhir+json; charset=utf-16', /charset=utf-8/],
    ['application/fhir+json; charset=utf8', /charset=utf-8/],
    ['application/fhir+json; charset=utf-8; charset=latin1', /Malformed/],
    ['application/fhir+json; fhirVersion=5.0', /R4/],
    ['application/fhir+json; boundary=x', /parameter "boundary"/],
    ['application/fhir+xml', /got "application\/fhir\+xml"/],
    ['application/xml', /got "application\/xml"/],
    ['text/plain', /got "text\/plain"/],
    ['text/json', /got "text\/json"/],
    ['multipart/form-data; boundary=----x', /multipart/],
    ['application/x-www-form-urlencoded', /urlencoded/],
    ['application/json-patch+json', /json-patch/],
    ['application/*', /Malformed|got/],
    ['*/*', /got "\*\/\*"/],
    ['application/fhir+json charset=utf-8', /Malformed/],
    ['application/fhir+json;', /Malformed/],
    ['application/fhir+json; charset="utf-8', /Malformed/],
    ['application', /Malformed/],
    ['application/fhir+json\u0000', /Malformed/],
  ])('refuses %j', (header, pattern) => {
    expect(contentTypeProblem(header)).toMatch(pattern);
  });

  it('parses parameters, unquoting and lower-casing names', () => {
    const media = parseMediaType('Application/FHIR+json; Charset="utf\\-8"; fhirVersion=4.0');
    expect(media?.type).toBe('application/fhir+json');
    expect([...(media?.parameters ?? [])]).toEqual([
      ['charset', 'utf-8'],
      ['fhirversion', '4.0'],
    ]);
  });
});

describe('isFhirId / assertFhirId / localReference', () => {
  it.each([
    ['a', true],
    ['Patient-1.2', true],
    ['A'.repeat(64), true],
    ['9a0c1f00-0000-4000-8000-000000000001', true],
    ['...', true],
    ['', false],
    ['A'.repeat(65), false],
    ['.', false],
    ['..', false],
    ['../x', false],
    ['a/b', false],
    ['%2F', false],
    ['a b', false],
    ['a_b', false],
    ['a?b=1', false],
    ['a#b', false],
    ['é', false],
    ['a\u0000', false],
    ['a\n', false],
    [42, false],
    [undefined, false],
    [null, false],
    [['a'], false],
  ])('%j → %s', (value, expected) => {
    expect(isFhirId(value)).toBe(expected);
  });

  it('assertFhirId returns the id or throws a 400 OperationOutcome naming what', () => {
    expect(assertFhirId('abc', 'Patient')).toBe('abc');
    try {
      assertFhirId('../etc', 'Patient');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(OperationOutcomeError);
      const outcome = (error as OperationOutcomeError).outcome;
      expect((error as OperationOutcomeError).status).toBe(400);
      expect(outcome.issue[0]).toMatchObject({ code: 'invalid', diagnostics: 'Invalid Patient id', expression: ['Patient'] });
    }
  });

  it.each([
    ['Patient', 'x1', 'Patient/x1'],
    ['Patient', '..', undefined],
    ['patient', 'x1', undefined],
    ['Patient/x', 'x1', undefined],
    ['Patient', 'x/_history/1', undefined],
  ])('localReference(%j, %j) → %j', (type, id, expected) => {
    if (expected) expect(localReference(type, id)).toBe(expected);
    else expect(() => localReference(type, id)).toThrow(OperationOutcomeError);
  });
});

describe('search escaping and query strings', () => {
  it.each([
    ['plain', 'plain'],
    ['a,b', 'a\\,b'],
    ['a|b', 'a\\|b'],
    ['a$b', 'a\\$b'],
    ['a\\b', 'a\\\\b'],
    ['\\,', '\\\\\\,'],
    ['x,y|z$w\\', 'x\\,y\\|z\\$w\\\\'],
    ['', ''],
    ['é&=?#+%', 'é&=?#+%'],
  ])('safeSearchValue(%j) → %j', (value, expected) => {
    expect(safeSearchValue(value)).toBe(expected);
  });

  it('tokenSearchValue escapes each part, keeping the one separator', () => {
    expect(tokenSearchValue('urn:sys|x', 'a,b')).toBe('urn:sys\\|x|a\\,b');
  });

  it.each([
    ['one value', { subject: 'Patient/1' }, 'subject=Patient%2F1'],
    ['undefined left out', { subject: 'Patient/1', code: undefined }, 'subject=Patient%2F1'],
    ['an array repeats the parameter', { date: ['ge2020-01-01', 'le2021-01-01'] }, 'date=ge2020-01-01&date=le2021-01-01'],
    ['numbers and booleans', { _count: 10, active: true }, '_count=10&active=true'],
    ['URL syntax is encoded, not interpreted', { identifier: 'a&_count=1000#x' }, 'identifier=a%26_count%3D1000%23x'],
    ['an escaped search value survives', { identifier: tokenSearchValue('urn:s', 'v,1') }, 'identifier=urn%3As%7Cv%5C%2C1'],
    ['nothing', {}, ''],
  ])('searchParams: %s', (_label, record, expected) => {
    const query = searchParams(record);
    expect(query).toBe(expected);
    // Round trip: what the server decodes is exactly what was given.
    const decoded = new URLSearchParams(query);
    for (const [name, value] of Object.entries(record)) {
      if (value === undefined) expect(decoded.has(name)).toBe(false);
      else expect(decoded.getAll(name)).toEqual((Array.isArray(value) ? value : [value]).map(String));
    }
  });

  it('searchUrl checks the type', () => {
    expect(searchUrl('Observation', { subject: 'Patient/1' })).toBe('Observation?subject=Patient%2F1');
    expect(searchUrl('Observation', {})).toBe('Observation');
    expect(() => searchUrl('../Observation', {})).toThrow(OperationOutcomeError);
    expect(() => searchUrl('Observation?x=1', {})).toThrow(OperationOutcomeError);
  });
});

describe('references to other servers (referenceIssues of the ingestion service)', () => {
  const observation = (reference: unknown, extra: Record<string, unknown> = {}) => ({
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'x' },
    subject: { reference },
    ...extra,
  });
  const URN = 'urn:uuid:9a0c1f00-0000-4000-8000-000000000001';
  const inTransaction = { bundleType: 'transaction' as const, fullUrls: new Set([URN]) };

  it.each([
    ['relative', observation('Patient/1'), []],
    ['relative, versioned', observation('Patient/1/_history/2'), []],
    ['contained', observation('#p1'), []],
    ['no reference element (display only)', { resourceType: 'Observation', subject: { display: 'x' } }, []],
    ['https to another server', observation('https://other.example/fhir/Patient/1'), ['Observation.subject.reference']],
    ['http to loopback', observation('http://127.0.0.1:8081/fhir/Patient/1'), ['Observation.subject.reference']],
    ['protocol-relative', observation('//other.example/fhir/Patient/1'), ['Observation.subject.reference']],
    ['file:', observation('file:///etc/passwd'), ['Observation.subject.reference']],
    ['a dot-segment id', observation('Patient/..'), ['Observation.subject.reference']],
    ['a dot-segment version', observation('Patient/1/_history/..'), ['Observation.subject.reference']],
    ['path traversal', observation('Patient/1/../../Consent/2'), ['Observation.subject.reference']],
    ['a urn:uuid outside a transaction', observation(URN), ['Observation.subject.reference']],
    ['a malformed urn:uuid', observation('urn:uuid:not-a-uuid'), ['Observation.subject.reference']],
    [
      'deep: arrays, extensions and contained resources',
      observation('Patient/1', {
        performer: [{ reference: 'Practitioner/1' }, { reference: 'https://x.example/Practitioner/2' }],
        extension: [{ url: 'http://e.example/ext', valueReference: { reference: 'https://x.example/Organization/3' } }],
        contained: [{ resourceType: 'Specimen', id: 's1', subject: { reference: 'http://x.example/Patient/4' } }],
      }),
      ['Observation.performer[1].reference', 'Observation.extension[0].valueReference.reference', 'Observation.contained[0].subject.reference'],
    ],
  ])('%s', (_label, resource, expressions) => {
    const issues = referenceIssues(resource, 'Observation');
    expect(issues.map((issue) => issue.expression?.[0])).toEqual(expressions);
    for (const issue of issues) expect(issue.code).toBe('invalid');
  });

  it('a transaction accepts its own urn:uuid fullUrls, and only those', () => {
    expect(referenceIssues(observation(URN), 'Observation', inTransaction)).toEqual([]);
    expect(referenceIssues(observation('urn:uuid:9a0c1f00-0000-4000-8000-000000000002'), 'Observation', inTransaction)).toHaveLength(1);
  });

  it('a search is a reference only to the directory, only in a transaction', () => {
    expect(referenceIssues(observation('Patient?identifier=x'), 'Observation', inTransaction)).toHaveLength(1);
    expect(referenceIssues(observation('Patient?identifier=x'), 'Observation')).toHaveLength(1);
  });

  it('takes a path prefix', () => {
    const [issue] = referenceIssues(observation('https://other.example/fhir/Patient/1'), 'Bundle.entry[2].resource');
    expect(issue?.expression).toEqual(['Bundle.entry[2].resource.subject.reference']);
  });
});

describe('findForbiddenKeys', () => {
  it.each([
    ['clean', '{"resourceType":"Patient","name":[{"family":"x"}]}', []],
    ['__proto__ at the root', '{"resourceType":"Patient","__proto__":{"polluted":true}}', ['Patient.__proto__']],
    ['constructor deep in an array', '{"resourceType":"Patient","name":[{"family":"x"},{"constructor":{"prototype":{}}}]}', ['Patient.name[1].constructor', 'Patient.name[1].constructor.prototype']],
    ['a weird key is quoted in the path', '{"resourceType":"Patient","a b":{"__proto__":1}}', ['Patient.`a b`.__proto__']],
    ['no resourceType', '[{"__proto__":1}]', ['Resource[0].__proto__']],
  ])('%s', (_label, text, expressions) => {
    expect(findForbiddenKeys(JSON.parse(text)).map((issue) => issue.expression?.[0])).toEqual(expressions);
  });

  it('walks hostile nesting without recursion', () => {
    const deep = JSON.parse(`{"resourceType":"Patient","x":${'['.repeat(50_000)}{"__proto__":1}${']'.repeat(50_000)}}`);
    expect(findForbiddenKeys(deep)).toHaveLength(1);
  });
});

describe('findControlCharacters', () => {
  it.each([
    ['clean, with tab, LF, CR and non-ASCII', { resourceType: 'Patient', name: [{ text: 'a\tb\nc\rd é 😀 \u007f \u0085' }] }, []],
    ['NUL in a value', { resourceType: 'Patient', name: [{ family: 'a\u0000b' }] }, ['Patient.name[0].family']],
    ['ESC in a uri', { resourceType: 'Observation', valueQuantity: { system: 'http://x\u001b' } }, ['Observation.valueQuantity.system']],
    ['in an array of strings', { resourceType: 'Patient', name: [{ given: ['ok', '\u0001'] }] }, ['Patient.name[0].given[1]']],
    ['in a member name', { resourceType: 'Patient', ['a\u0000']: 1 }, ['Patient.`a\u0000`']],
    ['vertical tab and form feed', { resourceType: 'Patient', id: '\u000b', language: '\u000c' }, ['Patient.id', 'Patient.language']],
    ['in nested arrays', { resourceType: 'Patient', x: [['ok', ['\u001f']]] }, ['Patient.x[0][1][0]']],
    ['both the member name and its value', { resourceType: 'Patient', ['\u0002']: '\u0003' }, ['Patient.`\u0002`']],
  ])('%s', (_label, body, expressions) => {
    expect(findControlCharacters(body).map((issue) => issue.expression?.[0])).toEqual(expressions);
  });
});

// ---------------------------------------------------------------------------------------------
// The middlewares in an Express app

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

let server: http.Server;
let port: number;

function send(method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          // keep the text
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

beforeAll(async () => {
  const app = express();
  app.use(['/fhir', '/hooks'], strictFhirContentType());
  app.use(express.json({ type: ['application/fhir+json', 'application/json'], limit: 100_000, verify: verifyJsonShape({ maxDepth: 8, maxArrayItems: 50 }) }));
  app.use(refuseHostileJson());
  app.use('/limited', rateLimitPerClient({ windowMs: 60_000, limit: 2, keyOf: (req) => String(req.headers['x-client'] ?? 'anonymous') }));
  app.all('/{*path}', (req, res) => {
    res.json({ ok: true, body: req.body as unknown });
  });
  // As the adapter's handler: an OperationOutcomeError leaves as its outcome; other client errors as 400.
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (error instanceof OperationOutcomeError) {
      res.status(error.status).type('application/fhir+json').send(JSON.stringify(error.outcome));
      return;
    }
    const status = (error as { status?: number }).status ?? 500;
    res.status(status).json({ fallback: true, type: (error as { type?: string }).type });
  });
  server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const outcomeOf = (answer: Answer): fhir4.OperationOutcome => {
  expect(answer.headers['content-type']).toMatch(/application\/fhir\+json/);
  const body = answer.body as fhir4.OperationOutcome;
  expect(body.resourceType).toBe('OperationOutcome');
  return body;
};

describe('strictFhirContentType in an app', () => {
  const json = '{"resourceType":"Patient"}';

  it.each([
    ['POST', '/fhir/Patient', 'application/fhir+json', json, 200],
    ['POST', '/fhir/Patient', 'application/json; charset=utf-8', json, 200],
    ['PUT', '/fhir/Patient/1', 'application/fhir+json; charset=UTF-8', json, 200],
    ['POST', '/fhir/Patient', 'application/fhir+json; charset=latin1', json, 415],
    ['POST', '/fhir/Patient', 'application/fhir+json; charset=utf-16', json, 415],
    ['POST', '/fhir/Patient', 'application/fhir+xml', '<Patient xmlns="http://hl7.org/fhir"/>', 415],
    ['POST', '/fhir/Patient', 'multipart/form-data; boundary=x', '--x\r\n\r\n--x--', 415],
    ['POST', '/fhir/Patient', 'text/plain', json, 415],
    ['POST', '/hooks/subscription', 'application/x-www-form-urlencoded', 'a=1', 415],
    ['PATCH', '/fhir/Patient/1', 'application/json-patch+json', '[]', 415],
    ['POST', '/other', 'text/plain', 'not guarded here', 200],
  ])('%s %s with %j → %i', async (method, path, contentType, body, status) => {
    const answer = await send(method, path, { 'content-type': contentType }, body);
    expect(answer.status).toBe(status);
    if (status === 415) expect(outcomeOf(answer).issue[0]?.code).toBe('not-supported');
  });

  it('a body without Content-Type → 415', async () => {
    const answer = await send('POST', '/fhir/Patient', { 'content-length': String(json.length) }, json);
    expect(answer.status).toBe(415);
    expect(outcomeOf(answer).issue[0]?.diagnostics).toMatch(/needs a Content-Type/);
  });

  it('a chunked body is checked too', async () => {
    const answer = await send('POST', '/fhir/Patient', { 'content-type': 'text/xml', 'transfer-encoding': 'chunked' }, '<x/>');
    expect(answer.status).toBe(415);
  });

  it('no body (an operation without input, a GET) passes whatever the Content-Type', async () => {
    expect((await send('POST', '/fhir/$advance', { 'content-type': 'text/plain', 'content-length': '0' })).status).toBe(200);
    expect((await send('GET', '/fhir/Patient/1', { 'content-type': 'text/plain' })).status).toBe(200);
  });
});

describe('verifyJsonShape and refuseHostileJson in an app', () => {
  const post = (body: string) => send('POST', '/fhir/Patient', { 'content-type': 'application/fhir+json' }, body);

  it('a body within the limits is parsed', async () => {
    const answer = await post('{"resourceType":"Patient","name":[{"given":["a","b"]}]}');
    expect(answer.status).toBe(200);
    expect((answer.body as { body: unknown }).body).toEqual({ resourceType: 'Patient', name: [{ given: ['a', 'b'] }] });
  });

  it.each([
    ['too deep', `{"resourceType":"Patient","x":${deepArrays(20)}}`, /maxDepth 8/],
    ['much too deep (within the size limit)', `{"a":${deepArrays(40_000)}}`, /maxDepth 8/],
    ['too many items', `{"resourceType":"Patient","x":[${'1,'.repeat(60)}1]}`, /maxArrayItems 50/],
  ])('%s → 400 too-costly OperationOutcome (the error survives body-parser)', async (_label, body, pattern) => {
    const answer = await post(body);
    expect(answer.status).toBe(400);
    const outcome = outcomeOf(answer);
    expect(outcome.issue[0]?.code).toBe('too-costly');
    expect(outcome.issue[0]?.diagnostics).toMatch(pattern);
  });

  it.each([
    ['__proto__', '{"resourceType":"Patient","__proto__":{"polluted":1}}', 'Patient.__proto__'],
    ['constructor', '{"resourceType":"Patient","name":[{"constructor":{"prototype":{"polluted":1}}}]}', 'Patient.name[0].constructor'],
  ])('a %s key → 400 with its FHIRPath, and nothing is polluted', async (_label, body, expression) => {
    const answer = await post(body);
    expect(answer.status).toBe(400);
    expect(outcomeOf(answer).issue[0]?.expression).toEqual([expression]);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('a control character → 400 with its FHIRPath', async () => {
    const answer = await post(JSON.stringify({ resourceType: 'Patient', identifier: [{ system: 'urn:x', value: 'a\u0000' }] }));
    expect(answer.status).toBe(400);
    expect(outcomeOf(answer).issue[0]?.expression).toEqual(['Patient.identifier[0].value']);
  });

  it('at most 20 issues for a body full of them', async () => {
    const answer = await post(JSON.stringify({ resourceType: 'Patient', x: Array.from({ length: 40 }, () => '\u0000') }));
    expect(answer.status).toBe(400);
    expect(outcomeOf(answer).issue).toHaveLength(20);
  });
});

describe('rateLimitPerClient in an app', () => {
  it('counts per client; past the limit a 429 OperationOutcome with Retry-After and draft-7 headers', async () => {
    const a1 = await send('GET', '/limited/x', { 'x-client': 'a' });
    const a2 = await send('GET', '/limited/x', { 'x-client': 'a' });
    const a3 = await send('GET', '/limited/x', { 'x-client': 'a' });
    const b1 = await send('GET', '/limited/x', { 'x-client': 'b' });
    expect([a1.status, a2.status, a3.status, b1.status]).toEqual([200, 200, 429, 200]);
    expect(a1.headers['ratelimit-policy']).toMatch(/^2;w=60/);
    expect(a1.headers['ratelimit']).toMatch(/limit=2, remaining=1/);
    const outcome = outcomeOf(a3);
    expect(outcome.issue[0]).toMatchObject({ severity: 'error', code: 'throttled' });
    expect(outcome.issue[0]?.diagnostics).toMatch(/at most 2 per 60 s/);
    expect(Number(a3.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(a3.headers['retry-after'])).toBeLessThanOrEqual(60);
  });

  it('leaves other routes alone', async () => {
    for (let i = 0; i < 4; i++) expect((await send('GET', '/free', { 'x-client': 'a' })).status).toBe(200);
  });
});
