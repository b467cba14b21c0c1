"""Every endpoint of the broker and the connector, and a hypothesis strategy for hostile requests to them.

An endpoint names its service, method, path (with `{param}` holes), the credential it wants and a
valid body to mutate. `requests(targets)` draws one endpoint and breaks one or more of: a path
parameter, the credential, a header, the query string, the body.
"""

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from hypothesis import strategies as st

from tests.fuzz.values import BAD_IDS, CHINESE, LONE_SURROGATES, Body, dumps, hostile, mutated, nested

Service = Literal["broker", "provider", "consumer"]
Credential = Literal["none", "api key", "access token", "broker token", "data token"]
DSP_CONTEXT = ["https://w3id.org/dspace/2025/1/context.jsonld"]


@dataclass
class Targets:
    """What the fuzzer aims at: URLs, real ids of a finished negotiation and a started transfer, credentials."""

    urls: dict[Service, str]
    api_keys: dict[str, str]
    ids: dict[str, str]  # asset, policy, offer, agreement, negotiation pids, transfer pids, participants
    credentials: Callable[[Credential, Service], str]  # a currently valid credential of a kind for a service
    sign_assertion: Callable[[dict[str, Any]], str]  # a JWT signed by the consumer's key, claims as given


@dataclass(frozen=True)
class Endpoint:
    service: Service
    method: str
    path: str
    credential: Credential
    seed: Callable[[Targets], dict[str, Any]] | None = None  # a valid body, for methods that take one
    query: dict[str, list[str]] = field(default_factory=dict)  # parameter -> plausible values


@dataclass(frozen=True)
class FuzzRequest:
    endpoint: Endpoint
    method: str
    url: str
    headers: dict[str, str | bytes]
    content: bytes
    faults: tuple[str, ...]

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        return f"{self.method} {self.url[:300]} {self.faults} body={self.content[:300]!r}"


def _dsp(kind: str, **fields: Any) -> Callable[[Targets], dict[str, Any]]:
    def seed(t: Targets) -> dict[str, Any]:
        values = {k: (t.ids[v[1:]] if isinstance(v, str) and v.startswith("$") else v) for k, v in fields.items()}
        return {"@context": DSP_CONTEXT, "@type": kind, **values}

    return seed


CALLBACK = "http://127.0.0.1:9/callback"
PROVIDER = "provider"
OFFER_REF = {"@id": "offer", "target": "asset"}


def _offer_ref(t: Targets) -> dict[str, Any]:
    return {"@id": t.ids["offer"], "target": t.ids["asset"]}


def _with_offer(kind: str, **fields: Any) -> Callable[[Targets], dict[str, Any]]:
    base = _dsp(kind, **fields)
    return lambda t: base(t) | {"offer": _offer_ref(t)}


N_PIDS = {"providerPid": "$provider_negotiation", "consumerPid": "$consumer_negotiation"}
T_PIDS = {"providerPid": "$provider_transfer", "consumerPid": "$consumer_transfer"}

