"""Every way a PostgreSQL password reaches asyncpg, parsed once so it can be masked everywhere.

asyncpg takes a URL DSN (``postgresql://user:pw@host/db?password=...``) and keyword
arguments, and reads ``PGPASSWORD``, a passfile (``~/.pgpass``) and a service file on its
own. Users also paste libpq's keyword form (``host=db password=secret dbname=app``), and
passwords with an unencoded ``#``, ``?``, ``/`` or ``@``, which ``urllib`` splits in the
wrong place (``app:pa#ss@db`` reads as host ``app``, fragment ``ss@db``). :func:`parse`
handles each of those and returns:

- what to hand to asyncpg: a URL, its userinfo percent-encoded (a keyword DSN becomes the
  equivalent URL);
- the text to show (``dsn``): every password and credential parameter replaced by ``***``;
- every secret to scrub, including ``PGPASSWORD`` and the passwords in the passfile and
  service file (not ours to print either).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from lifecycle import ConfigError
from lifecycle.redact import MASK, SECRET_PARAMS

_SCHEMES = ("postgresql://", "postgres://")
#: A host list after the userinfo: ``host``, ``host:port``, ``[::1]:5432``, ``a:1,b:2``.
_HOSTS = r"(?:\[[0-9A-Fa-f:.%]*\]|[A-Za-z0-9._~%-]*)(?::\d*)?"
_AUTHORITY_TAIL = re.compile(rf"{_HOSTS}(?:,{_HOSTS})*(?:$|\?|/[^@?]*(?:$|\?))")
#: libpq keywords asyncpg spells differently in a URL query, or has no use for.
_RENAMED = {"hostaddr": "host"}
_IGNORED = frozenset({"connect_timeout"})


@dataclass(frozen=True)
class ParsedDsn:
    """A DSN taken apart: what asyncpg gets, what may be shown, what must be scrubbed."""

    url: str | None                      # for asyncpg's ``dsn`` (None: no DSN given)
    masked: str = "<unset>"
    secrets: tuple[str, ...] = ()


def parse(dsn: str | None, connect_kwargs: Mapping[str, Any] | None = None,
          environ: Mapping[str, str] | None = None) -> ParsedDsn:
    """Take ``dsn`` apart (URL or libpq keyword form); never puts a secret in an error."""
    env = os.environ if environ is None else environ
    extra = dict(connect_kwargs or {})
    secrets: list[str] = []
    if isinstance(extra.get("password"), str):
        secrets.append(extra["password"])
    url: str | None = None
    masked = "<unset>"
    if not dsn:
        pass
    elif dsn.strip().lower().startswith(_SCHEMES):
        url, masked, found = _parse_url(dsn.strip())
        secrets += found
    else:
        url, masked, found = _parse_keywords(dsn)
        secrets += found
    passfile = extra.get("passfile") or _query_value(url, "passfile")
    secrets += _environment_secrets(env, passfile)
    unique = sorted({s for s in secrets if s}, key=len, reverse=True)
    return ParsedDsn(url, masked, tuple(unique))


# -- URL form --------------------------------------------------------------------------

def _parse_url(dsn: str) -> tuple[str, str, list[str]]:
    """(URL for asyncpg, masked URL, secrets) of a ``postgresql://`` DSN."""
    scheme, _, rest = dsn.partition("://")
    userinfo, hosts_and_more = _split_userinfo(rest)
    secrets: list[str] = []
    if userinfo is None:
        clean_auth, shown_auth = "", ""
    else:
        user, colon, password = userinfo.partition(":")
        clean_auth = quote(unquote(user), safe="")
        shown_auth = clean_auth
        if colon:
            secrets += [password, unquote(password)]
            clean_auth += ":" + quote(unquote(password), safe="")
            shown_auth += ":" + MASK
        clean_auth += "@"
        shown_auth += "@"
    head, qmark, query = hosts_and_more.partition("?")
    shown_query, clean_query, query_secrets = _mask_query(query)
    secrets += query_secrets
    url = f"{scheme}://{clean_auth}{head}{qmark}{clean_query}"
    masked = f"{scheme}://{shown_auth}{head}{qmark}{shown_query}"
    return url, masked, secrets


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """Split ``user:pw@hosts/db?q`` at the ``@`` that precedes the host list.

    A password may hold an unencoded ``@``, ``#``, ``/`` or ``?``, so the userinfo ends at
    the *last* ``@`` after which a host list follows (then the end, a query, or a path
    without ``@``). When in doubt this masks too much, never too little: an ``@`` inside a
    query value must be written ``%40``.
    """
    cut = None
    for at in (i for i, ch in enumerate(rest) if ch == "@"):
        if _AUTHORITY_TAIL.match(rest, at + 1):
            cut = at
    if cut is None and "@" in rest:  # no plausible host after any '@': mask up to the last
        cut = rest.rindex("@")
    if cut is None:
        return None, rest
    return rest[:cut], rest[cut + 1:]


