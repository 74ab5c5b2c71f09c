"""Fixtures and helpers for the interoperability tests.

These tests drive the real `vaidya` binary over HTTP with FHIR client libraries written by
others (fhirclient, the SMART on FHIR Python client, and fhir.resources' pydantic models), to
check that what Vaidya speaks is FHIR R4 as other software understands it.

One server is started per test session, in a fresh temporary data directory. The binary is
$VAIDYA_BIN, or target/release/vaidya of this checkout when that is unset.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from fhir.resources.R4B import get_fhir_model_class
from fhirclient import client as fhirclient_client

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNTHEA_DIR = REPO_ROOT.parent / "shared" / "data" / "synthea-r4"

FHIR_JSON = "application/fhir+json"
MRN_SYSTEM = "urn:oid:2.16.356.1.vaidya-interop.mrn"  # identifier system of the test patients
UHID_SYSTEM = "https://vaidya.dev/fhir/sid/uhid"  # the UHID Vaidya issues to every new Patient
LOINC = "http://loinc.org"
STARTUP_TIMEOUT_S = 60
REQUEST_TIMEOUT_S = 60
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
LISTENING_RE = re.compile(
    r"Vaidya is listening on (?P<origin>http://127\.0\.0\.1:\d+) \(FHIR API at (?P<path>/\S+)\)"
)


def vaidya_binary() -> Path:
    """The binary under test: $VAIDYA_BIN, else target/release/vaidya of this checkout."""
    configured = os.environ.get("VAIDYA_BIN")
    binary = Path(configured) if configured else REPO_ROOT / "target" / "release" / "vaidya"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        how = "$VAIDYA_BIN" if configured else "the default (VAIDYA_BIN is unset)"
        # Not a skip: without the binary nothing here is tested, and that must not pass quietly.
        pytest.exit(
            f"error: the vaidya binary was not found at {binary} ({how}). Build it with "
            "`cargo build --release --bin vaidya`, or point VAIDYA_BIN at a built binary.",
            returncode=1,
        )
    return binary


class VaidyaServer:
    """A `vaidya serve` process on a free loopback port, with its own data directory."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path):
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.stdout_lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.origin = ""
        self.base = ""

    def start(self) -> None:
        self._stderr = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--data", str(self.data_dir), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        # Keep draining stdout for the whole life of the process, so it never blocks on a full pipe.
        threading.Thread(target=self._drain_stdout, args=(lines,), daemon=True).start()

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail_start(f"did not announce its address within {STARTUP_TIMEOUT_S}s")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._fail_start(f"exited with status {self.proc.wait()} before listening")
            match = LISTENING_RE.search(line)
            if match:
                self.origin = match["origin"]
                self.base = self.origin + match["path"].rstrip("/")
                return

    def _drain_stdout(self, lines: queue.Queue) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))
            lines.put(line)
        lines.put(None)

    def _fail_start(self, why: str) -> None:
        self.stop()
        pytest.fail(
            f"`vaidya serve` {why}.\n--- stdout ---\n" + "\n".join(self.stdout_lines)
            + "\n--- stderr (tail) ---\n" + self.log_tail(),
            pytrace=False,
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            log = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return ANSI_ESCAPE.sub("", log)[-chars:]

    def token(self, user: str = "admin") -> str:
        """A new bearer token from `vaidya token --data DIR --user USER` (one line on stdout)."""
        done = subprocess.run(
            [str(self.binary), "token", "--data", str(self.data_dir), "--user", user],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"`vaidya token` failed ({done.returncode}): {done.stderr}"
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"`vaidya token` should print one line, printed {done.stdout!r}"
        return lines[0].strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
            self._stderr = None


class FhirApi:
    """Plain HTTP access to the FHIR API with `requests`, relative to the FHIR base URL."""

    def __init__(self, base: str, token: str | None):
        self.base = base
        self.session = requests.Session()
        self.session.headers["Accept"] = FHIR_JSON
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        """An absolute URL for a path relative to the base (absolute URLs pass unchanged)."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base + "/" + path.lstrip("/") if path else self.base

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(self.url(path), timeout=REQUEST_TIMEOUT_S, **kw)

    def post(self, path: str, body, headers: dict | None = None) -> requests.Response:
        return self._send("POST", path, body, headers)

    def put(self, path: str, body, headers: dict | None = None) -> requests.Response:
        return self._send("PUT", path, body, headers)

    def _send(self, method: str, path: str, body, headers: dict | None) -> requests.Response:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return self.session.request(
            method, self.url(path), data=data, timeout=REQUEST_TIMEOUT_S,
            headers={"Content-Type": FHIR_JSON, **(headers or {})},
        )

    def search_all(self, query: str, max_pages: int = 100) -> tuple[list[dict], list[dict]]:
        """Runs a search and follows `next` links; returns (pages, entries)."""
        pages, entries = [], []
        url: str | None = query
        while url:
            assert len(pages) < max_pages, f"more than {max_pages} pages following {query}"
            resp = self.get(url)
            assert resp.status_code == 200, f"GET {url}: {resp.status_code} {resp.text}"
            page = resp.json()
            pages.append(page)
            entries.extend(page.get("entry", []))
            url = next_link(page)
        return pages, entries


def next_link(bundle: dict) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            return link["url"]
    return None


def location_url(base: str, location: str) -> str:
    """A Location header or Bundle.entry.response.location as an absolute URL."""
    return urljoin(base.rstrip("/") + "/", location)


def type_and_id(location: str) -> tuple[str, str]:
    """('Patient', '123') from `.../Patient/123/_history/1` or `Patient/123`."""
    parts = location.split("?")[0].rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-2], parts[-1]


def r4b_validate(resource: dict):
    """Validates a resource (of any type, Bundles with everything inside them) with
    fhir.resources' R4B pydantic models; raises pydantic.ValidationError if it does not conform."""
    assert isinstance(resource, dict) and "resourceType" in resource, f"not a resource: {resource!r}"
    return get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def assert_operation_outcome(resp: requests.Response, status: int) -> dict:
    """Asserts an error response: the status, a FHIR JSON body, and an OperationOutcome that
    validates with the R4B models and has at least one error issue. Returns the JSON."""
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.request.url}: expected {status}, got {resp.status_code}: "
        f"{resp.text[:1000]}"
    )
    assert resp.headers.get("Content-Type", "").startswith(FHIR_JSON), resp.headers
    outcome = resp.json()
    assert outcome.get("resourceType") == "OperationOutcome", outcome
    model = r4b_validate(outcome)
    assert any(issue.severity in ("error", "fatal") for issue in model.issue), outcome
    return outcome


