"""Each fault a fuzz run found (or the hardening issue named), pinned as one request and its answer."""

import base64
import json
from urllib.parse import quote

import httpx
import pytest

from tests.fuzz.harness import Harness
from tests.fuzz.values import nested


@pytest.fixture(scope="module")
def http() -> httpx.Client:
    with httpx.Client(timeout=30) as client:
        yield client


def call(
    harness: Harness, http: httpx.Client, service: str, method: str, path: str, **kwargs: object
) -> httpx.Response:
    assert harness.targets is not None
    response = http.request(method, harness.targets.urls[service] + path, **kwargs)  # type: ignore[arg-type]
    assert harness.errors.take() == []
    return response


def api(harness: Harness, service: str) -> dict[str, str]:
    assert harness.targets is not None
    return {"Authorization": f"Bearer {harness.targets.api_keys[service]}"}


@pytest.mark.parametrize("value", ["²", "١٢", "9" * 40, "-1", "1e3"])
def test_a_feed_parameter_that_is_not_ascii_digits_is_a_400(harness: Harness, http: httpx.Client, value: str) -> None:
    for path, name in (("/catalog", "after"), ("/changes", "since"), ("/search", "limit")):
        response = call(harness, http, "broker", "GET", path, params={name: value})
        assert response.status_code == 400, (path, response.text)
        assert name in response.json()["detail"]


def test_a_deeply_nested_search_cursor_is_a_400(harness: Harness, http: httpx.Client) -> None:
    cursor = base64.urlsafe_b64encode(nested(5000, "array").encode()).decode()
    response = call(harness, http, "broker", "GET", "/search", params={"cursor": cursor, "sort": "title"})
    assert response.status_code == 400, response.text
    assert "cursor" in response.json()["detail"]


@pytest.mark.parametrize("values", ['[NaN, "x"]', '["\\ud800", "x"]', '[1e400, "x"]'])
def test_a_search_cursor_of_no_strict_json_is_a_400(harness: Harness, http: httpx.Client, values: str) -> None:
    cursor = base64.urlsafe_b64encode(values.encode()).decode()
    response = call(harness, http, "broker", "GET", "/search", params={"cursor": cursor, "sort": "title"})
    assert response.status_code == 400, response.text


def test_a_very_long_asset_path_is_a_400_naming_the_path(harness: Harness, http: httpx.Client) -> None:
    body = {"title": "long", "format": "csv", "path": "/tmp/" + "x" * 5000}
    response = call(harness, http, "provider", "POST", "/api/assets", json=body, headers=api(harness, "provider"))
    assert response.status_code == 400, response.text
    assert "path" in response.json()["detail"]


def test_a_client_assertion_whose_iss_holds_a_lone_surrogate_is_refused(harness: Harness, http: httpx.Client) -> None:
    assert harness.targets is not None
    token_url = harness.targets.urls["broker"] + "/token"
    lone = "urn:tessera:\ud800"
    assertion = harness.targets.sign_assertion({"iss": lone, "sub": lone, "aud": token_url, "exp": 2**31, "jti": "j"})
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        "audience": harness.targets.ids["provider"],
    }
    response = call(harness, http, "broker", "POST", "/token", data=form)
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] in ("invalid_client", "invalid_request")


def test_a_dsp_error_about_a_pid_with_a_lone_surrogate_is_rendered(harness: Harness, http: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {harness.credential('access token', 'provider')}"}
    for pid in ("%ED%A0%80", quote("\ud800".encode("utf-8", "surrogatepass"))):
        response = call(harness, http, "provider", "GET", f"/dsp/negotiations/{pid}", headers=headers)
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["@type"] == "ContractNegotiationError"


def test_a_dsp_message_with_a_lone_surrogate_is_a_dsp_400(harness: Harness, http: httpx.Client) -> None:
    assert harness.targets is not None
    headers = {"Authorization": f"Bearer {harness.credential('access token', 'provider')}"}
    body = json.dumps({"@type": "ContractRequestMessage", "consumerPid": "\ud800", "offer": {"@id": "x"}})
    response = call(harness, http, "provider", "POST", "/dsp/negotiations/request", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["@type"] == "ContractNegotiationError"
    assert "lone surrogate" in " ".join(response.json()["reason"])


def test_nan_in_a_deletion_report_is_a_400_and_the_audit_still_renders(harness: Harness, http: httpx.Client) -> None:
    assert harness.targets is not None
    pid = harness.targets.ids["provider_transfer"]
    headers = {"Authorization": f"Bearer {harness.credential('access token', 'provider')}"}
    for raw in (b'{"copy": NaN}', b'{"copy": -1e400}', b'{"copy": "\\udc00"}'):
        response = call(harness, http, "provider", "POST", f"/data/{pid}/deletion", content=raw, headers=headers)
        assert response.status_code == 400, response.text
    listed = call(harness, http, "provider", "GET", "/api/audit", headers=api(harness, "provider"))
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize("limit", ["x", "²", "-5", "0", "1e400"])
def test_an_audit_limit_that_is_no_positive_integer_is_a_400(harness: Harness, http: httpx.Client, limit: str) -> None:
    response = call(
        harness, http, "provider", "GET", "/api/audit", params={"limit": limit}, headers=api(harness, "provider")
    )
    assert response.status_code == 400, response.text
    assert "limit" in response.json()["detail"]


def test_explain_use_with_a_huge_number_in_its_query_is_a_400(harness: Harness, http: httpx.Client) -> None:
    assert harness.targets is not None
    agreement = json.dumps(harness.targets.ids["agreement"])
    raw = ('{"agreement_id": ' + agreement + ', "query": {"age": -1e400}}').encode()
    headers = api(harness, "provider") | {"Content-Type": "application/json"}
    response = call(harness, http, "provider", "POST", "/api/explain/use", content=raw, headers=headers)
    assert response.status_code == 400, response.text


def test_the_brokers_refusal_of_an_unregistration_passes_through_as_its_4xx(
    harness: Harness, http: httpx.Client
) -> None:
    """Was 502: the consumer never registered, so the broker's 404 is the answer."""
    response = call(harness, http, "consumer", "DELETE", "/api/registration", headers=api(harness, "consumer"))
    assert response.status_code == 404, response.text
    assert "no registration" in response.json()["detail"]


def test_a_catalog_request_for_no_participant_is_a_400(harness: Harness, http: httpx.Client) -> None:
    """Was 502: the authority issues no token for an audience that is no participant (invalid_target)."""
    assert harness.targets is not None
    body = {"provider_url": harness.targets.urls["provider"] + "/dsp", "provider_id": "urn:tessera:nobody"}
    response = call(
        harness, http, "consumer", "POST", "/api/catalog/request", json=body, headers=api(harness, "consumer")
    )
    assert response.status_code == 400, response.text
    assert "invalid_target" in response.json()["detail"]


@pytest.mark.parametrize("provider_id", ["数据" * 200, "urn:tessera:a b", "urn:tessera:\x00", ""])
def test_a_provider_id_that_can_name_no_participant_is_a_400(
    harness: Harness, http: httpx.Client, provider_id: str
) -> None:
    """Was 502 for a 400-character id: the token request for it passed the authority's form limit."""
    assert harness.targets is not None
    body = {"provider_url": harness.targets.urls["provider"] + "/dsp", "provider_id": provider_id}
    response = call(
        harness, http, "consumer", "POST", "/api/catalog/request", json=body, headers=api(harness, "consumer")
    )
    assert response.status_code == 400, response.text
    assert "provider_id" in response.json()["detail"]