DSP: list[Endpoint] = [
    Endpoint(
        "provider",
        "POST",
        "/dsp/catalog/request",
        "access token",
        _dsp("CatalogRequestMessage"),
        {"offset": ["0", "1"], "limit": ["1", "100"]},
    ),
    Endpoint("provider", "GET", "/dsp/catalog/datasets/{asset}", "access token"),
    Endpoint("provider", "GET", "/dsp/negotiations/{provider_negotiation}", "access token"),
    Endpoint("provider", "GET", "/dsp/transfers/{provider_transfer}", "access token"),
    Endpoint(
        "provider",
        "POST",
        "/dsp/negotiations/request",
        "access token",
        _with_offer("ContractRequestMessage", consumerPid="urn:uuid:fuzz", callbackAddress=CALLBACK),
    ),
    Endpoint(
        "provider",
        "POST",
        "/dsp/negotiations/{provider_negotiation}/request",
        "access token",
        _with_offer("ContractRequestMessage", callbackAddress=CALLBACK, **N_PIDS),
    ),
    Endpoint(
        "consumer",
        "POST",
        "/dsp/negotiations/offers",
        "access token",
        _with_offer("ContractOfferMessage", providerPid="urn:uuid:fuzz", callbackAddress=CALLBACK),
    ),
    Endpoint(
        "consumer",
        "POST",
        "/dsp/negotiations/{consumer_negotiation}/offers",
        "access token",
        _with_offer("ContractOfferMessage", callbackAddress=CALLBACK, **N_PIDS),
    ),
    Endpoint(
        "consumer",
        "POST",
        "/dsp/negotiations/{consumer_negotiation}/agreement",
        "access token",
        _dsp("ContractAgreementMessage", agreement={"@id": "x", "@type": "Agreement"}, **N_PIDS),
    ),
    Endpoint(
        "provider",
        "POST",
        "/dsp/negotiations/{provider_negotiation}/agreement/verification",
        "access token",
        _dsp("ContractAgreementVerificationMessage", **N_PIDS),
    ),
    Endpoint(
        "provider",
        "POST",
        "/dsp/negotiations/{provider_negotiation}/events",
        "access token",
        _dsp("ContractNegotiationEventMessage", eventType="ACCEPTED", **N_PIDS),
    ),
    Endpoint(
        "consumer",
        "POST",
        "/dsp/negotiations/{consumer_negotiation}/events",
        "access token",
        _dsp("ContractNegotiationEventMessage", eventType="FINALIZED", **N_PIDS),
    ),
    Endpoint(
        "provider",
        "POST",
        "/dsp/negotiations/{provider_negotiation}/termination",
        "access token",
        _dsp("ContractNegotiationTerminationMessage", code="x", reason=["fuzz"], **N_PIDS),
    ),
    Endpoint(
        "provider",
        "POST",
        "/dsp/transfers/request",
        "access token",
        _dsp(
            "TransferRequestMessage",
            consumerPid="urn:uuid:fuzz",
            agreementId="$agreement",
            format="HttpData-PULL",
            callbackAddress=CALLBACK,
        ),
    ),
    Endpoint(
        "consumer",
        "POST",
        "/dsp/transfers/{consumer_transfer}/start",
        "access token",
        _dsp("TransferStartMessage", dataAddress={"endpoint": "http://127.0.0.1:9/data"}, **T_PIDS),
    ),
    Endpoint(
        "provider",
        "POST",
        "/dsp/transfers/{provider_transfer}/start",
        "access token",
        _dsp("TransferStartMessage", **T_PIDS),
    ),
    Endpoint(
        "provider",
        "POST",
        "/dsp/transfers/{provider_transfer}/suspension",
        "access token",
        _dsp("TransferSuspensionMessage", code="x", reason=["fuzz"], **T_PIDS),
    ),
    Endpoint(
        "consumer",
        "POST",
        "/dsp/transfers/{consumer_transfer}/completion",
        "access token",
        _dsp("TransferCompletionMessage", **T_PIDS),
    ),
    Endpoint(
        "provider",
        "POST",
        "/dsp/transfers/{provider_transfer}/termination",
        "access token",
        _dsp("TransferTerminationMessage", code="x", reason=["fuzz"], **T_PIDS),
    ),
    Endpoint("provider", "GET", "/.well-known/dspace-version", "none"),
]

DATA_PLANE: list[Endpoint] = [
    Endpoint(
        "provider",
        "GET",
        "/data/{provider_transfer}",
        "data token",
        query={
            "purpose": ["research", CHINESE],
            "event": ["x"],
            "query": ['{"country": "DE"}', "[", "{}"],
            "format": ["csv", "parquet", "jsonl", "json", "xlsx", ""],
        },
    ),
    Endpoint("provider", "POST", "/data/{provider_transfer}/token", "access token"),
    Endpoint(
        "provider",
        "POST",
        "/data/{provider_transfer}/deletion",
        "access token",
        lambda t: {"copy": "c1", "deleted_at": "2026-01-01T00:00:00Z", "due": "2026-01-01T00:00:00Z"},
    ),
    Endpoint(
        "provider",
        "POST",
        "/data/{provider_transfer}/query",
        "data token",
        lambda t: {"sql": "SELECT country, count(*) FROM data GROUP BY country", "epsilon": 0.5},
    ),
    Endpoint("consumer", "POST", "/push/{consumer_transfer}", "data token", lambda t: {"name": "Ada"}),
]


def _api(
    service: Service,
    method: str,
    path: str,
    seed: Callable[[Targets], dict[str, Any]] | None = None,
    query: dict[str, list[str]] | None = None,
) -> Endpoint:
    return Endpoint(service, method, "/api" + path, "api key", seed, query or {})


