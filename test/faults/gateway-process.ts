/**
 * The insurer gateway fixture (test/fixtures/insurer-gateway.ts) as a process of its own, on a
 * fixed port so that it can be stopped and started again where the service expects it:
 *
 *   GATEWAY_PORT=<port> GATEWAY_JOURNAL=<file> node --import tsx test/faults/gateway-process.ts
 *
 * The fixture listens on a free port; a small pass-through server on GATEWAY_PORT forwards every
 * request to it and appends one JSON line per answered request to GATEWAY_JOURNAL before
 * answering (`{ at, route, key, status }`), so what the gateway received survives its restarts.
 * GATEWAY_REJECT (a regular expression on the claim key `system|value` or the Claim's JSON)
 * makes matching claims refused with a 422 OperationOutcome (a claim that can never be processed).
 * Prints `gateway listening on <base url>` when ready; exits on SIGTERM.
 */
import { appendFileSync } from 'node:fs';
import http from 'node:http';
import { parseTokenParameter, InsurerGatewayFixture } from '../fixtures/insurer-gateway.js';

const port = Number(process.env.GATEWAY_PORT);
const journal = process.env.GATEWAY_JOURNAL;
if (!port || !journal) throw new Error('GATEWAY_PORT and GATEWAY_JOURNAL are required');

const fixture = await InsurerGatewayFixture.start();
const reject = process.env.GATEWAY_REJECT ? new RegExp(process.env.GATEWAY_REJECT) : undefined;
if (reject) {
  fixture.reject(
    (key, claim) => reject.test(key) || reject.test(JSON.stringify(claim)),
    { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'business-rule', diagnostics: 'Claim refused by the insurer: beneficiary unknown to this scheme' }] },
    422,
  );
}
const upstream = new URL(fixture.baseUrl);

function claimKey(path: string, search: URLSearchParams, body: string): string | undefined {
  if (path.endsWith('/ClaimResponse')) {
    const parsed = parseTokenParameter(search.get('request.identifier') ?? '');
    return parsed ? `${parsed.system}|${parsed.value}` : undefined;
  }
  try {
    const claim = (JSON.parse(body) as fhir4.Bundle).entry?.[0]?.resource as fhir4.Claim | undefined;
    const identifier = claim?.identifier?.[0];
    return identifier ? `${identifier.system ?? ''}|${identifier.value ?? ''}` : undefined;
  } catch {
    return undefined;
  }
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://gateway.local');
    const route = req.method === 'POST' && url.pathname.endsWith('/Claim/$submit') ? 'submit' : req.method === 'GET' && url.pathname.endsWith('/ClaimResponse') ? 'status' : 'other';
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
      (answer) => {
        const parts: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => parts.push(chunk));
        answer.on('end', () => {
          appendFileSync(journal, `${JSON.stringify({ at: Date.now(), route, key: claimKey(url.pathname, url.searchParams, body.toString('utf8')), status: answer.statusCode })}\n`);
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(Buffer.concat(parts));
        });
      },
    );
    forward.on('error', () => {
      res.writeHead(502).end();
    });
    forward.end(body);
  });
});
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', () => resolve());
});
process.stdout.write(`gateway listening on http://127.0.0.1:${port}/fhir\n`);

process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void fixture.close().then(() => process.exit(0));
});
