"""Every DSN form asyncpg accepts is parsed, and its password reaches no text (issue: secrets).

Forms: a URL (also with an unencoded ``#``, ``@``, ``/`` or ``?`` in the password), libpq's
keyword form (``host=... password=...``), ``connect_kwargs={"password": ...}``,
``PGPASSWORD`` and a passfile. Each is tried against the real PostgreSQL server: a right
password connects (so the parse is right), a wrong one fails, and the failure is searched
for the password in ``repr``, ``.dsn``, the start error, the report (text and dict), the
trace and every log record at DEBUG.
"""

from __future__ import annotations

import json
import logging
import secrets
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lifecycle import ConfigError, Fallback, Supervisor
from lifecycle.adapters._pg_dsn import parse
from lifecycle.adapters.postgres import PostgresDatabase
from lifecycle.adapters.sqlite import SQLiteDatabase
from lifecycle.trace import chrome_trace

pytestmark = [pytest.mark.servers, pytest.mark.filterwarnings("error::ResourceWarning")]

#: Characters that urllib splits on when left unencoded in a URL's userinfo.
AWKWARD = "pa#ss@w/rd?x:y"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def awkward_role(postgres: Any) -> Iterator[tuple[str, str]]:
    """A role on the shared server whose password holds every awkward character."""
    role = f"awk_{secrets.token_hex(4)}"
    password = f"{AWKWARD}-{secrets.token_hex(4)}"
    postgres.admin_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    yield role, password
    postgres.admin_sql(f"DROP ROLE {role}")


def texts_of(sup: Supervisor, db: PostgresDatabase, caplog: pytest.LogCaptureFixture) -> list[str]:
    report = sup.report
    records = [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    errors = [a.error or "" for a in report.startup["db"].attempts]
    return [repr(db), db.dsn, report.format(), json.dumps(report.to_dict()),
            json.dumps(chrome_trace(report)), *errors, *records]


async def fails_over_without_the_secret(db: PostgresDatabase, secret: str, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> str:
    """Run ``db`` first in a chain; it must fail, SQLite win, and no text show ``secret``."""
    caplog.set_level(logging.DEBUG)
    sup = Supervisor([Fallback("db", db, SQLiteDatabase(tmp_path / "app.db"))],
                     shutdown_timeout=5.0)
    async with sup:
        assert sup["db"].name == "sqlite"
    [pg, _] = sup.report.startup["db"].attempts
    assert pg.outcome == "error", sup.report.format()
    for text in texts_of(sup, db, caplog):
        assert secret not in text
    return pg.error or ""


@pytest.mark.anyio
async def test_unencoded_awkward_characters_in_a_url_password_connect_and_stay_hidden(
    postgres: Any, awkward_role: tuple[str, str], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    role, password = awkward_role
    where = f"{postgres.host}:{postgres.port}/{postgres.database}"
    db = PostgresDatabase(f"postgresql://{role}:{password}@{where}")
    assert db.dsn == f"postgresql://{role}:***@{where}"
    await db.start()
    try:
        assert await db.fetchval("SELECT current_user") == role
    finally:
        await db.close()
    wrong = f"{password}-wrong#"
    error = await fails_over_without_the_secret(
        PostgresDatabase(f"postgresql://{role}:{wrong}@{where}"), wrong, tmp_path, caplog)
    assert "password authentication failed" in error
    assert f"postgresql://{role}:***@{where}" in error
    for part in ("ss@w", "rd?x", "-wrong"):  # no fragment of it either
        assert part not in error


@pytest.mark.anyio
async def test_a_libpq_keyword_dsn_connects_and_its_password_stays_hidden(
    postgres: Any, awkward_role: tuple[str, str], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    role, password = awkward_role
    keywords = (f"host={postgres.host} port={postgres.port} dbname={postgres.database} "
                f"user={role} password='{password}' application_name=lifecycle-test")
    db = PostgresDatabase(keywords)
    assert "password=***" in db.dsn
    assert password not in repr(db)
    await db.start()
    try:
        assert await db.fetchval("SELECT current_setting('application_name')") == "lifecycle-test"
    finally:
        await db.close()
    wrong = keywords.replace(password, f"{password}-wrong")
    error = await fails_over_without_the_secret(PostgresDatabase(wrong), f"{password}-wrong",
                                                tmp_path, caplog)
    assert "password authentication failed" in error


@pytest.mark.anyio
async def test_connect_kwargs_pgpassword_and_the_passfile_stay_hidden(
    postgres: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{postgres.database}"
    kwarg_secret = "kw-" + secrets.token_hex(8)
    db = PostgresDatabase(url, connect_kwargs={"password": kwarg_secret})
    assert kwarg_secret in db.secrets()
    await fails_over_without_the_secret(db, kwarg_secret, tmp_path, caplog)

    env_secret = "env-" + secrets.token_hex(8)
    monkeypatch.setenv("PGPASSWORD", env_secret)
    db = PostgresDatabase(url)
    assert env_secret in db.secrets()
    await fails_over_without_the_secret(db, env_secret, tmp_path, caplog)
    monkeypatch.delenv("PGPASSWORD")

    file_secret = "file-" + secrets.token_hex(8)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:*:{file_secret}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    db = PostgresDatabase(url)
    assert file_secret in db.secrets()
    await fails_over_without_the_secret(db, file_secret, tmp_path, caplog)


@pytest.mark.parametrize("dsn", [
    "host=db password='hunter2-unbalanced",
    "host=db password=hunter2-x sslkey",
])
def test_a_malformed_keyword_dsn_is_a_config_error_without_the_password(dsn: str) -> None:
    with pytest.raises(ConfigError) as info:
        PostgresDatabase(dsn)
    text = " ".join(traceback.format_exception(info.value))
    assert "hunter2" not in text


@pytest.mark.parametrize(("dsn", "shown", "secret"), [
    ("postgresql://app:pa#ss@db:5432/x", "postgresql://app:***@db:5432/x", "pa#ss"),
    ("postgresql://app:a@b/c?d#e@db/x?sslmode=disable", "postgresql://app:***@db/x?sslmode=disable",
     "a@b/c?d#e"),
    ("postgres://app:p%40ss@[::1]:5432/x?password=q#w&sslpassword=k3y",
     "postgres://app:***@[::1]:5432/x?password=***&sslpassword=***", "q#w"),
    ("postgresql://a:b-long@h1:1,h2:2/db", "postgresql://a:***@h1:1,h2:2/db", "b-long"),
    ("host=db user=app password='se cret' dbname=x", "host=db user=app password=*** dbname=x",
     "se cret"),
    ("postgresql:///x?host=/run/postgresql", "postgresql:///x?host=/run/postgresql", ""),
])
def test_every_form_is_masked_and_its_secret_listed(dsn: str, shown: str, secret: str) -> None:
    parsed = parse(dsn, environ={})
    assert parsed.masked == shown
    if secret:
        assert secret in parsed.secrets
