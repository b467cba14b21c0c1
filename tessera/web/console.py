"""The frame both web consoles share: sign-in with the service's key, sessions, CSRF, languages, pages.

A service describes its console as a `Console` and mounts it:

```python
console = Console(name="connector", title="Tessera connector", key=config.management_token,
                  templates=[HERE / "templates"], locales=[HERE / "locale"], nav=[("/", "Dashboard")])
routes = [console.page("/", dashboard), console.action("/offers", publish)]
Mount("/console", routes=console.routes(routes), middleware=console.middleware())
```

- **Sign-in**: the operator types the service's key (the management key of a connector, the admin key of a
  broker); the answer is a signed session cookie (itsdangerous, through Starlette's `SessionMiddleware`) whose
  secret is derived from that key, so rotating the key signs every session out, on every replica.
  The cookie is HttpOnly, SameSite=Strict, scoped to the console's path, Secure behind https.
- **CSRF**: every state-changing request is an `action`; it is refused unless it carries the session's
  token (form field `csrf`, or the `X-CSRF-Token` header htmx sends) and any `Origin` is our own.
- **Pages** render Jinja2 templates (autoescaped) with the request's language (`tessera.web.i18n`); the kernel's
  `base.html` holds the layout, navigation and language switch. Static files are vendored and pinned:
  htmx 2.0.11 for interaction, Pico CSS 2.1.1 for an accessible look. Nothing is built at run time.
- Every console response forbids framing and inline scripts (`Content-Security-Policy`).
"""

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.web import i18n

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "tessera_console"
SESSION_SECONDS = 8 * 3600
SIGN_IN_LIMIT, SIGN_IN_WINDOW = 10, 300.0  # failed sign-ins from one address, within seconds
TOO_MANY = "too many wrong keys from this address; try again in a few minutes"
MAX_UPLOAD_PART = 1024 * 1024  # a text field; uploaded files spool to disk, bounded by the action's max_bytes
MAX_FORM_BYTES = 4 * 1024 * 1024  # a whole form without uploads
Page = Callable[[Request], Awaitable[Response]]
Action = Callable[[Request, FormData], Awaitable[Response]]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class Attempts:
    """Failed sign-ins per client address: past `limit` within `window` seconds, that address waits out the
    window. Per process; a guessed key (one a person chose) is what it slows down."""

    def __init__(self, limit: int = SIGN_IN_LIMIT, window: float = SIGN_IN_WINDOW) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, list[float]] = {}

    def failed(self, client: str) -> None:
        self._failures.setdefault(client, []).append(time.monotonic())

    def blocked(self, client: str) -> bool:
        recent = [at for at in self._failures.get(client, []) if time.monotonic() - at < self.window]
        if recent:
            self._failures[client] = recent
        else:
            self._failures.pop(client, None)  # forgotten: the table holds only addresses failing now
        return len(recent) >= self.limit