def unique(prefix: str) -> str:
    """A value unique to this test run, for names and identifiers that searches must find."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, shows the tail of the server's log beside the test's own output."""
    report = yield
    server = getattr(item, "funcargs", {}).get("vaidya")
    if report.failed and isinstance(server, VaidyaServer):
        report.sections.append(("vaidya serve log (tail)", server.log_tail()))
    return report


@pytest.fixture(scope="session")
def vaidya(tmp_path_factory) -> VaidyaServer:
    binary = vaidya_binary()
    root = tmp_path_factory.mktemp("vaidya")
    server = VaidyaServer(binary, root / "data", root / "serve.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def token(vaidya: VaidyaServer) -> str:
    """A token of an integration account (role `machine`): the administrator may not read
    patients' records, an integration may read and write them."""
    done = subprocess.run(
        [str(vaidya.binary), "user", "add", "--data", str(vaidya.data_dir), "--name", "integration", "--role", "machine"],
        capture_output=True,
        text=True,
        timeout=REQUEST_TIMEOUT_S,
    )
    assert done.returncode == 0, f"`vaidya user add` failed ({done.returncode}): {done.stderr}"
    return vaidya.token("integration")


@pytest.fixture(scope="session")
def api(vaidya: VaidyaServer, token: str) -> FhirApi:
    """`requests` with the integration account's bearer token."""
    return FhirApi(vaidya.base, token)


@pytest.fixture(scope="session")
def anonymous_api(vaidya: VaidyaServer) -> FhirApi:
    """`requests` without any credentials."""
    return FhirApi(vaidya.base, None)


@pytest.fixture(scope="session")
def smart(vaidya: VaidyaServer, token: str):
    """fhirclient's FHIRServer, sending the integration account's bearer token with every request.

    fhirclient 4.4.0's FHIRServer sends every request through one `requests.Session`
    (`FHIRServer.session`) and adds an Authorization header of its own only when its FHIRAuth can
    sign headers. Its auth is None until it has read the CapabilityStatement, and then the plain
    FHIRAuth (type "none", as Vaidya advertises no SMART OAuth endpoints), which cannot sign; so a
    default header on that session is how the token reaches Vaidya.
    """
    client = fhirclient_client.FHIRClient(
        settings={"app_id": "vaidya-interop", "api_base": vaidya.base}
    )
    client.server.session.headers["Authorization"] = f"Bearer {token}"
    return client.server
