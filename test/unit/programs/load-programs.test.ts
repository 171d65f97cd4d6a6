/**
 * loadProgramCatalog against temporary copies of the real `mappings/`, each test editing one
 * file: the real data loads; every kind of bad file stops loading with an error naming the
 * file and the field; the SITE_DIR overlay replaces or adds files.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { loadProgramCatalog, ProgramDataError, type LoadOptions } from '../../../src/programs/load-programs.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MAPPINGS = path.join(REPO, 'mappings');
const PROFILES = path.join(REPO, 'profiles');
const FNMF = 'programs/fnmf-prediabetes/program.json';

const temporary: string[] = [];
afterEach(() => {
  for (const dir of temporary.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh copy of mappings/ (and an empty site folder next to it). */
function workspace(): { mappings: string; site: string } {
  const root = mkdtempSync(path.join(tmpdir(), 'load-programs-'));
  temporary.push(root);
  const mappings = path.join(root, 'mappings');
  cpSync(MAPPINGS, mappings, { recursive: true });
  const site = path.join(root, 'site');
  mkdirSync(site);
  return { mappings, site };
}

/** JSON of a file, as plain data to edit. Program data is arbitrary JSON here: each test edits the field it breaks. */
type Json = any;
const readJson = (file: string): Json => JSON.parse(readFileSync(file, 'utf8'));
function writeJson(dir: string, relative: string, data: unknown): string {
  const file = path.join(dir, relative);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(data, null, 2));
  return file;
}
/** Edits `relative` inside `dir` in place; returns its absolute path. */
function edit(dir: string, relative: string, change: (data: Json) => void): string {
  const data = readJson(path.join(dir, relative));
  change(data);
  return writeJson(dir, relative, data);
}

/** The ProgramDataError loading throws, with its message. */
function loadError(options: LoadOptions): ProgramDataError {
  try {
    loadProgramCatalog(options);
  } catch (error) {
    expect(error).toBeInstanceOf(ProgramDataError);
    return error as ProgramDataError;
  }
  throw new Error('expected loading to fail');
}

describe('the real program data', () => {
  it('loads both programs with their site data, value sets and units', () => {
    const catalog = loadProgramCatalog({ mappingsDir: MAPPINGS });
    expect([...catalog.programs.keys()].sort()).toEqual(['fnmf-prediabetes', 'rediab']);
    const fnmf = catalog.programs.get('fnmf-prediabetes');
    expect(fnmf?.definition.criteria.map((c) => c.code)).toEqual(['gp-in-centre', 'age', 'fasting-glucose', 'bmi', 'no-diabetes']);
    expect(fnmf?.centres.map((c) => c.identifier.value)).toEqual(['CDS-MGEN-VAUGIRARD']);
    const rediab = catalog.programs.get('rediab');
    expect(rediab?.insurers.map((i) => i.identifier.value)).toEqual(['CPAM-BOULOGNE-SUR-MER', 'CPAM-CALAIS']);
    expect(rediab?.residenceAreas.length).toBeGreaterThan(0);
    expect(catalog.valueSets.get('fasting-glucose')?.url).toBe('http://forfait-fhir.org/fhir/ValueSet/fasting-glucose');
    expect(catalog.units.dimensions['glucose-mass-concentration']?.factors['mmol/L']).toBe('0.18016');
  });

  it('an untouched copy loads the same (the temporary copies are a faithful baseline)', () => {
    const { mappings } = workspace();
    expect([...loadProgramCatalog({ mappingsDir: mappings }).programs.keys()].sort()).toEqual(['fnmf-prediabetes', 'rediab']);
  });

  it('with profiles, checks every plan against its PlanDefinition and ActivityDefinitions', () => {
    const catalog = loadProgramCatalog({ mappingsDir: MAPPINGS, profilesDir: PROFILES });
    expect(catalog.planDefinitions.size).toBeGreaterThanOrEqual(6);
    expect(catalog.programs.get('fnmf-prediabetes')?.enrolment?.capacity).toBe(140);
    const { mappings } = workspace();
    edit(mappings, 'programs/rediab/enrolment.json', (data) => {
      data.plans[0].planDefinition = 'http://forfait-fhir.org/fhir/PlanDefinition/nope';
    });
    expect(loadError({ mappingsDir: mappings, profilesDir: PROFILES }).message).toMatch(/enrolment\.json: field plans\.0\.planDefinition: no PlanDefinition .*nope/);
  });

  it('PROGRAMS (programIds) keeps only the programs named', () => {
    const catalog = loadProgramCatalog({ mappingsDir: MAPPINGS, programIds: ['rediab'] });
    expect([...catalog.programs.keys()]).toEqual(['rediab']);
  });
});

