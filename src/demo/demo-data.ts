/**
 * Demo data for `npm start`: a participating centre with its GP, and patients that show
 * each outcome of both programs. Dates are relative to `today` so the demo stays inside the
 * programs' look-back windows whenever it runs. Names are fictitious.
 */
import { DateTime } from 'luxon';

const DEMO_CENTRE_SYSTEM = 'http://forfait-fhir.org/fhir/NamingSystem/demo-centre';
const DEMO_PATIENT_SYSTEM = 'http://forfait-fhir.org/fhir/NamingSystem/demo-patient';
const LOINC = 'http://loinc.org';
const SNOMED = 'http://snomed.info/sct';
const UCUM = 'http://unitsofmeasure.org';

type Entry = fhir4.BundleEntry;

function entry(fullUrl: string, resource: fhir4.Resource): Entry {
  return { fullUrl, resource, request: { method: 'POST', url: resource.resourceType } };
}

function quantityObservation(id: string, patient: string, code: string, display: string, value: number, unit: string, date: string): Entry {
  return entry(`urn:uuid:${id}`, {
    resourceType: 'Observation',
    identifier: [{ system: 'http://forfait-fhir.org/fhir/NamingSystem/demo-observation', value: id }],
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: code === '1558-6' ? 'laboratory' : 'vital-signs' }] }],
    code: { coding: [{ system: LOINC, code, display }] },
    subject: { reference: patient },
    effectiveDateTime: date,
    valueQuantity: { value, unit, system: UCUM, code: unit },
  } as fhir4.Observation);
}