class Refused(Exception):
    """A console request that cannot be served as asked; `status` and a message the page shows."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Console:
    """One service's console: what it is called, its key, its templates, translations and navigation."""

    name: str
    title: str
    key: str = field(repr=False)
    templates: list[Path]
    locales: list[Path]
    nav: list[tuple[str, str]]  # (path under the console, English label)
    key_label: str = "Key"
    key_help: str = ""
    secure: bool = False  # the service is served over https: the cookie is Secure
    globals: dict[str, Any] = field(default_factory=dict)
    path: str = "/console"

    def __post_init__(self) -> None:
        self.attempts = Attempts()
        loader = jinja2.FileSystemLoader([*self.templates, HERE / "templates"])
        self.env = jinja2.Environment(loader=loader, autoescape=True, extensions=["jinja2.ext.i18n"])
        self.env.globals.update(self.globals)
        self.env.policies["ext.i18n.trimmed"] = True
        self.languages = i18n.Languages([HERE / "locale", *self.locales])

    # -- building the routes --------------------------------------------------------------------------------

    def page(self, path: str, endpoint: Page) -> Route:
        """A page for a signed-in operator (GET)."""

        async def guarded(request: Request) -> Response:
            if not signed_in(request):
                return self.redirect(request, "/signin?" + _next_query(request))
            return await self._answer(request, endpoint)

        return Route(path, guarded, methods=["GET"], name=_name(path, "page"))

    def action(self, path: str, endpoint: Action, *, max_files: int = 0, max_bytes: int = MAX_FORM_BYTES) -> Route:
        """A state change by a signed-in operator (POST, CSRF-checked); `max_files` uploads allowed, the
        whole body at most `max_bytes` (413 past it, as it arrives: a chunked body is bounded too)."""

        async def guarded(request: Request) -> Response:
            if not signed_in(request):
                return self.redirect(request, "/signin")

            async def checked(request: Request) -> Response:
                return await endpoint(request, await self._checked_form(request, max_files, max_bytes))

            return await self._answer(request, checked)

        return Route(path, guarded, methods=["POST"], name=_name(path, "action"))

    def routes(self, pages: Sequence[BaseRoute]) -> list[BaseRoute]:
        return [
            Route("/signin", self._signin_form, methods=["GET"]),
            Route("/signin", self._signin, methods=["POST"]),
            Route("/signout", self._signout, methods=["POST"]),
            Route("/language", self._language, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
            *pages,
        ]

    def middleware(self) -> list[Middleware]:
        secret = hmac.new(self.key.encode(), b"tessera console session", hashlib.sha256).hexdigest()
        return [
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_SECONDS,
                path=self.path,
                same_site="strict",
                https_only=self.secure,
            ),
        ]

    # -- rendering ------------------------------------------------------------------------------------------

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        language = self.language(request)
        translator = self.languages.translator(language)
        page = self.env.get_template(template)
        html = page.render(
            **context,
            request=request,
            console=self,
            base=self.path,
            lang=language,
            languages=i18n.LANGUAGES,
            csrf=csrf_token(request),
            flashes=request.session.pop("flash", []),
            signed_in=signed_in(request),
            gettext=translator.gettext,
            ngettext=translator.ngettext,
            _=translator.gettext,
        )
        return HTMLResponse(html, status_code=status)

    def language(self, request: Request) -> str:
        return i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language", ""))

    def redirect(self, request: Request, to: str) -> RedirectResponse:
        """See-other to a path under the console (after a POST, so a reload does not repeat it)."""
        return RedirectResponse(self.path + to, status_code=303)

    def url(self, to: str) -> str:
        return self.path + to

    # -- the frame's own pages ------------------------------------------------------------------------------

    async def _answer(self, request: Request, endpoint: Page) -> Response:
        try:
            return await endpoint(request)
        except Refused as exc:
            return self.render(request, "refused.html", status=exc.status, message=exc.message)

    async def _checked_form(self, request: Request, max_files: int, max_bytes: int = MAX_FORM_BYTES) -> FormData:
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Refused("the request comes from another site", 403)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise Refused(f"the form is larger than {max_bytes} bytes", 413)
        bounded = Request(request.scope, _bounded(request.receive, max_bytes))
        try:
            form = await bounded.form(max_files=max_files, max_fields=200, max_part_size=MAX_UPLOAD_PART)
        except TooLarge:
            raise Refused(f"the form is larger than {max_bytes} bytes", 413) from None
        except Exception as exc:  # the multipart parser's errors: a malformed or too large form
            raise Refused(f"the form cannot be read: {exc}") from None
        given = str(form.get("csrf") or request.headers.get("x-csrf-token", ""))
        expected = request.session.get("csrf", "")
        if not expected or not secrets.compare_digest(given.encode(), expected.encode()):
            raise Refused("the form has expired or did not come from this console; reload the page", 403)
        return form

    async def _signin_form(self, request: Request) -> Response:
        return self.render(request, "signin.html", next=_safe_next(request.query_params.get("next")))

    async def _signin(self, request: Request) -> Response:
        client = request.client.host if request.client else ""
        if self.attempts.blocked(client):
            return self.render(request, "signin.html", status=429, error=TOO_MANY, next="/")
        try:
            form = await self._checked_form(request, 0)
        except Refused as exc:
            return self.render(request, "signin.html", status=exc.status, error=exc.message, next="/")
        given = str(form.get("key", "")).strip()
        # Fail closed: a service without a key opens to nobody, not to an empty answer.
        if not self.key or not secrets.compare_digest(given.encode(), self.key.encode()):
            self.attempts.failed(client)
            return self.render(request, "signin.html", status=401, error="wrong key", next=_safe_next(form.get("next")))
        request.session.clear()  # a new session after sign-in: no fixation of one made before
        request.session.update({"user": "operator", "since": int(time.time()), "csrf": secrets.token_urlsafe(32)})
        return self.redirect(request, _safe_next(form.get("next")))

    async def _signout(self, request: Request) -> Response:
        async def sign_out(request: Request) -> Response:
            await self._checked_form(request, 0)
            request.session.clear()
            return self.redirect(request, "/signin")

        return await self._answer(request, sign_out)

    async def _language(self, request: Request) -> Response:
        chosen = request.query_params.get("to", i18n.DEFAULT)
        response = self.redirect(request, _safe_next(request.query_params.get("next")))
        if chosen in i18n.LANGUAGES:
            response.set_cookie(i18n.COOKIE, chosen, max_age=365 * 86400, path=self.path, samesite="strict")
        return response


class TooLarge(Exception):
    """A request body past its bound, found while it arrives."""


def _bounded(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing (TooLarge) once the body it has passed on exceeds `limit` bytes."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise TooLarge
        return message

    return bounded


def signed_in(request: Request) -> bool:
    return request.session.get("user") == "operator"


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the sign-in form needs one before anyone signs in)."""
    token: str | None = request.session.get("csrf")
    if token is None:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def flash(request: Request, message: str, kind: str = "ok") -> None:
    """A message shown once on the next page (after a redirect)."""
    request.session.setdefault("flash", []).append({"kind": kind, "message": message})


def text(form: FormData, name: str, default: str = "") -> str:
    """A form field as trimmed text (an upload in its place is refused as empty)."""
    value = form.get(name, default)
    return value.strip() if isinstance(value, str) else default


def _safe_next(target: Any) -> str:
    """Where to go after sign-in: a path inside the console only (no open redirect)."""
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _next_query(request: Request) -> str:
    inner = request.url.path.removeprefix(request.scope.get("root_path", ""))
    query = f"?{request.url.query}" if request.url.query else ""
    return urlencode({"next": inner + query})


def _name(path: str, kind: str) -> str:
    return f"{kind}:{path}"


class SecurityHeaders:
    """ASGI middleware: every console response forbids framing, sniffing and scripts from elsewhere."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
