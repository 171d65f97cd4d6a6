/**
 * JSON logs (pino). Patient data never enters a log line: request logs carry the method,
 * the route path without its query string, the status and a request id; bodies, query
 * strings and authorisation headers are never serialised.
 */
import { pino, type Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'forfait-fhir' },
    redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization'], remove: true },
  });
}
