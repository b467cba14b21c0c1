"""URLs from outside, checked where they enter: a callback address, a data address, a provider's DSP
URL, a registered endpoint. A URL that passes here can be handed to httpx without it raising later,
in a background loop where the error would have no one to go to.
"""

from collections.abc import Callable

import httpx

__all__ = ["MAX_URL_LENGTH", "check_url"]

MAX_URL_LENGTH = 2048
SCHEMES = ("http", "https")


def check_url(value: object, what: str, error: Callable[[str], Exception] = ValueError) -> str:
    """`value` if it is an absolute http(s) URL with a host and a valid port; else `error` naming why.

    ```python
    callback = check_url(message.callbackAddress, "callbackAddress", InvalidMessage)
    ```
    """
    if not isinstance(value, str) or not value:
        raise error(f"{what} must be a URL")
    if len(value) > MAX_URL_LENGTH:
        raise error(f"{what} is longer than {MAX_URL_LENGTH} characters")
    if not value.isprintable() or any(char.isspace() for char in value):
        raise error(f"{what} holds spaces or control characters")
    try:
        url = httpx.URL(value)
        scheme, host, port = url.scheme, url.host, url.port  # the host is decoded (IDNA) when first read
    except Exception as exc:  # httpx.InvalidURL, and idna's errors for a bad international host
        raise error(f"{what} is not a valid URL: {exc}") from None
    if scheme not in SCHEMES:
        raise error(f"{what} must be an http or https URL, not {scheme or 'relative'}")
    if not host:
        raise error(f"{what} has no host")
    if port is not None and not 0 < port < 65536:
        raise error(f"{what} has port {port}, outside 1-65535")
    return value
