"""What the adapters that serve HTTP share about the address they listen on.

Why one module: the health server and the web services check the port, name the address
they could not bind, and tell the URL to reach them the same way.
"""

from __future__ import annotations

from lifecycle import ConfigError

#: Wildcard hosts (every interface) and the loopback address that reaches them locally.
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def check_port(port: object, who: str) -> int:
    """``port`` if it is a TCP port number (0: ephemeral), else a ConfigError naming ``who``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"{who}: port must be 0..65535, got {port!r}")
    return port


def local_url(host: str, port: int | None) -> str | None:
    """``http://host:port`` once bound (``None`` before), a wildcard host shown as loopback."""
    if port is None:
        return None
    host = _LOOPBACK.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def cannot_listen(exc: OSError, host: str, port: int) -> OSError:
    """The bind failure, saying which address could not be taken (same errno)."""
    return OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}")
