/**
 * The coordinator dashboard (issue #5, part 3): a static page at `/dashboard` that reads ONLY
 * the report API (`GET /fhir/Measure`, `$evaluate-measure`) from the browser, and draws it
 * with Chart.js. No build step: plain files in `src/http/dashboard/` (copied next to the
 * compiled module by `npm run build`, so `dist/` serves them too) and Chart.js's UMD file from
 * node_modules under `/dashboard/vendor/`.
 *
 * The page holds no data of its own and needs no token to load; every figure it shows comes
 * from a report request that carries the user's bearer token when authentication is on.
 * Content-Security-Policy allows only this origin: no inline script or style, no third party.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Express, type Response } from 'express';

/** Only this origin, for everything; nothing inline, no frames, no plugins. */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** The folder of the page's files: beside this module (src/ under tsx, dist/ once built and copied). */
export function dashboardDirectory(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const beside = path.join(here, 'dashboard');
  if (existsSync(path.join(beside, 'index.html'))) return beside;
  // A build that did not copy the files: fall back to the sources at the package root.
  const fromSources = path.resolve(here, '..', '..', '..', 'src', 'http', 'dashboard');
  return existsSync(path.join(fromSources, 'index.html')) ? fromSources : beside;
}

/** Chart.js's UMD bundle in node_modules (not in its package `exports`, so found beside its main file). */
export function chartJsFile(): string {
  const main = createRequire(import.meta.url).resolve('chart.js');
  return path.join(path.dirname(main), 'chart.umd.js');
}

function secure(res: Response): void {
  res.setHeader('Content-Security-Policy', DASHBOARD_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-cache');
}

/** Mounts `/dashboard` (the page) and `/dashboard/vendor/chart.umd.js`. */
export function mountDashboard(app: Express): void {
  const directory = dashboardDirectory();
  const chartJs = chartJsFile();
  const router = express.Router({ caseSensitive: true, strict: false });
  router.use((_req, res, next) => {
    secure(res);
    next();
  });
  router.get('/vendor/chart.umd.js', (_req, res) => {
    res.type('application/javascript').sendFile(chartJs);
  });
  router.use(express.static(directory, { index: 'index.html', redirect: true, dotfiles: 'ignore', fallthrough: true }));
  router.use((_req, res) => {
    res.status(404).type('text/plain').send('Not found');
  });
  app.use('/dashboard', router);
}