def _http_source(t: Targets) -> dict[str, Any]:
    """A backend that answers 404: the spec is validated, then the backend read (a 400)."""
    return {"kind": "http", "url": t.urls["broker"] + "/no-such.csv", "format": "csv", "headers": {"X-Key": "k"}}


def _sql_source(t: Targets) -> dict[str, Any]:
    """The harness's CSV file named as a SQLite database: validated, then refused as no database (a 400)."""
    return {"kind": "sql", "url": "sqlite:///" + t.ids["data_file"], "table": "people"}


def _negotiation_start(t: Targets) -> dict[str, Any]:
    return {
        "provider_id": t.ids["provider"],
        "provider_url": t.urls["provider"] + "/dsp",
        "offer_id": t.ids["offer"],
        "target": t.ids["asset"],
    }


WAIT = {"wait_for": ["FINALIZED", "X,Y"], "timeout": ["0", "0.01", "nan", "-1", "x"]}
MANAGEMENT: list[Endpoint] = [
    _api("provider", "POST", "/assets", lambda t: {"title": "fuzz", "format": "csv", "path": t.ids["data_file"]}),
    _api("provider", "POST", "/assets", lambda t: {"title": "fuzz", "format": "csv", "source": _http_source(t)}),
    _api("provider", "POST", "/assets", lambda t: {"title": "fuzz", "format": "jsonl", "source": _sql_source(t)}),
    _api("provider", "GET", "/assets"),
    _api("provider", "GET", "/assets/{asset}"),
    _api("provider", "PATCH", "/assets/{asset}", lambda t: {"state": "released", "title": "People"}),
    _api(
        "provider",
        "POST",
        "/policies",
        lambda t: {"title": "p", "patterns": [{"name": "purpose", "params": {"purposes": ["research"]}}]},
    ),
    _api("provider", "GET", "/policies"),
    _api("provider", "GET", "/policies/{policy}"),
    _api("provider", "POST", "/offers", lambda t: {"asset_id": t.ids["asset"], "usage_policy_id": t.ids["policy"]}),
    _api("provider", "GET", "/offers"),
    _api("provider", "GET", "/offers/{offer}"),
    _api(
        "consumer",
        "POST",
        "/catalog/request",
        lambda t: {"provider_url": t.urls["provider"] + "/dsp", "provider_id": t.ids["provider"]},
    ),
    _api("consumer", "POST", "/negotiations", _negotiation_start),
    _api("consumer", "GET", "/negotiations"),
    _api(
        "provider",
        "POST",
        "/negotiations/offers",
        lambda t: {
            "consumer_id": t.ids["consumer"],
            "consumer_url": t.urls["consumer"] + "/dsp",
            "offer_id": t.ids["offer"],
        },
    ),
    _api("consumer", "POST", "/negotiations/{consumer_negotiation}/accept"),
    _api("consumer", "POST", "/negotiations/{consumer_negotiation}/counter", lambda t: {"terms": {"uses": 3}}),
    _api("provider", "POST", "/negotiations/{provider_negotiation}/terminate", lambda t: {"reason": "fuzz"}),
    _api("consumer", "GET", "/negotiations/{consumer_negotiation}/timeline"),
    _api("provider", "GET", "/transfers/{provider_transfer}/timeline"),
    _api("consumer", "GET", "/negotiations/{consumer_negotiation}", query=WAIT),
    _api("consumer", "GET", "/agreements"),
    _api("consumer", "GET", "/agreements/{agreement}"),
    _api("consumer", "POST", "/agreements/{agreement}/query", lambda t: {"sql": "SELECT count(*) FROM data"}),
    _api("consumer", "POST", "/transfers", lambda t: {"agreement_id": t.ids["agreement"]}),
    _api("consumer", "GET", "/transfers"),
    _api(
        "consumer",
        "GET",
        "/transfers/{consumer_transfer}/data",
        query={"purpose": ["research"], "event": ["x"], "query": ["{}", "[[[["], "format": ["parquet", "xlsx"]},
    ),
    _api("consumer", "POST", "/transfers/{consumer_transfer}/suspend", lambda t: {"reason": "fuzz"}),
    _api("consumer", "POST", "/transfers/{consumer_transfer}/resume"),
    _api("consumer", "POST", "/transfers/{consumer_transfer}/complete", lambda t: {"reason": "fuzz"}),
    _api("provider", "POST", "/transfers/{provider_transfer}/terminate", lambda t: {"reason": "fuzz"}),
    _api("consumer", "GET", "/transfers/{consumer_transfer}", query=WAIT),
    _api("consumer", "PUT", "/registration", lambda t: {"title": "Consumer", "description": CHINESE}),
    _api("consumer", "DELETE", "/registration"),
    _api("provider", "GET", "/usage"),
    _api("provider", "GET", "/usage/cross-border"),
    _api(
        "provider",
        "POST",
        "/explain/offer",
        lambda t: {"participant_id": t.ids["consumer"], "offer_id": t.ids["offer"]},
    ),
    _api(
        "provider",
        "POST",
        "/explain/use",
        lambda t: {"agreement_id": t.ids["agreement"], "purpose": "research", "query": {"country": "DE"}},
    ),
    _api("provider", "GET", "/copies"),
    _api("consumer", "GET", "/copies"),
    _api("provider", "GET", "/audit", query={"limit": ["1", "-5", "x", "1e400", "²"], "subject": ["x", CHINESE]}),
    _api("provider", "GET", "/audit/verify"),
]


