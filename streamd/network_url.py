"""What a network source's URL is, how it is shown, and PyAV (imported only when a URL is given)."""

from __future__ import annotations

import re
from typing import Any

from streamd.errors import AudioInputError

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(spec: str) -> bool:
    """True for ``scheme://...`` (a network source), False for a device name or index."""
    return bool(_URL_RE.match(str(spec)))


def check_url(url: str) -> None:
    """Refuse at once what FFmpeg would only time out on: a port that is not a number in 0-65535."""
    from urllib.parse import urlsplit

    try:
        urlsplit(url).port  # noqa: B018 - parsing it is the check
    except ValueError as exc:  # a port that is not a number, or out of range; a broken IPv6 address
        why = "a malformed IPv6 address" if "IPv6" in str(exc) else "its port is not a number from 0 to 65535"
        raise AudioInputError(f"{short_url(url)}: {why}") from None


def import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise AudioInputError(f"network sources need PyAV (pip install av): {exc}") from None
    return av


def short_url(url: str) -> str:
    """The URL without credentials, for messages."""
    return re.sub(r"://[^/@]*@", "://", url)


def timed_out(exc: BaseException, seconds: float, what: str) -> str | None:
    """FFmpeg's own words for its timeout ("Immediate exit requested") as a reason a user can act on."""
    if isinstance(exc, import_av().error.ExitError):
        return f"{what} within {seconds:g} s: timed out"
    return None
