"""Vaidya driven by fhirclient 4.4.0 (the SMART on FHIR Python client) and its R4 models.

fhirclient parses every response strictly (unknown elements and wrong JSON types raise
FHIRValidationError), so a read or a search that succeeds here is also a check that what Vaidya
sent is R4 as fhirclient's generated models understand it.
"""

from __future__ import annotations

import itertools

import pytest
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.contactpoint import ContactPoint
from fhirclient.models.fhirdate import FHIRDate
from fhirclient.models.fhirdatetime import FHIRDateTime
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.models.quantity import Quantity
from fhirclient.server import FHIRNotFoundException, FHIRUnauthorizedException

from conftest import LOINC, MRN_SYSTEM, UHID_SYSTEM, FhirApi, assert_operation_outcome, unique

LOCAL_CODES = "urn:vaidya-interop:codes"


def search(server, resource_class, struct: dict) -> list:
    """All resources a fhirclient search finds, following its `next` links."""
    return list(resource_class.where(struct=struct).perform_resources_iter(server))


def new_patient(family: str, mrn: str) -> Patient:
    patient = Patient()
    name = HumanName()
    name.family = family
    name.given = ["Asha", "Kumari"]
    name.use = "official"
    patient.name = [name]
    identifier = Identifier()
    identifier.system = MRN_SYSTEM
    identifier.value = mrn
    patient.identifier = [identifier]
    patient.gender = "female"
    patient.birthDate = FHIRDate("1984-07-19")
    patient.active = True
    return patient


def heart_rate(patient_id: str, local_code: str) -> Observation:
    observation = Observation()
    observation.status = "final"
    loinc = Coding()
    loinc.system, loinc.code, loinc.display = LOINC, "8867-4", "Heart rate"
    local = Coding()
    local.system, local.code = LOCAL_CODES, local_code
    observation.code = CodeableConcept()
    observation.code.coding = [loinc, local]
    observation.code.text = "Heart rate"
    observation.subject = FHIRReference()
    observation.subject.reference = f"Patient/{patient_id}"
    observation.effectiveDateTime = FHIRDateTime("2024-03-05T10:15:00+05:30")
    observation.valueQuantity = Quantity()
    observation.valueQuantity.value = 72
    observation.valueQuantity.unit = "beats/minute"
    observation.valueQuantity.system = "http://unitsofmeasure.org"
    observation.valueQuantity.code = "/min"
    return observation


@pytest.fixture(scope="module")
def created_patient(smart):
    """A Patient created through fhirclient: (id, family, mrn)."""
    family, mrn = unique("Interop"), unique("MRN-")
    response = new_patient(family, mrn).create(smart)
    assert response is not None, "create returned no body (Vaidya should return the resource)"
    assert response["resourceType"] == "Patient"
    assert response.get("id"), response
    return response["id"], family, mrn


@pytest.fixture(scope="module")
def created_observation(smart, created_patient):
    """An Observation about created_patient, created through fhirclient: (id, local code)."""
    patient_id = created_patient[0]
    local_code = unique("hr-")
    response = heart_rate(patient_id, local_code).create(smart)
    assert response is not None and response.get("id"), response
    return response["id"], local_code


def test_create_and_read_patient_round_trips(smart, created_patient):
    patient_id, family, mrn = created_patient
    patient = Patient.read(patient_id, smart)
    assert patient.id == patient_id
    assert patient.meta is not None and patient.meta.versionId == "1"
    assert patient.meta.lastUpdated is not None
    assert [(n.family, n.given, n.use) for n in patient.name] == [
        (family, ["Asha", "Kumari"], "official")
    ]
    # The client's identifier comes back as sent; Vaidya adds the hospital's UHID after it.
    assert [(i.system, i.value) for i in patient.identifier if i.system != UHID_SYSTEM] == [(MRN_SYSTEM, mrn)]
    assert [i.system for i in patient.identifier] == [MRN_SYSTEM, UHID_SYSTEM]
    assert patient.gender == "female"
    assert patient.birthDate.isostring == "1984-07-19"
    assert patient.active is True