def _registration(t: Targets) -> dict[str, Any]:
    offering = {
        "id": "o1",
        "title": "数据 People",
        "description": CHINESE,
        "keywords": ["health", "医疗"],
        "format": "csv",
        "theme": "health",
        "region": "EU-DE",
        "language": "zh",
    }
    return {"endpoint": t.urls["consumer"] + "/dsp", "title": "Consumer", "offerings": [offering]}


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(dumps(value).encode()).decode().rstrip("=")


CURSORS = [
    _cursor([1.0, "x"]),
    _cursor(["a"]),
    _cursor(json.loads("[" * 60 + "]" * 60)),
    base64.urlsafe_b64encode(nested(5000, "array").encode()).decode(),
    _cursor({"a": 1}),
    _cursor([True, None]),
    "!!!",
    "",
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    _cursor([float("nan"), "x"]),
    _cursor(["\ud800", 1]),
]
SEARCH_QUERY = {
    "q": ["data", CHINESE, "医疗", '"', "*", "NEAR(", "x" * 600, "AND OR NOT"],
    "sort": ["newest", "title", "relevance", "x"],
    "limit": ["1", "0", "100000", "-1", "x", "²", "1e3"],
    "offset": ["0", "10001", "x"],
    "cursor": CURSORS,
    "facets": ["false", "true", "x"],
    "keyword": ["health", CHINESE],
    "format": ["csv"],
    "theme": ["health"],
    "region": ["EU-DE"],
    "liveness": ["live", "x"],
}
BROKER: list[Endpoint] = [
    Endpoint("broker", "POST", "/token", "none"),
    Endpoint("broker", "GET", "/.well-known/jwks.json", "none"),
    Endpoint("broker", "GET", "/participant-status", "none"),
    Endpoint("broker", "GET", "/participants/{consumer}", "none"),
    Endpoint("broker", "PUT", "/registrations/{consumer}", "broker token", _registration),
    Endpoint("broker", "GET", "/registrations/{consumer}", "none"),
    Endpoint("broker", "DELETE", "/registrations/{consumer}", "broker token"),
    Endpoint("broker", "GET", "/search", "none", query=SEARCH_QUERY),
    Endpoint("broker", "GET", "/products/{product}", "none"),
    Endpoint("broker", "GET", "/products/{product}/certificate", "none"),
    Endpoint("broker", "GET", "/changes", "none", query={"since": ["0", "x", "9" * 30], "limit": ["1", "0", "x"]}),
    Endpoint("broker", "GET", "/catalog", "none", query={"after": ["0", "-1", "²"], "limit": ["1", "5001"]}),
    Endpoint("broker", "GET", "/health", "none"),
    Endpoint("broker", "GET", "/status", "none", query={"format": ["html", "json", "x"]}),
]
HEALTH = [Endpoint(s, "GET", "/health", "none") for s in ("provider", "consumer")]
ENDPOINTS: list[Endpoint] = DSP + DATA_PLANE + MANAGEMENT + BROKER + HEALTH


# -- drawing a request -----------------------------------------------------------------------------------

BROKEN_TOKENS = [
    "",
    "garbage",
    "e30.e30.",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "x" * 100_000,
    "a.b.c.d",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1cm46dGVzc2VyYTpjb25zdW1lciJ9.c2ln",
]