describe('a bad file stops loading, naming the file and the field', () => {
  it('a wrong type: criteria.2.precision "two"', () => {
    const { mappings } = workspace();
    const file = edit(mappings, FNMF, (program) => {
      program.criteria[2].precision = 'two';
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(file);
    expect(error.message).toContain('program.json');
    expect(error.message).toContain('criteria.2.precision');
  });

  it('invalid JSON names the file', () => {
    const { mappings } = workspace();
    const file = path.join(mappings, 'programs/rediab/insurers.json');
    writeFileSync(file, '{ "insurers": [ }');
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/not valid JSON/);
  });

  it('a value set id that no file provides names the file, the criterion and the value set', () => {
    const { mappings } = workspace();
    const file = edit(mappings, FNMF, (program) => {
      program.criteria[4].valueSet = 'diabetes-typo';
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(file);
    expect(error.message).toContain('criteria.4');
    expect(error.message).toContain('diabetes-typo');
  });

  it('a value set referenced by an age rule is checked too', () => {
    const { mappings } = workspace();
    edit(mappings, FNMF, (program) => {
      program.criteria[1].rules[1].when.conditionValueSet = 'no-such-history';
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain('program.json');
    expect(error.message).toContain('no-such-history');
  });

  it('a value set whose id does not match its file name', () => {
    const { mappings } = workspace();
    const file = edit(mappings, 'value-sets/body-weight.json', (valueSet) => {
      valueSet.id = 'body-mass';
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(file);
    expect(error.message).toContain('field id');
    expect(error.message).toContain('body-weight');
  });

  it('a program whose id does not match its folder', () => {
    const { mappings } = workspace();
    const file = edit(mappings, 'programs/rediab/program.json', (program) => {
      program.id = 'rediab-2';
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(file);
    expect(error.message).toContain('field id');
  });

  it('a duplicate criterion code', () => {
    const { mappings } = workspace();
    const file = edit(mappings, FNMF, (program) => {
      program.criteria[3].code = 'age';
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(file);
    expect(error.message).toContain('criteria.3.code');
    expect(error.message).toContain('duplicate');
  });

  it('an unknown unit dimension', () => {
    const { mappings } = workspace();
    const file = edit(mappings, FNMF, (program) => {
      program.criteria[2].dimension = 'glucose-molar';
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(file);
    expect(error.message).toContain('criteria.2.dimension');
    expect(error.message).toContain('glucose-molar');
  });

  it('a units.json without a dimension BMI needs', () => {
    const { mappings } = workspace();
    edit(mappings, 'units.json', (units) => {
      delete units.dimensions.length;
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain('program.json');
    expect(error.message).toContain('"length"');
  });

  it('a decimal given as a JSON number (1.10) instead of the string "1.10"', () => {
    const { mappings } = workspace();
    const file = path.join(mappings, FNMF);
    // Written by hand: JSON.stringify would print 1.1, and the point is that a number is refused whatever its spelling.
    writeFileSync(file, readFileSync(file, 'utf8').replace('"value": "1.10"', '"value": 1.10'));
    expect(readFileSync(file, 'utf8')).toContain('"value": 1.10');
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(file);
    expect(error.message).toContain('criteria.2.low.value');
  });

  it('a decimal string that is not a number ("1,10")', () => {
    const { mappings } = workspace();
    edit(mappings, 'units.json', (units) => {
      units.dimensions['glucose-mass-concentration'].factors['mmol/L'] = '0,18016';
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain('units.json');
    expect(error.message).toContain('dimensions.glucose-mass-concentration.factors.mmol/L');
  });

  it('a unit alias to a unit the dimension has no factor for (a typo that would make every such value "unknown unit")', () => {
    const { mappings } = workspace();
    const file = edit(mappings, 'units.json', (units) => {
      units.dimensions['glucose-mass-concentration'].aliases['mmol/l'] = 'mmol/LL';
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(file);
    expect(error.message).toContain('dimensions.glucose-mass-concentration.aliases.mmol/l');
    expect(error.message).toContain('mmol/LL');
  });

  it.each([
    ['missing', undefined],
    ['not 1', '0.5'],
  ])('a canonical unit whose own factor is %s', (_case, factor) => {
    const { mappings } = workspace();
    const file = edit(mappings, 'units.json', (units) => {
      if (factor === undefined) delete units.dimensions.mass.factors.kg;
      else units.dimensions.mass.factors.kg = factor;
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(file);
    expect(error.message).toContain('dimensions.mass.factors');
    expect(error.message).toContain('"kg"');
  });

  it('an unknown field (a typo) is refused, not ignored', () => {
    const { mappings } = workspace();
    edit(mappings, FNMF, (program) => {
      program.criteria[2].lookBackMonths = 6;
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain('program.json');
    expect(error.message).toContain('lookBackMonths');
  });

  it('an unknown criterion kind', () => {
    const { mappings } = workspace();
    edit(mappings, FNMF, (program) => {
      program.criteria[0].kind = 'gp-in-centre';
    });
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain('program.json');
    expect(error.message).toContain('criteria.0.kind');
  });

  it('a gp-in-centre criterion without centres.json', () => {
    const { mappings } = workspace();
    rmSync(path.join(mappings, 'programs/fnmf-prediabetes/centres.json'));
    const error = loadError({ mappingsDir: mappings });
    expect(error.message).toContain(path.join(mappings, FNMF));
    expect(error.message).toContain('centres.json');
  });

  it('PROGRAMS naming an unknown program', () => {
    const error = loadError({ mappingsDir: MAPPINGS, programIds: ['fnmf-prediabetes', 'no-such-program'] });
    expect(error.message).toContain('no-such-program');
    expect(error.message).not.toContain('fnmf-prediabetes');
  });

  it('a missing mappings folder or SITE_DIR', () => {
    const { mappings, site } = workspace();
    expect(loadError({ mappingsDir: path.join(mappings, 'nope') }).message).toContain(path.join(mappings, 'nope'));
    expect(loadError({ mappingsDir: mappings, siteDir: path.join(site, 'nope') }).message).toContain('SITE_DIR');
  });

  it('a bad file in SITE_DIR names the site file, not the mappings one', () => {
    const { mappings, site } = workspace();
    const file = writeJson(site, 'programs/fnmf-prediabetes/centres.json', { centres: [{ name: 'No identifier' }] });
    const error = loadError({ mappingsDir: mappings, siteDir: site });
    expect(error.message).toContain(file);
    expect(error.message).toContain('centres.0.identifier');
  });
});

describe('SITE_DIR overlay', () => {
  const siteCentres = {
    _comment: 'a site’s own centres',
    centres: [
      { identifier: { system: 'urn:oid:1.2.250.1.71.4.2.2', value: '330000001' }, name: 'Centre de santé de Bordeaux' },
      { identifier: { system: 'urn:oid:1.2.250.1.71.4.2.2', value: '210000002' }, name: 'Maison de santé de Dijon' },
    ],
  };

  it('a site centres.json replaces the program’s centres whole', () => {
    const { mappings, site } = workspace();
    writeJson(site, 'programs/fnmf-prediabetes/centres.json', siteCentres);
    const catalog = loadProgramCatalog({ mappingsDir: mappings, siteDir: site });
    const centres = catalog.programs.get('fnmf-prediabetes')?.centres ?? [];
    expect(centres.map((c) => c.identifier.value)).toEqual(['330000001', '210000002']);
    expect(centres.map((c) => c.identifier.value)).not.toContain('CDS-MGEN-VAUGIRARD');
    // Another program's centres are untouched.
    expect(catalog.programs.get('rediab')?.centres.map((c) => c.identifier.value)).toEqual(['REDIAB-CALAIS']);
  });

  it('a site fasting-glucose-site.json replaces the lab’s local codes', () => {
    const { mappings, site } = workspace();
    const siteValueSet = readJson(path.join(MAPPINGS, 'value-sets/fasting-glucose-site.json'));
    siteValueSet.compose.include = [{ system: 'http://lab.example.fr/codes', concept: [{ code: 'GLU-JEUN', display: 'Glycémie à jeun' }] }];
    writeJson(site, 'value-sets/fasting-glucose-site.json', siteValueSet);
    const catalog = loadProgramCatalog({ mappingsDir: mappings, siteDir: site });
    expect(catalog.valueSets.get('fasting-glucose-site')?.compose.include).toEqual([
      { system: 'http://lab.example.fr/codes', concept: [{ code: 'GLU-JEUN', display: 'Glycémie à jeun' }] },
    ]);
    expect(JSON.stringify(catalog.valueSets.get('fasting-glucose-site'))).not.toContain('GLYC-AJ');
  });

  it('a site can add a value set file, and a program can then refer to it', () => {
    const { mappings, site } = workspace();
    writeJson(site, 'value-sets/prediabetes.json', {
      resourceType: 'ValueSet',
      id: 'prediabetes',
      url: 'http://example.fr/fhir/ValueSet/prediabetes',
      status: 'active',
      compose: { include: [{ system: 'http://snomed.info/sct', concept: [{ code: '15777000' }] }] },
    });
    // Without the site file a program referring to it is refused ...
    edit(mappings, FNMF, (program) => {
      program.criteria.push({ code: 'prediabetes', kind: 'active-condition', valueSet: 'prediabetes', label: 'prediabetes', description: 'Prediabetes recorded.' });
    });
    expect(loadError({ mappingsDir: mappings }).message).toContain('"prediabetes"');
    // ... with it, it loads.
    const catalog = loadProgramCatalog({ mappingsDir: mappings, siteDir: site });
    expect(catalog.valueSets.get('prediabetes')?.compose.include[0]?.concept?.[0]?.code).toBe('15777000');
    expect(catalog.valueSets.has('fasting-glucose')).toBe(true);
    expect(catalog.programs.get('fnmf-prediabetes')?.definition.criteria.at(-1)?.code).toBe('prediabetes');
  });

  it('a site can add a whole program (test/fixtures/site-third-program), with its own value set and unit dimension', () => {
    const site = path.join(REPO, 'test/fixtures/site-third-program');
    const catalog = loadProgramCatalog({ mappingsDir: MAPPINGS, siteDir: site });
    expect([...catalog.programs.keys()].sort()).toEqual(['fnmf-prediabetes', 'gestational-diabetes-follow-up', 'rediab']);
    const third = catalog.programs.get('gestational-diabetes-follow-up');
    expect(third?.definition.criteria.map((c) => c.kind)).toEqual(['general-practitioner-in-centre', 'age', 'active-condition', 'latest-observation-in-range']);
    expect(third?.centres.map((c) => c.identifier.value)).toEqual(['CDS-MGEN-VAUGIRARD']);
    expect(catalog.valueSets.has('hba1c')).toBe(true);
    expect(catalog.units.dimensions['hemoglobin-a1c-fraction']).toMatchObject({ canonical: '%', factors: { '%': '1' } });
    // The fixture's units.json replaces the real one whole: it must keep every real dimension.
    expect(Object.keys(catalog.units.dimensions)).toEqual(expect.arrayContaining(Object.keys(loadProgramCatalog({ mappingsDir: MAPPINGS }).units.dimensions)));
    // PROGRAMS can still select among them.
    expect([...loadProgramCatalog({ mappingsDir: MAPPINGS, siteDir: site, programIds: ['gestational-diabetes-follow-up'] }).programs.keys()]).toEqual([
      'gestational-diabetes-follow-up',
    ]);
  });

  it('a site program.json replaces the program definition', () => {
    const { mappings, site } = workspace();
    const program = readJson(path.join(MAPPINGS, FNMF));
    program.criteria[2].high.inclusive = false;
    writeJson(site, FNMF, program);
    const catalog = loadProgramCatalog({ mappingsDir: mappings, siteDir: site });
    const glucose = catalog.programs.get('fnmf-prediabetes')?.definition.criteria[2];
    expect(glucose?.kind === 'latest-observation-in-range' && glucose.high).toEqual({ value: '1.26', inclusive: false });
  });
});