/** A transaction Bundle with the demo centre, GP and patients. */
export function demoBundle(today: string): fhir4.Bundle {
  const day = DateTime.fromISO(today);
  const ago = (months: number): string => day.minus({ months }).toISODate() as string;
  const born = (years: number, days = 0): string => day.minus({ years }).minus({ days }).toISODate() as string;
  const org = 'urn:uuid:0d3c0c6e-0000-4000-8000-000000000001';
  const rediabOrg = 'urn:uuid:0d3c0c6e-0000-4000-8000-000000000002';
  const gp = 'urn:uuid:0d3c0c6e-0000-4000-8000-000000000003';
  const role = 'urn:uuid:0d3c0c6e-0000-4000-8000-000000000004';
  const rediabRole = 'urn:uuid:0d3c0c6e-0000-4000-8000-000000000005';
  const insurer = 'urn:uuid:0d3c0c6e-0000-4000-8000-000000000006';
  const patient = (n: number): string => `urn:uuid:0d3c0c6e-0000-4000-8000-0000000001${String(n).padStart(2, '0')}`;

  const person = (n: number, gender: 'female' | 'male', birthDate: string, given: string, gpRef: string, postalCode = '75015'): Entry =>
    entry(patient(n), {
      resourceType: 'Patient',
      identifier: [{ system: DEMO_PATIENT_SYSTEM, value: `DEMO-${n}` }],
      name: [{ family: 'Demo', given: [given] }],
      gender,
      birthDate,
      address: [{ use: 'home', postalCode, country: 'FR' }],
      generalPractitioner: [{ reference: gpRef }],
    } as fhir4.Patient);

  const entries: Entry[] = [
    entry(org, { resourceType: 'Organization', identifier: [{ system: DEMO_CENTRE_SYSTEM, value: 'CDS-MGEN-VAUGIRARD' }], active: true, name: 'Centre de santé demo (Paris 15)' } as fhir4.Organization),
    entry(rediabOrg, { resourceType: 'Organization', identifier: [{ system: DEMO_CENTRE_SYSTEM, value: 'REDIAB-CALAIS' }], active: true, name: 'Cabinet demo, réseau REDIAB (Calais)' } as fhir4.Organization),
    entry(insurer, { resourceType: 'Organization', identifier: [{ system: 'http://forfait-fhir.org/fhir/NamingSystem/organisme-assurance-maladie', value: 'CPAM-CALAIS' }], active: true, name: 'CPAM de Calais' } as fhir4.Organization),
    entry(gp, { resourceType: 'Practitioner', identifier: [{ system: 'urn:oid:1.2.250.1.71.4.2.1', value: '10000000001' }], name: [{ family: 'Médecin', given: ['Demo'] }] } as fhir4.Practitioner),
    entry(role, { resourceType: 'PractitionerRole', identifier: [{ system: 'http://forfait-fhir.org/fhir/NamingSystem/demo-role', value: 'GP-VAUGIRARD' }], active: true, practitioner: { reference: gp }, organization: { reference: org }, code: [{ coding: [{ system: SNOMED, code: '62247001', display: 'General practitioner' }] }] } as fhir4.PractitionerRole),
    entry(rediabRole, { resourceType: 'PractitionerRole', identifier: [{ system: 'http://forfait-fhir.org/fhir/NamingSystem/demo-role', value: 'GP-CALAIS' }], active: true, practitioner: { reference: gp }, organization: { reference: rediabOrg }, code: [{ coding: [{ system: SNOMED, code: '62247001', display: 'General practitioner' }] }] } as fhir4.PractitionerRole),
    // 1: FNMF eligible (52, fasting glucose 1.15 g/L, BMI 27.4).
    person(1, 'female', born(52), 'Alice', role),
    quantityObservation('0d3c0c6e-0000-4000-8000-000000000201', patient(1), '1558-6', 'Fasting glucose [Mass/volume] in Serum or Plasma', 115, 'mg/dL', ago(2)),
    quantityObservation('0d3c0c6e-0000-4000-8000-000000000202', patient(1), '39156-5', 'Body mass index (BMI) [Ratio]', 27.4, 'kg/m2', ago(2)),
    // 2: FNMF undetermined (no fasting glucose yet).
    person(2, 'male', born(58), 'Bruno', role),
    quantityObservation('0d3c0c6e-0000-4000-8000-000000000203', patient(2), '29463-7', 'Body weight', 88, 'kg', ago(1)),
    quantityObservation('0d3c0c6e-0000-4000-8000-000000000204', patient(2), '8302-2', 'Body height', 176, 'cm', ago(30)),
    // 3: FNMF not eligible: glucose above range (possible diabetes).
    person(3, 'female', born(61), 'Chantal', role),
    quantityObservation('0d3c0c6e-0000-4000-8000-000000000205', patient(3), '1558-6', 'Fasting glucose [Mass/volume] in Serum or Plasma', 7.4, 'mmol/L', ago(1)),
    quantityObservation('0d3c0c6e-0000-4000-8000-000000000206', patient(3), '39156-5', 'Body mass index (BMI) [Ratio]', 31, 'kg/m2', ago(1)),
    // 4: REDIAB eligible: type 2 diabetes, CPAM de Calais, lives in Calais, signed contract.
    person(4, 'male', born(64), 'Denis', rediabRole, '62100'),
    entry('urn:uuid:0d3c0c6e-0000-4000-8000-000000000207', {
      resourceType: 'Condition',
      identifier: [{ system: 'http://forfait-fhir.org/fhir/NamingSystem/demo-condition', value: 'T2D-4' }],
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
      verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'confirmed' }] },
      code: { coding: [{ system: SNOMED, code: '44054006', display: 'Diabetes mellitus type 2' }] },
      subject: { reference: patient(4) },
      onsetDateTime: ago(40),
    } as fhir4.Condition),
    entry('urn:uuid:0d3c0c6e-0000-4000-8000-000000000208', {
      resourceType: 'Coverage',
      identifier: [{ system: 'http://forfait-fhir.org/fhir/NamingSystem/demo-coverage', value: 'COV-4' }],
      status: 'active',
      beneficiary: { reference: patient(4) },
      payor: [{ reference: insurer }],
    } as fhir4.Coverage),
    entry('urn:uuid:0d3c0c6e-0000-4000-8000-000000000209', {
      resourceType: 'Consent',
      identifier: [{ system: 'http://forfait-fhir.org/fhir/NamingSystem/demo-consent', value: 'CONSENT-4' }],
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'treatment' }] },
      category: [{ coding: [{ system: LOINC, code: '59284-0', display: 'Consent Document' }] }],
      patient: { reference: patient(4) },
      dateTime: ago(1),
      policy: [{ uri: 'http://forfait-fhir.org/fhir/rediab/membership-contract' }],
    } as fhir4.Consent),
  ];
  return { resourceType: 'Bundle', type: 'transaction', entry: entries };
}
