"""The consoles' frame on its own (tessera.web.console), served for real: sign-in fails closed, a session
dies with its key, sign-in goes only to paths inside the console, and an action needs the session's token."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount

from tessera.web.console import MAX_FORM_BYTES, SIGN_IN_LIMIT, Attempts, Console
from tests.utils import run_server


def _console(key: str) -> Console:
    return Console(name="test", title="Test", key=key, templates=[], locales=[], nav=[("/", "Home")])


@asynccontextmanager
async def _served(key: str) -> AsyncIterator[httpx.AsyncClient]:
    console = _console(key)

    async def home(_request: Request) -> Response:
        return PlainTextResponse("home")

    async def act(_request: Request, form: FormData) -> Response:
        return PlainTextResponse(f"did {form.get('what')}")

    pages = [console.page("/", home), console.action("/act", act)]
    app = Starlette(routes=[Mount("/console", routes=console.routes(pages), middleware=console.middleware())])
    async with run_server(app) as url, httpx.AsyncClient(base_url=url + "/console") as client:
        yield client


async def _csrf(client: httpx.AsyncClient) -> str:
    return (await client.get("/signin")).text.split('name="csrf" value="')[1].split('"')[0]


async def _sign_in(client: httpx.AsyncClient, key: str, **extra: str) -> httpx.Response:
    return await client.post("/signin", data={"key": key, "csrf": await _csrf(client), **extra})


async def test_a_service_without_a_key_opens_to_nobody() -> None:
    async with _served("") as client:
        assert (await _sign_in(client, "")).status_code == 401
        assert (await client.get("/")).status_code == 303


async def test_a_session_ends_when_its_key_changes() -> None:
    async with _served("first key") as client:
        assert (await _sign_in(client, "first key")).status_code == 303
        assert (await client.get("/")).text == "home"
        cookies = client.cookies
    async with _served("second key") as other:
        other.cookies = cookies  # the same browser, after the key was rotated
        assert (await other.get("/")).status_code == 303


async def test_sign_in_goes_on_only_to_a_page_of_the_console() -> None:
    async with _served("key") as client:
        for target, expected in (
            ("/act?x=1", "/console/act?x=1"),
            ("//evil.example/", "/console/"),
            ("https://evil.example/", "/console/"),
            ("/\\evil.example", "/console/"),
        ):
            client.cookies.clear()
            signed = await _sign_in(client, "key", next=target)
            assert signed.headers["location"] == expected, target


async def test_an_action_needs_the_sessions_token_and_our_origin() -> None:
    async with _served("key") as client:
        await _sign_in(client, "key")
        assert (await client.post("/act", data={"what": "x"})).status_code == 403
        token = await _csrf(client)
        assert (await client.post("/act", data={"what": "x", "csrf": token})).text == "did x"
        assert (await client.post("/act", data={"what": "y"}, headers={"X-CSRF-Token": token})).text == "did y"
        forged = await client.post("/act", data={"csrf": token}, headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403


async def test_wrong_keys_from_one_address_are_slowed_down() -> None:
    async with _served("the key") as client:
        for _ in range(SIGN_IN_LIMIT):
            assert (await _sign_in(client, "a guess")).status_code == 401
        refused = await _sign_in(client, "the key")  # even the right key waits out the window now
        assert refused.status_code == 429 and "too many wrong keys" in refused.text
        assert (await client.get("/")).status_code == 303


def test_failed_sign_ins_are_forgotten_after_their_window() -> None:
    attempts = Attempts(limit=2, window=0.05)
    attempts.failed("10.0.0.1")
    attempts.failed("10.0.0.1")
    assert attempts.blocked("10.0.0.1") and not attempts.blocked("10.0.0.2")
    time.sleep(0.06)
    assert not attempts.blocked("10.0.0.1")


async def test_a_form_past_its_bound_is_refused_as_it_arrives() -> None:
    async with _served("key") as client:
        await _sign_in(client, "key")
        token = await _csrf(client)

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: only counting can stop it
            yield f"csrf={token}".encode()
            for field in range(MAX_FORM_BYTES // 900_000 + 1):  # each field under the part limit
                yield f"&f{field}=".encode() + b"x" * 900_000

        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        refused = await client.post("/act", content=chunked(), headers=headers)
        assert refused.status_code == 413 and "the form is larger than" in refused.text
        declared = await client.post("/act", content=b"x" * (MAX_FORM_BYTES + 1), headers=headers)
        assert declared.status_code == 413
        assert (await client.post("/act", data={"what": "small", "csrf": token})).text == "did small"
