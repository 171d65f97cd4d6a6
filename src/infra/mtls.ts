/**
 * Mutual TLS towards the insurer gateway: the client certificate, its key and (optionally) the
 * CA that signed the gateway's certificate, read from files (never from the repository), and
 * a fetch-compatible function over node:https that presents them.
 *
 * Why node:https and not the global fetch: Node 20's fetch takes client certificates only via
 * an undici `Agent` passed as `dispatcher`, and Node does not export its bundled undici; the
 * `undici` package would be a dependency of its own whose major must match Node's internal
 * one. node:https does mutual TLS natively, with a keep-alive agent reusing TLS sessions.
 *
 * `createMtlsFetch` implements the subset of fetch the gateway adapter uses: string bodies,
 * plain-object headers, an AbortSignal covering the connection, the answer and its body, and
 * no redirects followed (like `redirect: 'manual'`). Failures reject as fetch does: a
 * `TypeError('fetch failed')` whose `cause` is the socket or TLS error (its `code`, e.g.
 * `ECONNREFUSED`, `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED`),
 * or the signal's reason (a `TimeoutError` for `AbortSignal.timeout`).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';

/** What the gateway adapter's `tls` option takes. PEM text or buffers. */
export interface MtlsMaterial {
  /** The client certificate (PEM), optionally followed by its intermediates. */
  cert: string | Buffer;
  /** The client certificate's private key (PEM). */
  key: string | Buffer;
  /** CA certificate(s) (PEM) trusted for the gateway's certificate; Node's default roots when absent. */
  ca?: string | Buffer;
  /** Passphrase of an encrypted key (from the environment, never from the repository). */
  passphrase?: string;
}

export interface MtlsFiles {
  certFile: string;
  keyFile: string;
  caFile?: string;
  passphrase?: string;
}

export interface LoadedMtlsMaterial extends MtlsMaterial {
  /** The client certificate's subject and expiry, for a start-up log line. */
  subject: string;
  validTo: Date;
}

function readPem(file: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (raw) {
    throw new Error(`mTLS ${what} ${file}: cannot read the file (${(raw as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (!text.includes('-----BEGIN')) throw new Error(`mTLS ${what} ${file}: not PEM`);
  return text;
}

/**
 * Reads the client certificate, its key and the optional CA from files, and checks that the
 * key matches the certificate and that the certificate is within its validity period now.
 * Errors name the files, never their content.
 */
export function loadMtlsMaterial(files: MtlsFiles, now: Date = new Date()): LoadedMtlsMaterial {
  const cert = readPem(files.certFile, 'certificate');
  const key = readPem(files.keyFile, 'key');
  const ca = files.caFile ? readPem(files.caFile, 'CA') : undefined;

  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (raw) {
    throw new Error(`mTLS certificate ${files.certFile}: not a certificate (${(raw as Error).message})`);
  }
  try {
    const privateKey = createPrivateKey({ key, format: 'pem', ...(files.passphrase ? { passphrase: files.passphrase } : {}) });
    if (!certificate.checkPrivateKey(privateKey)) {
      throw new Error(`the key does not match the certificate ${files.certFile}`);
    }
  } catch (raw) {
    throw new Error(`mTLS key ${files.keyFile}: ${(raw as Error).message}`);
  }
  if (ca) {
    try {
      new X509Certificate(ca);
    } catch (raw) {
      throw new Error(`mTLS CA ${files.caFile}: not a certificate (${(raw as Error).message})`);
    }
  }
  const validFrom = new Date(certificate.validFrom);
  const validTo = new Date(certificate.validTo);
  if (now < validFrom || now > validTo) {
    throw new Error(`mTLS certificate ${files.certFile}: not valid now (valid from ${validFrom.toISOString()} to ${validTo.toISOString()})`);
  }
  return {
    cert,
    key,
    ...(ca ? { ca } : {}),
    ...(files.passphrase ? { passphrase: files.passphrase } : {}),
    subject: certificate.subject.replace(/\n/g, ', '),
    validTo,
  };
}

/** A keep-alive https.Agent presenting the client certificate (TLS sessions are reused across requests). */
export function createMtlsAgent(material: MtlsMaterial): Agent {
  return new Agent({
    keepAlive: true,
    cert: material.cert,
    key: material.key,
    ...(material.ca ? { ca: material.ca } : {}),
    ...(material.passphrase ? { passphrase: material.passphrase } : {}),
    // Server certificates are always checked (against `ca`, or Node's roots).
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  });
}

/** The part of RequestInit that `createMtlsFetch` honours. */
export interface MtlsRequestInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
  /** Redirects are never followed; only `manual` (or nothing) is accepted. */
  redirect?: 'manual' | 'follow' | 'error';
}

export type MtlsFetch = (url: string, init?: MtlsRequestInit) => Promise<Response>;

/** Statuses whose Response must have a null body (the Response constructor enforces it). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/** A fetch-compatible function over node:https presenting the client certificate (see the module comment). */
export function createMtlsFetch(material: MtlsMaterial, agent: Agent = createMtlsAgent(material)): MtlsFetch {
  return (url, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(url);
      if (target.protocol !== 'https:') {
        reject(new TypeError(`mTLS fetch: ${target.protocol} is not https`));
        return;
      }
      if (init.redirect !== undefined && init.redirect !== 'manual') {
        reject(new TypeError(`mTLS fetch: redirect '${init.redirect}' is not supported (redirects are never followed)`));
        return;
      }
      const { signal } = init;
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const headers: Record<string, string> = { ...init.headers };
      if (init.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(init.body));

      let settled = false;
      const fail = (error: unknown): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        reject(error);
      };
      const onAbort = (): void => {
        fail(signal?.reason);
        req.destroy();
      };

      const req = request(target, { method: init.method ?? 'GET', headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (error) => fail(new TypeError('fetch failed', { cause: error })));
        res.on('aborted', () => fail(new TypeError('fetch failed', { cause: Object.assign(new Error('response aborted'), { code: 'ECONNRESET' }) })));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          const status = res.statusCode ?? 0;
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value === undefined) continue;
            for (const item of Array.isArray(value) ? value : [value]) responseHeaders.append(name, item);
          }
          try {
            const body = NULL_BODY_STATUSES.has(status) ? null : Buffer.concat(chunks);
            resolve(new Response(body, { status, statusText: res.statusMessage ?? '', headers: responseHeaders }));
          } catch (error) {
            reject(new TypeError('fetch failed', { cause: error }));
          }
        });
      });
      req.on('error', (error) => fail(new TypeError('fetch failed', { cause: error })));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.end(init.body);
    });
}
