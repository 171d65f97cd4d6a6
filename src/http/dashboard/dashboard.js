/*
 * Coordinator dashboard: reads ONLY the report API of this adapter (GET /fhir/Measure and
 * $evaluate-measure), never computes an indicator itself, and shows every chart's numbers in
 * a table too. Plain browser JavaScript, no build step; Chart.js 4 (UMD) draws the charts.
 *
 * Reading rules of the MeasureReports (report-api.md): group key = group.id, stratifier key =
 * stratifier.code[0].text, stratum key = stratum.value.text; counts are population.count by
 * population code; scores are measureScore quantities.
 */
'use strict';

(() => {
  const TOKEN_KEY = 'forfait-fhir.dashboard.token';
  const PROGRAM_SYSTEM = 'http://forfait-fhir.org/fhir/CodeSystem/program';
  const $ = (id) => document.getElementById(id);
  const charts = new Map();
  let measures = []; // { id, program, title }

  class ApiError extends Error {
    constructor(status, outcome) {
      super(`HTTP ${status}`);
      this.status = status;
      this.outcome = outcome;
    }
  }

  // --- Report API ---------------------------------------------------------------------------

  async function call(path) {
    const headers = { Accept: 'application/fhir+json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { headers, credentials: 'same-origin' });
    let body;
    try {
      body = await response.json();
    } catch {
      body = undefined;
    }
    if (response.status === 401) $('token-form').hidden = false;
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  const programOf = (measure) =>
    (measure.useContext || [])
      .flatMap((context) => (context.valueCodeableConcept && context.valueCodeableConcept.coding) || [])
      .find((coding) => coding.system === PROGRAM_SYSTEM)?.code;

  async function loadMeasures() {
    const bundle = await call('/fhir/Measure');
    measures = (bundle.entry || [])
      .map((entry) => entry.resource)
      .filter((measure) => measure && measure.resourceType === 'Measure')
      .map((measure) => ({ id: measure.id, program: programOf(measure), title: measure.title || measure.name || measure.id, centres: centresOf(measure) }));
    const programs = [...new Set(measures.map((m) => m.program).filter(Boolean))].sort();
    const select = $('program');
    select.replaceChildren(...programs.map((program) => new Option(program, program)));
    const wanted = new URLSearchParams(location.search).get('program');
    if (wanted && programs.includes(wanted)) select.value = wanted;
    fillCentres();
  }

  /** Participating centres, when the Measures list them (useContext `venue` → Organization). */
  function centresOf(measure) {
    return (measure.useContext || [])
      .filter((context) => context.code && context.code.code === 'venue' && context.valueReference)
      .map((context) => context.valueReference);
  }

  function fillCentres() {
    const program = $('program').value;
    const seen = new Map();
    for (const measure of measures.filter((m) => m.program === program)) {
      for (const centre of measure.centres) {
        // `Organization/{id}` when the centre is stored, else its identifier `system|value` (both accepted by the API).
        const key = centre.reference || (centre.identifier?.system && centre.identifier?.value ? `${centre.identifier.system}|${centre.identifier.value}` : undefined);
        if (key) seen.set(key, centre.display || centre.identifier?.value || key);
      }
    }
    const select = $('centre');
    select.replaceChildren(new Option('All centres', ''), ...[...seen].map(([reference, name]) => new Option(name, reference)));
  }

  async function evaluate(measureId, query) {
    return call(`/fhir/Measure/${encodeURIComponent(measureId)}/$evaluate-measure?${query}`);
  }

  // --- Reading a MeasureReport ----------------------------------------------------------------

  const popCount = (holder, code) => (holder?.population || []).find((p) => p.code?.coding?.some((c) => c.code === code))?.count;
  const score = (holder) => holder?.measureScore?.value;
  const stratifier = (group, key) => (group?.stratifier || []).find((s) => s.code?.[0]?.text === key);
  const strata = (group, key) => (stratifier(group, key)?.stratum || []).map((s) => ({ key: s.value?.text, count: popCount(s, 'initial-population'), stratum: s }));

  /** The first group with one of `ids` among the reports. */
  function findGroup(reports, ...ids) {
    for (const id of ids) {
      for (const report of reports) {
        const group = (report.group || []).find((g) => g.id === id);
        if (group) return group;
      }
    }
    return undefined;
  }

  // --- Rendering ------------------------------------------------------------------------------

  const number = new Intl.NumberFormat('en-GB');
  const euro = new Intl.NumberFormat('en-GB', { style: 'currency', currency: 'EUR' });
  const PALETTE = ['#1f5fa8', '#e07b24', '#2f9e6b', '#a4378f', '#c9a227', '#4c6a85', '#d64545', '#6b8e23', '#8a63d2', '#3aa6b9'];

  function draw(id, config) {
    charts.get(id)?.destroy();
    const chart = new window.Chart($(id), { ...config, options: { responsive: true, maintainAspectRatio: false, animation: false, ...(config.options || {}) } });
    charts.set(id, chart);
  }

  function cell(tag, text, attributes = {}) {
    const element = document.createElement(tag);
    element.textContent = text;
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
    return element;
  }

  function fillTable(id, header, rows) {
    const table = $(id);
    if (header) {
      const tr = document.createElement('tr');
      header.forEach((text) => tr.append(cell('th', text, { scope: 'col' })));
      table.tHead.replaceChildren(tr);
    }
    table.tBodies[0].replaceChildren(
      ...rows.map((row) => {
        const tr = document.createElement('tr');
        row.forEach((value, index) => tr.append(index === 0 ? cell('th', String(value), { scope: 'row' }) : cell('td', value === undefined ? 'n/a' : String(value), value === undefined ? { class: 'na' } : {})));
        return tr;
      }),
    );
  }

  function renderFunnel(reports) {
    const screening = findGroup(reports, 'screening');
    const eligible = strata(screening, 'outcome').find((s) => s.key === 'eligible');
    const phases = strata(findGroup(reports, 'patients-per-phase'), 'phase');
    const steps = [
      ['Screened', popCount(screening, 'initial-population')],
      ['Eligible', eligible?.count],
      ['Enrolled', popCount(findGroup(reports, 'admitted'), 'initial-population')],
      ...phases.map((phase) => [`In ${phase.key}`, phase.count]),
      ['Exited', popCount(findGroup(reports, 'exits'), 'initial-population')],
    ];
    draw('chart-funnel', {
      type: 'bar',
      data: { labels: steps.map((s) => s[0]), datasets: [{ label: 'Patients', data: steps.map((s) => s[1] ?? null), backgroundColor: '#1f5fa8' }] },
      options: { indexAxis: 'y', plugins: { legend: { display: false } } },
    });
    fillTable('table-funnel', null, steps.map(([label, value]) => [label, value === undefined ? undefined : number.format(value)]));
  }

  function renderSessions(reports) {
    const sessions = findGroup(reports, 'sessions');
    const months = strata(sessions, 'month');
    // Month × kind when the report API gives it (stratum key "YYYY-MM|kind"); else the monthly total.
    const crossed = strata(sessions, 'month-kind');
    const kinds = strata(sessions, 'kind');
    let datasets;
    if (crossed.length) {
      const kindKeys = [...new Set(crossed.map((s) => s.key.split('|')[1]))];
      datasets = kindKeys.map((kind, i) => ({
        label: kind,
        data: months.map((m) => crossed.find((s) => s.key === `${m.key}|${kind}`)?.count ?? 0),
        backgroundColor: PALETTE[i % PALETTE.length],
        stack: 'sessions',
      }));
    } else {
      datasets = [{ label: 'All kinds', data: months.map((m) => m.count ?? 0), backgroundColor: PALETTE[0] }];
    }
    draw('chart-sessions-month', { type: 'bar', data: { labels: months.map((m) => m.key), datasets }, options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } } });
    fillTable('table-sessions-month', ['Month', ...datasets.map((d) => d.label)], months.map((m, i) => [m.key, ...datasets.map((d) => number.format(d.data[i]))]));

    draw('chart-sessions-kind', {
      type: 'bar',
      data: { labels: kinds.map((k) => k.key), datasets: [{ label: 'Sessions', data: kinds.map((k) => k.count ?? 0), backgroundColor: PALETTE.slice(0, kinds.length) }] },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
    });
    fillTable('table-sessions-kind', null, kinds.map((k) => [k.key, number.format(k.count ?? 0), score(k.stratum) === undefined ? undefined : score(k.stratum).toFixed(2)]));
  }

  function renderClaims(reports) {
    const claimed = findGroup(reports, 'claimed', 'forfaits');
    const budget = score(findGroup(reports, 'budget'));
    const byMonth = strata(claimed, 'month');
    const forfaits = strata(claimed, 'forfait');
    if (byMonth.length) {
      // Claimed per month, cumulated over the period, against the program's budget.
      // Cumulated in integer cents (the API's amounts have 2 decimals), so no binary-float drift shows.
      let cents = 0;
      const cumulative = byMonth.map((m) => (cents += Math.round(Number(score(m.stratum) ?? 0) * 100)) / 100);
      const datasets = [{ type: 'bar', label: 'Claimed in the month (EUR)', data: byMonth.map((m) => Number(score(m.stratum) ?? 0)), backgroundColor: PALETTE[0] }, { type: 'line', label: 'Claimed, cumulative (EUR)', data: cumulative, borderColor: PALETTE[1], backgroundColor: PALETTE[1] }];
      if (budget !== undefined) datasets.push({ type: 'line', label: 'Budget (EUR)', data: byMonth.map(() => budget), borderColor: PALETTE[6], backgroundColor: PALETTE[6], borderDash: [6, 4], pointRadius: 0 });
      draw('chart-claims', { type: 'bar', data: { labels: byMonth.map((m) => m.key), datasets }, options: { scales: { y: { beginAtZero: true } } } });
      fillTable('table-claims', ['Month', 'Forfait lines', 'Claimed', 'Cumulative', ...(budget !== undefined ? ['Budget'] : [])], byMonth.map((m, i) => [m.key, number.format(m.count ?? 0), euro.format(Number(score(m.stratum) ?? 0)), euro.format(cumulative[i]), ...(budget !== undefined ? [euro.format(budget)] : [])]));
      return;
    }
    // No monthly series from the report API: claimed by forfait, and against the budget when there is one.
    const labels = forfaits.map((f) => f.key);
    const datasets = [{ label: 'Claimed (EUR)', data: forfaits.map((f) => Number(score(f.stratum) ?? 0)), backgroundColor: PALETTE[0] }];
    const rows = forfaits.map((f) => [f.key, number.format(f.count ?? 0), euro.format(Number(score(f.stratum) ?? 0))]);
    const toDate = findGroup(reports, 'claimed-to-date');
    if (budget !== undefined && toDate) {
      labels.push('Claimed to date', 'Budget');
      datasets[0].data.push(Number(score(toDate) ?? 0), budget);
      rows.push(['Claimed to date', number.format(popCount(toDate, 'initial-population') ?? 0), euro.format(Number(score(toDate) ?? 0))], ['Budget', '', euro.format(budget)]);
    }
    draw('chart-claims', { type: 'bar', data: { labels, datasets }, options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } } });
    fillTable('table-claims', ['Forfait', 'Lines', 'Claimed'], rows);
  }

  const OUTCOMES = [
    ['weight', 'Weight'],
    ['bmi', 'BMI'],
    ['fasting-glucose', 'Fasting glucose'],
  ];

  function renderOutcomes(reports) {
    const groups = OUTCOMES.map(([id, label]) => ({ id, label, group: findGroup(reports, id) })).filter((g) => g.group);
    $('outcomes-title').parentElement.hidden = groups.length === 0;
    if (!groups.length) return;
    const phases = [...new Set(groups.flatMap((g) => strata(g.group, 'phase').map((s) => s.key)))];
    const datasets = phases.map((phase, i) => ({
      label: `End of ${phase}`,
      data: groups.map((g) => strata(g.group, 'phase').find((s) => s.key === phase)?.stratum.measureScore?.value ?? null),
      backgroundColor: PALETTE[i % PALETTE.length],
    }));
    draw('chart-outcomes', { type: 'bar', data: { labels: groups.map((g) => g.label), datasets }, options: { scales: { y: { title: { display: true, text: 'mean change (kg, kg/m², g/L)' } } } } });
    const rows = [];
    for (const g of groups) {
      for (const s of strata(g.group, 'phase')) {
        const quantity = s.stratum.measureScore;
        rows.push([g.label, s.key, number.format(popCount(s.stratum, 'measure-population') ?? 0), quantity ? `${quantity.value} ${quantity.unit || ''}`.trim() : undefined]);
      }
    }
    fillTable('table-outcomes', null, rows);
  }

  // --- Errors ---------------------------------------------------------------------------------

  function showError(error) {
    const box = $('errors');
    const issues = error instanceof ApiError && error.outcome?.resourceType === 'OperationOutcome' ? error.outcome.issue || [] : [];
    const title = document.createElement('p');
    title.textContent = error instanceof ApiError ? `The report API refused the request (HTTP ${error.status}).` : `The report could not be loaded: ${error.message}`;
    const list = document.createElement('ul');
    for (const issue of issues) {
      const where = (issue.expression || []).join(', ');
      list.append(cell('li', `${issue.severity || 'error'} (${issue.code || 'unknown'}): ${issue.diagnostics || issue.details?.text || 'no details'}${where ? ` [${where}]` : ''}`));
    }
    box.replaceChildren(title, ...(issues.length ? [list] : []));
    box.hidden = false;
  }

  function clearError() {
    $('errors').hidden = true;
    $('errors').replaceChildren();
  }

  // --- Flow -----------------------------------------------------------------------------------

  async function show() {
    clearError();
    const program = $('program').value;
    const params = new URLSearchParams({ periodStart: $('period-start').value, periodEnd: $('period-end').value });
    const centre = $('centre-identifier').value.trim() || $('centre').value;
    if (centre) params.set(centre.startsWith('Organization/') ? 'subject' : 'centre', centre);
    $('status').textContent = 'Loading…';
    document.body.dataset.state = 'loading';
    try {
      const reports = await Promise.all(measures.filter((m) => m.program === program).map((m) => evaluate(m.id, params.toString())));
      const reporter = reports.find((r) => r.reporter)?.reporter;
      $('scope').textContent = `${program}, ${params.get('periodStart')} to ${params.get('periodEnd')}, ${reporter ? `centre ${reporter.identifier?.value || reporter.display || reporter.reference}` : 'all centres'}`;
      $('report').hidden = false;
      renderFunnel(reports);
      renderSessions(reports);
      renderClaims(reports);
      renderOutcomes(reports);
      $('status').textContent = `Updated ${new Date().toLocaleString('en-GB')}`;
      document.body.dataset.state = 'ready';
    } catch (error) {
      showError(error);
      $('status').textContent = '';
      document.body.dataset.state = 'error';
    }
  }

  function defaults() {
    const query = new URLSearchParams(location.search);
    const today = new Date();
    const end = query.get('periodEnd') || today.toISOString().slice(0, 10);
    const start = query.get('periodStart') || `${today.getFullYear() - 1}-${String(today.getMonth() + 1).padStart(2, '0')}-01`;
    $('period-start').value = start;
    $('period-end').value = end;
    if (query.get('centre')) $('centre-identifier').value = query.get('centre');
  }

  async function load() {
    document.body.dataset.state = 'loading';
    try {
      clearError();
      await loadMeasures();
      await show();
    } catch (error) {
      showError(error);
      document.body.dataset.state = 'error';
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    defaults();
    $('program').addEventListener('change', fillCentres);
    $('filters').addEventListener('submit', (event) => {
      event.preventDefault();
      show();
    });
    $('token-form').addEventListener('submit', (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
      $('token').value = '';
      $('token-form').hidden = true;
      load();
    });
    load();
  });
})();
