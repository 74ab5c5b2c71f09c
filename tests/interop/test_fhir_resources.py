"""What Vaidya returns, validated with fhir.resources 8.3.0's pydantic models (R4B subpackage).

fhir.resources.R4B is FHIR 4.3.0; for the resource types used here it is the same as R4 (4.0.1)
(see the Synthea section for the one place where many types meet). Its models forbid unknown elements, check every primitive
against its regular expression, check cardinalities and required elements, and validate the
resources inside a Bundle by their own resourceType.

Requests are made with `requests`, bodies are built with the fhir.resources models.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid

import pytest
from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference

from conftest import (
    LOINC,
    MRN_SYSTEM,
    SYNTHEA_DIR,
    FhirApi,
    assert_operation_outcome,
    location_url,
    r4b_validate,
    type_and_id,
    unique,
)

# One Synthea patient of middling size (about 150 resources of 14 types, 79 Observations).
SYNTHEA_BUNDLE = "Cameron_Greenfelder_9b55212c-8024-4b8b-bc82-fa605435f63b.json"


def patient_model(family: str, mrn: str) -> Patient:
    return Patient(
        identifier=[Identifier(system=MRN_SYSTEM, value=mrn)],
        name=[HumanName(use="official", family=family, given=["Ravi", "Shankar"])],
        gender="male",
        birthDate=datetime.date(1961, 2, 28),
    )


def body(model) -> str:
    return model.model_dump_json(exclude_none=True)


def body_dict(model) -> dict:
    return model.model_dump(mode="json", exclude_none=True)


def create(api: FhirApi, model) -> dict:
    resource_type = model.get_resource_type()
    resp = api.post(resource_type, body(model))
    assert resp.status_code == 201, f"create {resource_type}: {resp.status_code} {resp.text}"
    return resp.json()


def issue_names(outcome: dict, element: str) -> bool:
    """Whether an issue of the OperationOutcome points at the element (expression, location or
    diagnostics)."""
    for issue in outcome.get("issue", []):
        places = issue.get("expression", []) + issue.get("location", [])
        if any(element in place for place in places) or element in issue.get("diagnostics", ""):
            return True
    return False


def test_capability_statement_validates(anonymous_api: FhirApi):
    resp = anonymous_api.get("metadata")  # the one interaction that needs no token
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/fhir+json")
    capability = CapabilityStatement.model_validate(resp.json())
    assert capability.fhirVersion == "4.0.1"
    assert capability.kind == "instance"
    [rest] = [rest for rest in capability.rest if rest.mode == "server"]
    resources = {resource.type: resource for resource in rest.resource}
    assert {"Patient", "Observation"} <= resources.keys()
    patient_params = {param.name: param.type for param in resources["Patient"].searchParam}
    assert {"name": "string", "identifier": "token", "birthdate": "date"}.items() <= patient_params.items()


def test_create_and_read_validate(api: FhirApi):
    family, mrn = unique("Create"), unique("MRN-")
    resp = api.post("Patient", body(patient_model(family, mrn)))
    assert resp.status_code == 201, resp.text
    created = Patient.model_validate(resp.json())
    assert created.id and created.meta.versionId == "1"
    assert type_and_id(resp.headers["Location"]) == ("Patient", created.id)
    assert resp.headers.get("ETag") == 'W/"1"'

    read = api.get(f"Patient/{created.id}")
    assert read.status_code == 200, read.text
    assert read.headers.get("ETag") == 'W/"1"'
    patient = Patient.model_validate(read.json())
    assert patient.id == created.id
    assert patient.name[0].family == family and patient.name[0].given == ["Ravi", "Shankar"]
    assert patient.identifier[0].system == MRN_SYSTEM and patient.identifier[0].value == mrn
    assert patient.birthDate == datetime.date(1961, 2, 28)
    assert patient.gender == "male"


def test_search_bundle_validates(api: FhirApi):
    family, mrn = unique("Search"), unique("MRN-")
    patient_id = create(api, patient_model(family, mrn))["id"]

    resp = api.get("Patient", params={"birthdate": "1961-02-28", "family": family})
    assert resp.status_code == 200, resp.text
    bundle = Bundle.model_validate(resp.json())
    assert bundle.type == "searchset"
    assert bundle.total == 1
    [entry] = bundle.entry
    assert entry.search.mode == "match"
    assert entry.resource.get_resource_type() == "Patient" and entry.resource.id == patient_id
    assert entry.fullUrl == f"{api.base}/Patient/{patient_id}"
    assert any(link.relation == "self" for link in bundle.link)

    empty = Bundle.model_validate(api.get("Patient", params={"family": unique("Nobody")}).json())
    assert empty.type == "searchset" and not empty.entry and empty.total == 0


def test_update_history_and_vread_validate(api: FhirApi):
    family, mrn = unique("History"), unique("MRN-")
    first = create(api, patient_model(family, mrn))
    patient_id = first["id"]

    second = dict(first, active=True)
    resp = api.put(f"Patient/{patient_id}", second, headers={"If-Match": 'W/"1"'})
    assert resp.status_code == 200, resp.text
    assert Patient.model_validate(resp.json()).meta.versionId == "2"
    third = dict(first, active=False)
    resp = api.put(f"Patient/{patient_id}", third, headers={"If-Match": 'W/"2"'})
    assert resp.status_code == 200, resp.text

    # a stale If-Match is refused, and nothing is written
    stale = api.put(f"Patient/{patient_id}", dict(first, gender="other"), headers={"If-Match": 'W/"1"'})
    assert_operation_outcome(stale, 412)

    resp = api.get(f"Patient/{patient_id}/_history")
    assert resp.status_code == 200, resp.text
    history = Bundle.model_validate(resp.json())
    assert history.type == "history"
    assert [e.resource.meta.versionId for e in history.entry] == ["3", "2", "1"]
    assert [e.resource.active for e in history.entry] == [False, True, None]
    assert [e.request.method for e in history.entry] == ["PUT", "PUT", "POST"]

    vread = api.get(f"Patient/{patient_id}/_history/2")
    assert vread.status_code == 200, vread.text
    assert Patient.model_validate(vread.json()).active is True
    current = Patient.model_validate(api.get(f"Patient/{patient_id}").json())
    assert (current.meta.versionId, current.active, current.gender) == ("3", False, "male")


def test_transaction_built_with_models(api: FhirApi):
    family, mrn = unique("Txn"), unique("MRN-")
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    observation = Observation(
        status="final",
        code=CodeableConcept(coding=[Coding(system=LOINC, code="29463-7", display="Body weight")]),
        subject=Reference(reference=patient_url),
        effectiveDateTime=datetime.datetime(2024, 5, 6, 9, 30, tzinfo=datetime.timezone.utc),
        valueQuantity=Quantity(value=68.5, unit="kg", system="http://unitsofmeasure.org", code="kg"),
    )
    transaction = Bundle(
        type="transaction",
        entry=[
            BundleEntry(
                fullUrl=f"urn:uuid:{uuid.uuid4()}",
                resource=observation,
                request=BundleEntryRequest(method="POST", url="Observation"),
            ),
            BundleEntry(
                fullUrl=patient_url,
                resource=patient_model(family, mrn),
                request=BundleEntryRequest(method="POST", url="Patient"),
            ),
        ],
    )
    resp = api.post("", body(transaction))
    assert resp.status_code == 200, resp.text
    response = Bundle.model_validate(resp.json())
    assert response.type == "transaction-response"
    assert len(response.entry) == 2
    assert [e.response.status.split()[0] for e in response.entry] == ["201", "201"]

    locations = [e.response.location for e in response.entry]
    assert [type_and_id(location)[0] for location in locations] == ["Observation", "Patient"]
    patient_id = type_and_id(locations[1])[1]

    read_observation = api.get(location_url(api.base, locations[0]))
    assert read_observation.status_code == 200, read_observation.text
    stored = Observation.model_validate(read_observation.json())
    assert stored.subject.reference == f"Patient/{patient_id}"
    assert stored.valueQuantity.value == 68.5 and stored.valueQuantity.code == "kg"

    read_patient = api.get(location_url(api.base, locations[1]))
    assert read_patient.status_code == 200, read_patient.text
    assert Patient.model_validate(read_patient.json()).name[0].family == family


def test_paging_with_sort(api: FhirApi):
    patient_id = create(api, patient_model(unique("Paged"), unique("MRN-")))["id"]
    batch = Bundle(
        type="batch",
        entry=[
            BundleEntry(
                resource=Observation(
                    status="final",
                    code=CodeableConcept(coding=[Coding(system=LOINC, code="8310-5")]),
                    subject=Reference(reference=f"Patient/{patient_id}"),
                    effectiveDateTime=datetime.datetime(2024, 1, 1, 8, 0, tzinfo=datetime.timezone.utc)
                    + datetime.timedelta(days=day),
                    valueQuantity=Quantity(value=36 + day / 10, system="http://unitsofmeasure.org", code="Cel"),
                ),
                request=BundleEntryRequest(method="POST", url="Observation"),
            )
            # created out of date order, so that the sort has something to do
            for day in (7, 2, 12, 0, 9, 14, 4, 1, 11, 5, 13, 3, 8, 10, 6)
        ],
    )
    resp = api.post("", body(batch))
    assert resp.status_code == 200, resp.text
    response = Bundle.model_validate(resp.json())
    assert response.type == "batch-response"
    assert all(e.response.status.startswith("201") for e in response.entry), resp.text
    created = {type_and_id(e.response.location)[1] for e in response.entry}
    assert len(created) == 15

    pages, entries = api.search_all(f"Observation?subject=Patient/{patient_id}&_count=5&_sort=date")
    for page in pages:
        Bundle.model_validate(page)
    assert [len(page.get("entry", [])) for page in pages] == [5, 5, 5]
    ids = [entry["resource"]["id"] for entry in entries]
    assert len(ids) == len(set(ids)), f"a resource came twice: {ids}"
    assert set(ids) == created
    dates = [entry["resource"]["effectiveDateTime"] for entry in entries]
    assert dates == sorted(dates), "_sort=date did not sort across pages"


def test_transaction_is_refused_whole(api: FhirApi):
    mrn = unique("MRN-")
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": body_dict(patient_model(unique("Atomic"), mrn)),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    outcome = assert_operation_outcome(api.post("", transaction), 400)
    assert issue_names(outcome, "status"), outcome
    found = api.get("Patient", params={"identifier": f"{MRN_SYSTEM}|{mrn}"}).json()
    assert not found.get("entry"), f"the valid part of a refused transaction was written: {found}"


def test_batch_reports_each_entry(api: FhirApi):
    mrn = unique("MRN-")
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": body_dict(patient_model(unique("Batch"), mrn)), "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "birthDate": "1980-13-45"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": f"Patient?identifier={MRN_SYSTEM}|{mrn}"}},
        ],
    }
    resp = api.post("", batch)
    assert resp.status_code == 200, resp.text
    response = Bundle.model_validate(resp.json())
    assert response.type == "batch-response"
    assert [e.response.status.split()[0] for e in response.entry] == ["201", "400", "200"]
    outcome = response.entry[1].response.outcome
    assert outcome is not None and outcome.get_resource_type() == "OperationOutcome"
    assert issue_names(outcome.model_dump(mode="json"), "birthDate"), outcome
    found = response.entry[2].resource
    assert found.get_resource_type() == "Bundle" and found.type == "searchset"
    assert [e.resource.id for e in found.entry] == [type_and_id(response.entry[0].response.location)[1]]


@pytest.mark.parametrize(
    "decimal",
    [
        # from the Synthea data (Observation.component.valueQuantity.value, mm[Hg])
        "95.50269737015817",
        # FHIR R4 datatypes, decimal: precision is significant, 72.50 is not the same as 72.5
        "72.50",
    ],
    ids=["17-significant-digits", "trailing-zero"],
)
def test_decimal_values_are_returned_as_sent(api: FhirApi, decimal: str):
    observation = (
        '{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"%s","code":"8867-4"}]},'
        '"valueQuantity":{"value":%s,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}'
    ) % (LOINC, decimal)
    created = api.post("Observation", observation)
    assert created.status_code == 201, created.text
    read = api.get(f"Observation/{created.json()['id']}")
    assert read.status_code == 200, read.text
    returned = re.search(r'"valueQuantity"\s*:\s*\{[^}]*"value"\s*:\s*([-+0-9.eE]+)', read.text)
    assert returned is not None, read.text
    assert returned.group(1) == decimal, f"sent value {decimal}, read back {returned.group(1)}"


@pytest.mark.parametrize(
    "resource, element",
    [
        ({"resourceType": "Patient", "birthDate": "1980-13-45"}, "birthDate"),
        ({"resourceType": "Patient", "gender": "unknown-to-fhir"}, "gender"),
        ({"resourceType": "Patient", "active": "yes"}, "active"),
        ({"resourceType": "Patient", "favouriteColour": "blue"}, "favouriteColour"),
    ],
    ids=["bad-date", "bad-code", "bad-type", "unknown-element"],
)
def test_invalid_resource_is_refused_with_operation_outcome(api: FhirApi, resource, element):
    mrn = unique("MRN-")
    resource = dict(resource, identifier=[{"system": MRN_SYSTEM, "value": mrn}])
    outcome = assert_operation_outcome(api.post("Patient", resource), 400)
    assert issue_names(outcome, element), f"no issue names {element}: {outcome}"
    # refused whole: nothing was written
    found = api.get("Patient", params={"identifier": f"{MRN_SYSTEM}|{mrn}"}).json()
    assert not found.get("entry"), found


def test_unauthenticated_requests_get_401_operation_outcome(anonymous_api: FhirApi):
    assert_operation_outcome(anonymous_api.get("Patient"), 401)
    assert_operation_outcome(anonymous_api.post("Patient", {"resourceType": "Patient"}), 401)
    wrong = FhirApi(anonymous_api.base, "vdy_0000000000000000_not-a-real-token")
    assert_operation_outcome(wrong.get("Patient"), 401)


def test_unknown_resource_gets_404_operation_outcome(api: FhirApi):
    outcome = assert_operation_outcome(api.get(f"Patient/{uuid.uuid4()}"), 404)
    assert OperationOutcome.model_validate(outcome).issue[0].code == "not-found"


# --- Synthea ---------------------------------------------------------------------------------
# The chosen bundle has Patient, Organization, Practitioner, Encounter, Condition,
# MedicationRequest, Claim, ExplanationOfBenefit, Observation, Procedure, Immunization, Goal,
# CarePlan and DiagnosticReport resources. R4B changed none of the elements Synthea uses in them,
# and the R4B models accept every one of them, so all are validated with the R4B models: no type
# needs fhirclient's R4 models as a fallback.

@pytest.fixture(scope="module")
def synthea(api: FhirApi):
    """One Synthea transaction Bundle posted to /fhir: (request bundle, response bundle)."""
    if not SYNTHEA_DIR.is_dir():
        pytest.fail(f"Synthea test data is missing: {SYNTHEA_DIR} does not exist", pytrace=False)
    path = SYNTHEA_DIR / SYNTHEA_BUNDLE
    if not path.is_file():
        pytest.fail(f"Synthea test data is missing: {path} does not exist", pytrace=False)
    request = json.loads(path.read_text())
    resp = api.post("", request)
    assert resp.status_code == 200, f"POST {SYNTHEA_BUNDLE}: {resp.status_code} {resp.text[:2000]}"
    response = resp.json()
    Bundle.model_validate(response)
    assert response["type"] == "transaction-response"
    assert len(response["entry"]) == len(request["entry"])
    return request, response


def synthea_observations(api: FhirApi, synthea) -> tuple[str, dict[str, dict], list[dict]]:
    """(patient id, {id: Observation as sent}, [Observations found by Observation?patient=])."""
    request, response = synthea
    ids = [type_and_id(entry["response"]["location"]) for entry in response["entry"]]
    [patient_id] = [id_ for type_, id_ in ids if type_ == "Patient"]
    sent = {
        id_: entry["resource"]
        for (type_, id_), entry in zip(ids, request["entry"])
        if type_ == "Observation"
    }
    pages, entries = api.search_all(f"Observation?patient={patient_id}&_count=1000")
    for page in pages:
        assert page["type"] == "searchset"
        Bundle.model_validate(page)  # the page and every Observation in it
    return patient_id, sent, [entry["resource"] for entry in entries]


def test_synthea_observations_validate(api: FhirApi, synthea):
    patient_id, sent, found = synthea_observations(api, synthea)
    assert sorted(o["id"] for o in found) == sorted(sent), "the search did not find exactly the bundle's Observations"
    for resource in found:
        assert resource["resourceType"] == "Observation"
        assert resource["subject"]["reference"] == f"Patient/{patient_id}"
        r4b_validate(resource)


def test_synthea_observations_keep_their_values(api: FhirApi, synthea):
    _, sent, found = synthea_observations(api, synthea)
    changed = []
    for resource in found:
        for element in ("code", "effectiveDateTime", "valueQuantity", "valueCodeableConcept", "component"):
            before, after = sent[resource["id"]].get(element), resource.get(element)
            if before != after:
                changed.append(f"Observation/{resource['id']}.{element}: sent {json.dumps(before)}, got {json.dumps(after)}")
    assert not changed, f"{len(changed)} elements changed, e.g.:\n" + "\n".join(changed[:3])


def test_synthea_resources_read_back_and_validate(api: FhirApi, synthea):
    request, response = synthea
    for sent, answer in zip(request["entry"], response["entry"]):
        location = answer["response"]["location"]
        resource_type, _ = type_and_id(location)
        assert resource_type == sent["resource"]["resourceType"], location
        resp = api.get(location_url(api.base, location))
        assert resp.status_code == 200, f"GET {location}: {resp.status_code} {resp.text}"
        resource = resp.json()
        # no urn:uuid reference may survive the transaction
        assert "urn:uuid:" not in json.dumps(resource), f"unresolved reference in {location}"
        r4b_validate(resource)
