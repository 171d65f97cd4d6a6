/**
 * The embedded FHIR server in a process of its own, for bench/bulk-screening.ts: the Tasks it
 * stores must not count in the resident memory of the screening being measured. Prints its
 * base URL as one JSON line on stdout and runs until stdin closes.
 */
import { startEmbeddedFhirServer } from '../src/fhir-server/embedded-server.js';

const server = await startEmbeddedFhirServer({ port: 0 });
process.stdout.write(`${JSON.stringify({ baseUrl: server.baseUrl })}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  void server.close().then(() => process.exit(0));
});
