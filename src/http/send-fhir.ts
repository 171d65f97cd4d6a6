/** FHIR JSON answers: the media type, and a resource sent with it. */
import type { Response } from 'express';

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

export function sendFhir(res: Response, status: number, body: fhir4.Resource, headers: Record<string, string> = {}): void {
  res.status(status).set({ 'Content-Type': FHIR_JSON, ...headers }).send(JSON.stringify(body));
}