def _mask_query(query: str) -> tuple[str, str, list[str]]:
    """The query with credential values masked, with them percent-encoded (an unencoded
    ``#`` would start a fragment), and those values (raw and decoded)."""
    if not query:
        return "", "", []
    shown, clean, secrets = [], [], []
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        if eq and value and key.lower() in SECRET_PARAMS:
            secrets += [value, unquote(value)]
            shown.append(f"{key}={MASK}")
            clean.append(f"{key}={quote(unquote(value), safe='')}")
        else:
            shown.append(part)
            clean.append(part)
    return "&".join(shown), "&".join(clean), secrets


def _query_value(url: str | None, key: str) -> str | None:
    if url is None or "?" not in url:
        return None
    for part in url.partition("?")[2].split("&"):
        name, eq, value = part.partition("=")
        if eq and name == key:
            return unquote(value)
    return None


# -- keyword form ------------------------------------------------------------------------

def _parse_keywords(dsn: str) -> tuple[str, str, list[str]]:
    """libpq's ``key=value key='quoted value'`` form, as the equivalent URL for asyncpg
    (``postgresql://?host=...&password=...``): asyncpg reads the same keys from a URL's
    query, and sends the ones it does not know (``application_name``) as server settings.
    """
    try:
        tokens = shlex.split(dsn, posix=True)
    except ValueError:
        raise ConfigError("PostgreSQL DSN: unbalanced quotes in the keyword form "
                          "(key=value ...); the DSN is not shown because it may hold a "
                          "password") from None
    query: list[str] = []
    shown: list[str] = []
    secrets: list[str] = []
    for token in tokens:
        key, eq, value = token.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise ConfigError(f"PostgreSQL DSN: {_shown_token(token)!r} is neither a URL "
                              "(postgresql://...) nor key=value")
        secret = key in SECRET_PARAMS
        if secret:
            secrets.append(value)
        shown.append(f"{key}={MASK}" if secret else f"{key}={_quote_kw(value)}")
        if key in _IGNORED:
            continue  # the adapter's own connect_timeout applies
        query.append(f"{_RENAMED.get(key, key)}={quote(value, safe='')}")
    return "postgresql://?" + "&".join(query), " ".join(shown), secrets


def _quote_kw(value: str) -> str:
    return value if value and not re.search(r"[\s'\\]", value) else "'" + value.replace(
        "\\", "\\\\").replace("'", "\\'") + "'"


def _shown_token(token: str) -> str:
    return token if len(token) <= 3 else token[:3] + "..."


# -- secrets asyncpg finds by itself ------------------------------------------------------

def _environment_secrets(env: Mapping[str, str], passfile: str | None) -> list[str]:
    """``PGPASSWORD``, and every password in the passfile and the service file."""
    found = [env["PGPASSWORD"]] if env.get("PGPASSWORD") else []
    home = Path(env.get("HOME") or "~").expanduser()
    pgpass = Path(passfile or env.get("PGPASSFILE") or home / ".pgpass")
    found += _read_lines(pgpass, _pgpass_password)
    service = Path(env.get("PGSERVICEFILE") or home / ".pg_service.conf")
    found += _read_lines(service, _service_password)
    return found


def _read_lines(path: Path, pick: Any) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read(1 << 20).splitlines()  # bounded: a passfile is tiny
    except OSError:
        return []
    return [p for p in (pick(line) for line in lines) if p]


def _pgpass_password(line: str) -> str | None:
    """The fifth field of ``host:port:db:user:password`` (``\\:`` escapes a colon)."""
    if not line or line.lstrip().startswith("#"):
        return None
    fields = re.split(r"(?<!\\):", line, maxsplit=4)
    return fields[4].replace("\\:", ":").replace("\\\\", "\\") if len(fields) == 5 else None


def _service_password(line: str) -> str | None:
    key, eq, value = line.partition("=")
    return value.strip() if eq and key.strip().lower() == "password" else None