def test_update_patient(smart):
    family, mrn = unique("Update"), unique("MRN-")
    patient_id = new_patient(family, mrn).create(smart)["id"]

    patient = Patient.read(patient_id, smart)
    phone = ContactPoint()
    phone.system, phone.value, phone.use = "phone", "+91-11-2658-8500", "mobile"
    patient.telecom = [phone]
    patient.name[0].given = ["Asha"]
    response = patient.update()  # PUT Patient/<id>, to the server the patient was read from
    assert response is not None and response["meta"]["versionId"] == "2", response

    again = Patient.read(patient_id, smart)
    assert again.meta.versionId == "2"
    assert again.name[0].given == ["Asha"]
    assert [(t.system, t.value, t.use) for t in again.telecom] == [
        ("phone", "+91-11-2658-8500", "mobile")
    ]
    assert again.identifier[0].value == mrn


def test_search_patient_by_name(smart, created_patient):
    patient_id, family, _ = created_patient
    found = search(smart, Patient, {"name": family})
    assert [p.id for p in found] == [patient_id]
    assert found[0].name[0].family == family
    # string search matches the start of a name, case-insensitively
    assert [p.id for p in search(smart, Patient, {"name": family[:-3].lower()})] == [patient_id]
    assert [p.id for p in search(smart, Patient, {"family": family})] == [patient_id]
    assert search(smart, Patient, {"name": unique("Nobody")}) == []


def test_devanagari_name_round_trips_and_is_found(smart):
    family = "शर्मा" + unique("-")
    patient = new_patient(family, unique("MRN-"))
    patient.name[0].given = ["आशा"]
    patient_id = patient.create(smart)["id"]
    read = Patient.read(patient_id, smart)
    assert (read.name[0].family, read.name[0].given) == (family, ["आशा"])
    assert [p.id for p in search(smart, Patient, {"family": family})] == [patient_id]


def test_search_patient_by_identifier(smart, created_patient):
    patient_id, _, mrn = created_patient
    # fhirclient percent-encodes the `|` between system and value
    assert [p.id for p in search(smart, Patient, {"identifier": f"{MRN_SYSTEM}|{mrn}"})] == [patient_id]
    assert [p.id for p in search(smart, Patient, {"identifier": mrn})] == [patient_id]
    assert search(smart, Patient, {"identifier": f"urn:some-other-system|{mrn}"}) == []


def test_create_and_read_observation(smart, created_patient, created_observation):
    observation_id, local_code = created_observation
    observation = Observation.read(observation_id, smart)
    assert observation.status == "final"
    assert observation.subject.reference == f"Patient/{created_patient[0]}"
    assert [(c.system, c.code) for c in observation.code.coding] == [
        (LOINC, "8867-4"), (LOCAL_CODES, local_code)
    ]
    assert observation.valueQuantity.value == 72
    assert (observation.valueQuantity.system, observation.valueQuantity.code) == (
        "http://unitsofmeasure.org", "/min"
    )
    assert observation.effectiveDateTime.isostring.startswith("2024-03-05T10:15:00")


def test_search_observation_by_subject(smart, created_patient, created_observation):
    patient_id = created_patient[0]
    found = search(smart, Observation, {"subject": f"Patient/{patient_id}"})
    assert [o.id for o in found] == [created_observation[0]]
    assert found[0].valueQuantity.value == 72
    assert [o.id for o in search(smart, Observation, {"patient": patient_id})] == [
        created_observation[0]
    ]


def test_search_observation_by_code(smart, created_patient, created_observation):
    observation_id, local_code = created_observation
    assert [o.id for o in search(smart, Observation, {"code": f"{LOCAL_CODES}|{local_code}"})] == [
        observation_id
    ]
    both = {"code": f"{LOINC}|8867-4", "subject": f"Patient/{created_patient[0]}"}
    assert [o.id for o in search(smart, Observation, both)] == [observation_id]
    # the same code in another system is another code
    assert search(smart, Observation, {"code": f"{LOINC}|{local_code}"}) == []


def test_search_observation_chained_on_patient_name(smart, created_patient, created_observation):
    # {'patient': {'name': X}} is fhirclient's way of writing the chain `patient.name=X`
    found = search(smart, Observation, {"patient": {"name": created_patient[1]}})
    assert [o.id for o in found] == [created_observation[0]]


def test_search_observation_with_include(smart, created_patient, created_observation):
    query = Observation.where(struct={"_id": created_observation[0]}).include("subject")
    assert query.construct().endswith("_include=Observation:subject")
    [bundle] = list(query.perform_iter(smart))
    assert bundle.total == 1  # counts the matches only
    modes = sorted((e.search.mode, e.resource.resource_type, e.resource.id) for e in bundle.entry)
    assert modes == [
        ("include", "Patient", created_patient[0]),
        ("match", "Observation", created_observation[0]),
    ]


