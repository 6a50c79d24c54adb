"""The address helpers the HTTP adapters share: one port check, one URL, one bind error."""

from __future__ import annotations

import errno

import pytest

from lifecycle import ConfigError
from lifecycle.adapters._listen import cannot_listen, check_port, local_url
from lifecycle.adapters.http import HealthServer
from lifecycle.adapters.web import AioHTTPService


@pytest.mark.parametrize(("host", "url"), [
    ("0.0.0.0", "http://127.0.0.1:8080"), ("", "http://127.0.0.1:8080"),
    ("::", "http://[::1]:8080"), ("::1", "http://[::1]:8080"),
    ("example.internal", "http://example.internal:8080")])
def test_a_wildcard_host_is_reached_on_loopback(host: str, url: str) -> None:
    assert local_url(host, 8080) == url
    assert local_url(host, None) is None


@pytest.mark.parametrize("port", [-1, 65536, True, "80", 8.0])
def test_a_port_outside_tcp_is_refused_naming_the_service(port: object) -> None:
    with pytest.raises(ConfigError, match=r"HealthServer 'health': port must be 0\.\.65535"):
        HealthServer(port=port)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"AioHTTPService 'web': port must be 0\.\.65535"):
        AioHTTPService(object(), port=port)  # type: ignore[arg-type]
    assert check_port(0, "x") == 0


def test_a_bind_failure_names_the_address_and_keeps_the_errno() -> None:
    error = cannot_listen(OSError(errno.EADDRINUSE, "Address already in use"), "::1", 80)
    assert (error.errno, error.strerror) == (errno.EADDRINUSE,
                                             "cannot listen on ::1:80: Address already in use")
