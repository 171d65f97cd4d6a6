/**
 * The systems outside the adapter, for the benchmarks, in a process of their own (so their CPU
 * is not counted as the adapter's): the fast FHIR responder (bench/fhir-responder.ts) and the
 * local insurer gateway of the integration tests (test/fixtures/insurer-gateway.ts).
 *
 * Run by `startOutsideWorld()` (bench/lib/world.ts); prints one JSON line with both base URLs,
 * and exits when its stdin closes (the parent went away). Extra control endpoints on the
 * responder: `GET /_world/gateway` (what the gateway received), `POST /_world/clone` (clones an
 * enrolment template N times, see below).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InsurerGatewayFixture } from '../test/fixtures/insurer-gateway.js';
import { FhirResponder } from './fhir-responder.js';
import { cloneTemplate, type CloneRequest } from './lib/seed.js';

class World extends FhirResponder {
  constructor(private readonly gateway: InsurerGatewayFixture) {
    super();
  }

  protected override async control(path: string, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const reply = (body: unknown): void => {
      const text = JSON.stringify(body);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (path === '/_world/gateway') {
      let submissions = 0;
      let duplicates = 0;
      for (const times of this.gateway.received.values()) {
        submissions += times;
        if (times > 1) duplicates += 1;
      }
      reply({ submissions, identifiers: this.gateway.received.size, unique: this.gateway.uniqueClaims(), duplicates });
      return true;
    }
    if (path === '/_world/clone') {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const { template, count, first = 0 } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as CloneRequest;
      for (let n = first; n < first + count; n++) this.seed(cloneTemplate(template, n));
      reply({ cloned: count });
      return true;
    }
    if (path === '/_world/all') {
      const type = new URL(req.url ?? '/', 'http://x').searchParams.get('type') ?? '';
      reply(this.all(type));
      return true;
    }
    return super.control(path, req, res);
  }
}

async function main(): Promise<void> {
  const gateway = await InsurerGatewayFixture.start();
  const world = new World(gateway);
  const fhirBaseUrl = await world.start();
  // The fixture logs every request with its headers for assertions: not needed here, and it grows.
  const trim = setInterval(() => {
    gateway.requests.length = 0;
  }, 1000);
  process.stdout.write(`${JSON.stringify({ fhirBaseUrl, gatewayBaseUrl: gateway.baseUrl })}\n`);
  const stop = async (): Promise<void> => {
    clearInterval(trim);
    await Promise.allSettled([world.close(), gateway.close()]);
    process.exit(0);
  };
  process.stdin.on('end', () => void stop());
  process.stdin.on('close', () => void stop());
  process.stdin.resume();
  process.on('SIGTERM', () => void stop());
}

void main();