@st.composite
def _credential(
    draw: st.DrawFn, endpoint: Endpoint, targets: Targets, broken: bool
) -> tuple[dict[str, str | bytes], str | None]:
    """The Authorization header (valid, or broken or missing) and the fault, if any."""
    valid = "" if endpoint.credential == "none" else targets.credentials(endpoint.credential, endpoint.service)
    kinds = ["broken", "missing", "scheme", "bytes", "other kind", "forged"]
    choice = draw(st.sampled_from(kinds if broken else ["valid"]))
    if choice == "valid" or (endpoint.credential == "none" and choice != "broken"):
        return ({"Authorization": f"Bearer {valid}"} if valid else {}), None
    if choice == "missing":
        return {}, "auth: missing"
    if choice == "scheme":
        return {
            "Authorization": draw(st.sampled_from(["Basic eA==", f"bearer  {valid}".strip(), "Bearer", valid or "x"]))
        }, "auth: wrong scheme"
    if choice == "bytes":
        return {"Authorization": b"Bearer \xff\xfe\x80"}, "auth: not latin-1"
    if choice == "other kind":
        kinds: list[Credential] = ["api key", "access token", "broker token", "data token"]
        other = draw(st.sampled_from([k for k in kinds if k != endpoint.credential]))
        return {"Authorization": f"Bearer {targets.credentials(other, endpoint.service)}"}, "auth: another credential"
    if choice == "forged":
        claims = {
            "iss": targets.urls["broker"],
            "sub": targets.ids["consumer"],
            "aud": targets.ids["provider"],
            "exp": draw(st.sampled_from([0, 2**40, -1])),
            "iat": 0,
        }
        return {"Authorization": f"Bearer {targets.sign_assertion(claims)}"}, "auth: forged token"
    return {"Authorization": f"Bearer {draw(st.sampled_from(BROKEN_TOKENS))}".strip()}, "auth: broken token"


RAW_ESCAPES = {"%ED%A0%80", "%FF", "..", "x%2Fy"}  # sent as they are: invalid UTF-8, an encoded slash


@st.composite
def _path(draw: st.DrawFn, endpoint: Endpoint, targets: Targets, broken: bool) -> tuple[str, str | None]:
    path, fault = endpoint.path, None
    while "{" in path:
        name = path[path.index("{") + 1 : path.index("}")]
        if broken:
            value = draw(
                st.one_of(st.sampled_from([*BAD_IDS, "%ED%A0%80", "%FF", "..", "x%2Fy"]), st.text(max_size=30))
            )
            encoded = value if value in RAW_ESCAPES else quote(value.encode("utf-8", "surrogatepass"))
            fault = "path: bad id"
        else:
            encoded = quote(targets.ids.get(name, name), safe="")
        path = path.replace("{" + name + "}", encoded, 1)
    return path, fault


@st.composite
def _query(draw: st.DrawFn, endpoint: Endpoint, broken: bool) -> tuple[str, str | None]:
    pairs: list[tuple[str, str]] = []
    names = sorted(endpoint.query)
    for name in draw(st.lists(st.sampled_from(names), max_size=4)) if names else []:
        pairs.append((name, draw(st.sampled_from(endpoint.query[name]))))
    fault = "query: plausible" if pairs else None
    if broken:
        name = draw(st.sampled_from([*names, "x"]))
        value = draw(
            st.one_of(st.text(max_size=50), st.sampled_from(["%ED%A0%80", "%FF", "x" * 10_000, *LONE_SURROGATES]))
        )
        pairs.append((name, value))
        fault = "query: hostile value"
    encoded = "&".join(
        f"{quote(n)}={v if v in RAW_ESCAPES else quote(v.encode('utf-8', 'surrogatepass'))}" for n, v in pairs
    )
    return ("?" + encoded if encoded else ""), fault


CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "application/json; charset=latin-1",
    "\x7f",
    "",
]


RANGES = ["bytes=0-0", "bytes=-0", "bytes=--1", "bytes=9-3", "bytes=" + "9" * 5000 + "-", "bytes=0-1," * 200, "x=1-"]
IF_RANGES: list[str | bytes] = ['"x"', 'W/"x"', "Tue, 01 Dec 2026 10:00:00 GMT", b"\xff"]


