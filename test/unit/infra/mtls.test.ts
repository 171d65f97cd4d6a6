/**
 * Mutual TLS to the insurer gateway: a CA, a server certificate (127.0.0.1 / localhost), a
 * client certificate, and a rogue CA with its own client certificate, all generated at test
 * time with `openssl`; a local node:https gateway that requires client certificates signed by
 * the CA. The gateway adapter with the `tls` option goes through; without it, or with the
 * rogue certificate, the handshake fails.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, get, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpInsurerGateway, submissionBundle } from '../../../src/gateway/insurer-gateway.adapter.js';
import { GatewayError } from '../../../src/gateway/insurer-gateway.port.js';
import { createMtlsFetch, loadMtlsMaterial, type LoadedMtlsMaterial } from '../../../src/infra/mtls.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const dir = mkdtempSync(join(tmpdir(), 'mtls-'));
const file = (name: string): string => join(dir, name);
const openssl = (...args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
};

/** A self-signed CA (EC P-256, valid one day). */
function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
}

/** A leaf certificate signed by `ca`, with the given extensions. */
function makeLeaf(name: string, ca: string, cn: string, extensions: string): void {
  openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  writeFileSync(file(`${name}.ext`), extensions);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', String(Date.now()), '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
}

const SYSTEM = 'urn:test:claim';
const claim: fhir4.Claim = {
  resourceType: 'Claim',
  id: 'c1',
  identifier: [{ system: SYSTEM, value: 'c1' }],
  status: 'active',
  type: { coding: [{ code: 'professional' }] },
  use: 'claim',
  patient: { reference: 'Patient/p1' },
  created: '2026-11-02',
  provider: { reference: 'Organization/o1' },
  priority: { coding: [{ code: 'normal' }] },
  insurance: [{ sequence: 1, focal: true, coverage: { reference: 'Coverage/cov1' } }],
};
const bundle = submissionBundle(claim, [{ resourceType: 'Patient', id: 'p1' }]);

