/**
 * A fault-injecting HTTP proxy in front of a FHIR server: a seeded PRNG picks, for `rate` of
 * the requests, one fault among 500, 503 + Retry-After, 429 + Retry-After, or a timeout (the
 * request is forwarded and processed, but its answer is held back longer than the client
 * waits). Everything else is forwarded untouched.
 *
 * Retry-After is checked: the proxy remembers, per request (method, URL and body), the time
 * before which the client was asked not to send it again; a repeat that comes sooner is
 * counted in `retryAfterViolations` (one proxy per client process, so that two processes
 * reading the same thing are not taken for a retry).
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { seededRandom } from '../fixtures/seeded-random.js';


export type FaultKind = '500' | '503' | '429' | 'timeout';

export interface FaultProxyOptions {
  target: string;
  seed: number;
  /** Share of requests answered with a fault (0..1). */
  rate: number;
  /** Retry-After given with 503 and 429, seconds. */
  retryAfterSeconds: number;
  /** How long a "timeout" answer is held back, ms (longer than the client's timeout). */
  holdMs: number;
}

export interface FaultProxy {
  url: string;
  counts: { requests: number; forwarded: number; faults: Record<FaultKind, number>; retryAfterGiven: number; retryAfterRepeats: number; retryAfterViolations: number };
  /** What came back too early, for the failure message. */
  violations: string[];
  /** Faults off (everything forwarded) or back on. */
  enable(on: boolean): void;
  close(): Promise<void>;
}

/** Repeats closer than this to the fault they follow are concurrent twins, not retries. */
const TWIN_WINDOW_MS = 80;

const outcome = (code: string, text: string): string => JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: text }] });

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  const random = seededRandom(options.seed);
  const kinds: FaultKind[] = ['500', '503', '429', 'timeout'];
  const notBefore = new Map<string, { at: number; until: number }>();
  const violations: string[] = [];
  const counts: FaultProxy['counts'] = { requests: 0, forwarded: 0, faults: { '500': 0, '503': 0, '429': 0, timeout: 0 }, retryAfterGiven: 0, retryAfterRepeats: 0, retryAfterViolations: 0 };
  let enabled = true;
  const timers = new Set<NodeJS.Timeout>();

  const forward = (req: http.IncomingMessage, body: Buffer, answer: (status: number, headers: http.IncomingHttpHeaders, payload: Buffer) => void, onError: () => void): void => {
    const path = target.pathname.replace(/\/$/, '') + (req.url ?? '/').replace(/^\/fhir/, '');
    const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path, headers: { ...req.headers, host: target.host } }, (response) => {
      const parts: Buffer[] = [];
      response.on('data', (chunk: Buffer) => parts.push(chunk));
      response.on('end', () => answer(response.statusCode ?? 502, response.headers, Buffer.concat(parts)));
      response.on('error', onError);
    });
    upstream.on('error', onError);
    upstream.end(body);
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      counts.requests += 1;
      const key = `${req.method} ${req.url} ${createHash('sha256').update(body).digest('hex')}`;
      const asked = notBefore.get(key);
      const now = Date.now();
      // A twin sent before the answer came back (two jobs of one process reading the same thing)
      // arrives within a few ms; a retry comes after a backoff of at least 100 ms (the FHIR
      // adapter's first one, 200 ms x 0.5..1) even if it ignored Retry-After.
      if (asked !== undefined && now - asked.at >= TWIN_WINDOW_MS) {
        notBefore.delete(key);
        counts.retryAfterRepeats += 1;
        // 50 ms of slack for clocks and scheduling.
        if (now < asked.until - 50) {
          counts.retryAfterViolations += 1;
          violations.push(`${req.method} ${req.url} repeated ${asked.until - now} ms early`);
        }
      }
      const fault = enabled && random() < options.rate ? kinds[Math.floor(random() * kinds.length)] : undefined;
      if (fault === '500') {
        counts.faults['500'] += 1;
        res.writeHead(500, { 'content-type': 'application/fhir+json' }).end(outcome('exception', 'injected failure'));
        return;
      }
      if (fault === '503' || fault === '429') {
        counts.faults[fault] += 1;
        counts.retryAfterGiven += 1;
        notBefore.set(key, { at: Date.now(), until: Date.now() + options.retryAfterSeconds * 1000 });
        res
          .writeHead(Number(fault), { 'content-type': 'application/fhir+json', 'retry-after': String(options.retryAfterSeconds) })
          .end(outcome(fault === '429' ? 'throttled' : 'transient', `injected ${fault}`));
        return;
      }
      const onError = (): void => {
        if (!res.headersSent) res.writeHead(502).end();
      };
      forward(
        req,
        body,
        (status, headers, payload) => {
          const send = (): void => {
            if (res.destroyed) return;
            const { 'transfer-encoding': _te, connection: _c, ...rest } = headers;
            res.writeHead(status, { ...rest, 'content-length': String(payload.length) }).end(payload);
          };
          if (fault === 'timeout') {
            counts.faults.timeout += 1;
            const timer = setTimeout(() => {
              timers.delete(timer);
              send();
            }, options.holdMs);
            timers.add(timer);
            return;
          }
          counts.forwarded += 1;
          send();
        },
        onError,
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/fhir`,
    counts,
    violations,
    enable(on) {
      enabled = on;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