@st.composite
def _headers(draw: st.DrawFn) -> tuple[dict[str, str | bytes], str | None]:
    choice = draw(st.sampled_from(["content-type", "if-none-match", "accept", "range", "odd", "long"]))
    if choice == "content-type":
        return {"Content-Type": draw(st.sampled_from(CONTENT_TYPES))}, "header: content type"
    if choice == "if-none-match":
        return {"If-None-Match": draw(st.sampled_from(['"x"', "*", "x" * 8000, '""']))}, "header: if-none-match"
    if choice == "accept":
        return {"Accept": draw(st.sampled_from(["text/html", "*/*;q=x", "application/xml"]))}, "header: accept"
    if choice == "range":
        return {"Range": draw(st.sampled_from(RANGES)), "If-Range": draw(st.sampled_from(IF_RANGES))}, "header: range"
    if choice == "odd":
        return {"X-Forwarded-For": b"\xff", "Tessera-Delete-After": "never", "Tessera-Labels": "{"}, "header: odd"
    return {"X-Long": "x" * 30_000}, "header: very long"


def _token_form(targets: Targets, broken: bool) -> st.SearchStrategy[Body]:
    """Form bodies for `/token`: client assertions with hostile claims, broken forms."""
    token_url = targets.urls["broker"] + "/token"
    me = targets.ids["consumer"]

    @st.composite
    def form(draw: st.DrawFn) -> Body:
        claims: dict[str, Any] = {"iss": me, "sub": me, "aud": token_url, "exp": 2**31 - 1, "iat": 0, "jti": "j"}
        fault = "valid"
        if broken and draw(st.booleans()):
            name = draw(st.sampled_from(["iss", "sub", "aud", "exp", "iat", "jti", "nbf"]))
            claims[name] = draw(hostile)
            fault = "token: hostile claim"
        if broken and draw(st.integers(0, 3)) == 0:
            assertion = draw(st.sampled_from(BROKEN_TOKENS))
            fault = "token: broken assertion"
        else:
            assertion = targets.sign_assertion(claims)
        fields = {
            "grant_type": "client_credentials",
            "client_id": me,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "audience": draw(st.sampled_from([targets.ids["provider"], *(BAD_IDS if broken else [])])),
        }
        if broken and draw(st.integers(0, 3)) == 0:
            fields[draw(st.sampled_from(sorted(fields)))] = draw(st.text(max_size=40))
            fault = "token: hostile form field"
        raw = "&".join(f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in fields.items())
        if broken and draw(st.integers(0, 4)) == 0:
            raw = draw(st.sampled_from(["a=1&a=2", "%ff=1", "&&&", "x" * 20_000, "=" * 30]))
            fault = "token: broken form"
        return Body(raw.encode(), fault)

    return form()


ASPECTS = ["body"] * 5 + ["credential"] * 2 + ["path", "query", "header", "method", "none"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"]


@st.composite
def requests(draw: st.DrawFn, targets: Targets) -> FuzzRequest:
    """One request to one endpoint, with one aspect broken (mostly the body) and the rest valid."""
    endpoint = draw(st.sampled_from(ENDPOINTS))
    broken = draw(st.sampled_from(ASPECTS))
    path, path_fault = draw(_path(endpoint, targets, broken == "path"))
    query, query_fault = draw(_query(endpoint, broken == "query"))
    headers, auth_fault = draw(_credential(endpoint, targets, broken == "credential"))
    extra, header_fault = draw(_headers()) if broken == "header" else ({}, None)
    body = draw(_body(endpoint, targets, broken == "body"))
    if body is not None:
        headers["Content-Type"] = (
            "application/x-www-form-urlencoded" if endpoint.path == "/token" else "application/json"
        )
    headers |= extra
    faults = [f for f in (path_fault, query_fault, auth_fault, header_fault) if f]
    if body is not None and body.fault != "valid":
        faults.append(body.fault)
    method = endpoint.method
    if broken == "method":
        method = draw(st.sampled_from([m for m in METHODS if m != endpoint.method]))
        faults.append("method: another method")
    url = targets.urls[endpoint.service] + path + query
    return FuzzRequest(endpoint, method, url, headers, body.content if body else b"", tuple(faults))


@st.composite
def _body(draw: st.DrawFn, endpoint: Endpoint, targets: Targets, broken: bool) -> Body | None:
    if endpoint.path == "/token":
        return draw(_token_form(targets, broken))
    if endpoint.seed is not None:
        seed = endpoint.seed(targets)
        return draw(mutated(seed)) if broken else Body(dumps(seed).encode(), "valid")
    if broken and endpoint.method != "GET":
        return draw(mutated({"x": 1}))
    return None