describe.skipIf(!hasOpenssl())('mutual TLS to the insurer gateway', () => {
  let server: Server;
  let baseUrl: string;
  let material: LoadedMtlsMaterial;
  /** The client certificate CN of every request served, and TLS connections opened. */
  const served: { cn: string; authorization: string | undefined }[] = [];
  let connections = 0;
  let delayMs = 0;
  let redirect = false;

  beforeAll(async () => {
    makeCa('ca');
    makeCa('rogue-ca');
    makeLeaf('server', 'ca', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    makeLeaf('client', 'ca', 'forfait-fhir-client', 'extendedKeyUsage=clientAuth\n');
    makeLeaf('rogue', 'rogue-ca', 'forfait-fhir-client', 'extendedKeyUsage=clientAuth\n');

    server = createServer(
      {
        key: readFileSync(file('server.key')),
        cert: readFileSync(file('server.crt')),
        ca: readFileSync(file('ca.crt')),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.on('end', () => {
          const peer = (req.socket as TLSSocket).getPeerCertificate();
          served.push({ cn: String(peer.subject?.CN), authorization: req.headers.authorization });
          const answer = (): void => {
            if (redirect) {
              res.writeHead(302, { location: '/elsewhere' }).end();
              return;
            }
            const received = JSON.parse(Buffer.concat(chunks).toString()) as fhir4.Bundle;
            const identifier = (received.entry?.[0]?.resource as fhir4.Claim).identifier?.[0];
            res.writeHead(200, { 'content-type': 'application/fhir+json' });
            res.end(JSON.stringify({ resourceType: 'ClaimResponse', status: 'active', outcome: 'complete', request: { identifier } }));
          };
          if (delayMs) setTimeout(answer, delayMs);
          else answer();
        });
      },
    );
    server.on('secureConnection', () => connections++);
    // A refused client certificate is the server's tlsClientError: nothing to log in tests.
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
    material = loadMtlsMaterial({ certFile: file('client.crt'), keyFile: file('client.key'), caFile: file('ca.crt') });
  });

  afterAll(async () => {
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('loadMtlsMaterial reads the files, checks the key against the certificate, and reports subject and expiry', () => {
    expect(material.subject).toBe('CN=forfait-fhir-client');
    expect(material.validTo.getTime()).toBeGreaterThan(Date.now());
    expect(String(material.ca)).toContain('BEGIN CERTIFICATE');
    const attempt = (files: Parameters<typeof loadMtlsMaterial>[0], now?: Date): string => {
      try {
        loadMtlsMaterial(files, now);
        return 'loaded';
      } catch (error) {
        return (error as Error).message.replaceAll(dir, '<dir>');
      }
    };
    expect(attempt({ certFile: file('client.crt'), keyFile: file('rogue.key') })).toBe('mTLS key <dir>/rogue.key: the key does not match the certificate <dir>/client.crt');
    expect(attempt({ certFile: file('client.crt'), keyFile: file('missing.key') })).toBe('mTLS key <dir>/missing.key: cannot read the file (ENOENT)');
    expect(attempt({ certFile: file('client.ext'), keyFile: file('client.key') })).toBe('mTLS certificate <dir>/client.ext: not PEM');
    expect(attempt({ certFile: file('client.crt'), keyFile: file('client.key') }, new Date(Date.now() + 3 * 86_400_000))).toMatch(
      /^mTLS certificate <dir>\/client\.crt: not valid now \(valid from .* to .*\)$/,
    );
  });

  it('the server really requires a client certificate: trusting it is not enough', async () => {
    const error = await new Promise<Error>((resolve) => {
      const req = get(`${baseUrl}/metadata`, { ca: readFileSync(file('ca.crt')) }, (res) => {
        res.resume();
        resolve(new Error(`answered ${res.statusCode}`));
      });
      req.on('error', resolve);
    });
    expect((error as Error & { code?: string }).code).toMatch(/^(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED|ECONNRESET)$/);
  });

  it('with tls: the submission goes through, presenting the client certificate; connections are kept alive', async () => {
    const gateway = new HttpInsurerGateway({ baseUrl, timeoutMs: 5000, tls: material, tokenProvider: async () => 'tok' });
    const before = connections;
    await expect(gateway.submit(bundle)).resolves.toMatchObject({ resourceType: 'ClaimResponse', outcome: 'complete' });
    await expect(gateway.submit(bundle)).resolves.toMatchObject({ outcome: 'complete' });
    expect(served.slice(-2)).toEqual([
      { cn: 'forfait-fhir-client', authorization: 'Bearer tok' },
      { cn: 'forfait-fhir-client', authorization: 'Bearer tok' },
    ]);
    expect(connections - before).toBe(1);
  });

  it('without tls: a network error (status 0, transient), nothing served', async () => {
    const count = served.length;
    const gateway = new HttpInsurerGateway({ baseUrl, timeoutMs: 5000 });
    const error = await gateway.submit(bundle).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ status: 0, transient: true });
    // Node's default roots do not know the gateway's CA; the client certificate requirement is shown above.
    expect((error as Error).message).toMatch(/network error \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/);
    expect(served).toHaveLength(count);
  });

  it('a client certificate from another CA is refused by the server', async () => {
    const count = served.length;
    const rogue = { cert: readFileSync(file('rogue.crt')), key: readFileSync(file('rogue.key')), ca: readFileSync(file('ca.crt')) };
    const gateway = new HttpInsurerGateway({ baseUrl, timeoutMs: 5000, tls: rogue });
    const error = await gateway.submit(bundle).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ status: 0, transient: true });
    expect((error as Error).message).toMatch(/^gateway submit urn:test:claim\|c1: network error \((ECONNRESET|EPROTO|ERR_SSL_\w+)\)$/);
    expect(served).toHaveLength(count);
  });

  it('a server certificate the CA did not sign is refused by the client', async () => {
    const gateway = new HttpInsurerGateway({ baseUrl, timeoutMs: 5000, tls: { ...material, ca: readFileSync(file('rogue-ca.crt')) } });
    const error = await gateway.submit(bundle).catch((caught: unknown) => caught);
    expect((error as Error).message).toMatch(/network error \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/);
  });

  it('timeouts and redirects behave as with fetch', async () => {
    const gateway = new HttpInsurerGateway({ baseUrl, timeoutMs: 100, tls: material });
    delayMs = 500;
    try {
      await expect(gateway.submit(bundle)).rejects.toThrow(/timed out after 100 ms/);
    } finally {
      delayMs = 0;
    }
    redirect = true;
    try {
      await expect(gateway.submit(bundle)).rejects.toMatchObject({ status: 302, message: expect.stringContaining('redirect not followed') });
    } finally {
      redirect = false;
    }
    expect(() => new HttpInsurerGateway({ baseUrl: 'http://127.0.0.1:1', timeoutMs: 100, tls: material })).toThrow(/https/);
    await expect(createMtlsFetch(material)(baseUrl, { redirect: 'follow' })).rejects.toThrow(/never followed/);
  });
});
