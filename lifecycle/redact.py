"""Keep secrets (passwords, tokens) out of every text we produce.

The supervisor scrubs everything it records with the strings services return from
``secrets()``; adapters use the same functions for their own messages and reprs.

- :func:`mask_url` hides the password of a URL or DSN (``postgresql://user:***@host/db``)
  and the values of query parameters that carry credentials (``?password=``, ``?token=``).
- :func:`scrub` replaces known secret strings anywhere in a text (an exception message, a
  log line); :func:`secret_forms` lists the spellings a secret may take in such a text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "***"

#: A secret shorter than this is masked only where it stands as a whole word: masking every
#: "t" of a message for a one-letter token destroys the message and protects nothing.
SHORT_SECRET = 4

#: Query parameters whose value is a credential (compared case-insensitively).
SECRET_PARAMS = frozenset(
    {"password", "passwd", "pass", "pwd", "token", "secret", "api_key", "apikey",
     "access_token", "auth_token", "sslpassword"}
)


def url_password(url: str) -> str | None:
    """The (percent-decoded) password in ``url``'s userinfo, or None when it has none."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def url_secret_params(url: str) -> list[str]:
    """Decoded values of the credential query parameters of ``url`` (``?password=...``)."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    found = []
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if sep and value and key.lower() in SECRET_PARAMS:
            found.append(unquote(value))
    return found


def mask_url(url: str) -> str:
    """``url`` with its password and credential query parameters replaced by ``***``.

    Never raises: text that does not parse as a URL is returned with anything between
    ``://user:`` and ``@`` masked, which covers the DSNs this project handles.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return _mask_userinfo_fallback(url)
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else netloc
    query = "&".join(_mask_param(part) for part in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_param(part: str) -> str:
    key, sep, value = part.partition("=")
    if sep and value and key.lower() in SECRET_PARAMS:
        return f"{key}={MASK}"
    return part


def _mask_userinfo_fallback(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest:
        return text
    userinfo, _, hostpart = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}:{MASK}@{hostpart}" if colon else text


def secret_forms(secret: str) -> list[str]:
    """The spellings of ``secret`` that may show up in text: as is and URL-encoded."""
    if not secret:
        return []
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of every secret (in each of its forms) replaced by ``***``.

    Longer forms are replaced first so a secret that contains another is masked whole.
    """
    forms: set[str] = set()
    for secret in secrets:
        forms.update(secret_forms(secret))
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= SHORT_SECRET:
            text = text.replace(form, MASK)
        else:
            text = re.sub(rf"(?<!\w){re.escape(form)}(?!\w)", MASK, text)
    return text


def describe_error(exc: BaseException, secrets: Iterable[str]) -> str:
    """``"TypeName: message"`` for ``exc``, with secrets scrubbed; for error reports."""
    message = scrub(str(exc), secrets)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def contains_secret(text: str, secrets: Iterable[str]) -> bool:
    """True when ``text`` holds any form of any of ``secrets`` (as :func:`scrub` sees them)."""
    secrets = list(secrets)
    return bool(secrets) and scrub(text, secrets) != text


def safe_cause(exc: BaseException, secrets: Iterable[str]) -> BaseException | None:
    """``exc`` to chain (``raise ... from``) as a cause, or None when its text would reveal
    a secret: a chained exception is printed whole in every traceback."""
    return None if contains_secret(f"{exc!s} {exc!r}", list(secrets)) else exc