def test_search_patient_with_revinclude(smart, created_patient, created_observation):
    query = Patient.where(struct={"_id": created_patient[0]}).include("subject", Observation, reverse=True)
    assert query.construct().endswith("_revinclude=Observation:subject")
    [bundle] = list(query.perform_iter(smart))
    modes = sorted((e.search.mode, e.resource.resource_type, e.resource.id) for e in bundle.entry)
    assert modes == [
        ("include", "Observation", created_observation[0]),
        ("match", "Patient", created_patient[0]),
    ]


def test_paging_follows_next_links(smart, api: FhirApi):
    family = unique("Paging")
    created = set()
    for i in range(15):
        patient = new_patient(family, unique("MRN-"))
        patient.name[0].given = [f"P{i:02d}"]
        created.add(patient.create(smart)["id"])
    assert len(created) == 15

    pages = list(Patient.where(struct={"name": family, "_count": "5"}).perform_iter(smart))
    assert [len(page.entry or []) for page in pages] == [5, 5, 5]
    assert all(isinstance(page, Bundle) and page.type == "searchset" for page in pages)
    found = [entry.resource.id for page in pages for entry in page.entry]
    assert len(found) == len(set(found)), f"a resource came twice: {found}"
    assert set(found) == created
    assert all(page.total in (None, 15) for page in pages)
    assert not any(link.relation == "next" for link in pages[-1].link or [])


def test_count_zero_gives_the_total_without_an_endless_next_link(smart, api: FhirApi):
    family = unique("Count")
    for _ in range(3):
        new_patient(family, unique("MRN-")).create(smart)

    # `_count=0` asks for the number of matches only (FHIR R4 search, 3.1.1.5.4/_count); a
    # client that follows `next` links, as fhirclient's iterators do, must come to an end.
    pages = list(itertools.islice(
        Patient.where(struct={"name": family, "_count": "0"}).perform_iter(smart), 3
    ))
    assert pages[0].total == 3
    assert not pages[0].entry
    assert len(pages) == 1, "fhirclient kept following `next` links: " + ", ".join(
        link.url for page in pages for link in page.link or [] if link.relation == "next"
    )


def test_capability_statement_with_fhirclient(smart):
    capability = smart.capabilityStatement  # fetched by fhirclient itself, without a token
    assert isinstance(capability, CapabilityStatement)
    assert capability.fhirVersion == "4.0.1"
    assert capability.kind == "instance"
    assert "application/fhir+json" in capability.format or "json" in capability.format
    server_rest = [rest for rest in capability.rest if rest.mode == "server"]
    assert len(server_rest) == 1
    resources = {resource.type: resource for resource in server_rest[0].resource}
    patient_params = {param.name: param.type for param in resources["Patient"].searchParam}
    assert patient_params["name"] == "string"
    assert patient_params["identifier"] == "token"
    assert patient_params["birthdate"] == "date"
    observation_params = {param.name for param in resources["Observation"].searchParam}
    assert {"subject", "patient", "code"} <= observation_params
    assert {"read", "create", "update", "search-type"} <= {
        i.code for i in resources["Patient"].interaction
    }


def test_delete_then_read_is_gone(smart, api: FhirApi):
    patient_id = new_patient(unique("Delete"), unique("MRN-")).create(smart)["id"]
    Patient.read(patient_id, smart).delete()
    assert_operation_outcome(api.get(f"Patient/{patient_id}"), 410)
    assert list(Patient.where(struct={"_id": patient_id}).perform_resources_iter(smart)) == []


def test_errors_raise_fhirclient_exceptions(vaidya, smart):
    with pytest.raises(FHIRNotFoundException) as not_found:
        Patient.read(unique("missing-"), smart)
    assert not_found.value.response.json()["resourceType"] == "OperationOutcome"

    from fhirclient import client as fhirclient_client

    anonymous = fhirclient_client.FHIRClient(
        settings={"app_id": "vaidya-interop", "api_base": vaidya.base}
    ).server
    with pytest.raises(FHIRUnauthorizedException) as unauthorized:
        list(Patient.where(struct={"name": "Anyone"}).perform_iter(anonymous))
    assert unauthorized.value.response.json()["resourceType"] == "OperationOutcome"
