"""``cadenza keys``: API keys for ``cadenza serve``, kept (as SHA-256 hashes) in the store's
database."""

from __future__ import annotations

import re
import sys
import time
from typing import Annotated, Any

import typer

from cadenza.cli._app import DbOption, _run, _when, app, fail, fitted_table, literal, out
from cadenza.cli._app import print_json as _print_json
from cadenza.core.errors import CadenzaError

keys_app = typer.Typer(
    help="API keys for cadenza serve: create, list, revoke.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")

_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MAX_LIFETIME = 10 * 365 * 86400


def parse_duration(text: str) -> float:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` in seconds (at most ten years)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        fail(f"--expires {text!r}: use a number and a unit, e.g. 90d, 12h, 30m, 2w")
    seconds = int(found[1]) * _UNITS[found[2]]
    if not 0 < seconds <= _MAX_LIFETIME:
        fail(f"--expires {text!r}: between 1 second and 10 years")
    return float(seconds)


async def _tables(db: str | None) -> Any:
    from cadenza.server.tables import open_tables
    from cadenza.store.url import open_store

    store = open_store(db, create=True)
    await store.open()  # applies the migrations that create the tables
    await store.close()
    tables = open_tables(store)
    await tables.open()
    return tables


@keys_app.command("create")
def keys_create(
    name: Annotated[
        str, typer.Option("--name", help="What the key is for (its identity key:NAME).")
    ],
    roles: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            help="viewer, operator, admin or auditor (repeatable; none: only the roles of the "
            "user [server.identities] maps it to).",
        ),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires", help="Lifetime: 90d, 12h, 2w... (default: never).", show_default=False
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Create an API key and print it once (only its hash is kept)."""
    from cadenza.server.access import SERVER_ROLES
    from cadenza.server.auth import keys

    roles = roles or []
    unknown = sorted(set(roles) - set(SERVER_ROLES))
    if unknown:
        fail(f"--role {unknown[0]!r}: a key's roles are {', '.join(SERVER_ROLES)}")
    lifetime = parse_duration(expires) if expires is not None else None
    try:
        key, record = keys.generate(name, roles, now=time.time(), lifetime=lifetime)
    except CadenzaError as exc:
        fail(str(exc))

    async def main() -> None:
        tables = await _tables(db)
        try:
            await tables.add_key(record)
        finally:
            await tables.close()

    _run(main)
    sys.stdout.write(key + "\n")
    until = f"until {_when(record.expires)} UTC" if record.expires else "without expiry"
    sys.stderr.write(
        f"key {record.id} for key:{record.name} ({', '.join(sorted(record.roles)) or 'no roles'}), "
        f"valid "
        f"{until}; it is shown only now\n"
    )


@keys_app.command("list")
def keys_list(
    db: DbOption = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """List the keys (never the keys themselves): id, name, roles, expiry, last use."""

    async def main() -> list[Any]:
        tables = await _tables(db)
        try:
            records: list[Any] = await tables.list_keys()
            return records
        finally:
            await tables.close()

    records = _run(main)
    now = time.time()
    if as_json:
        _print_json(
            [
                {
                    "id": r.id,
                    "name": r.name,
                    "identity": r.identity_name,
                    "roles": sorted(r.roles),
                    "created": r.created,
                    "expires": r.expires,
                    "revoked": r.revoked,
                    "last_used": r.last_used,
                    "valid": r.revoked is None and (r.expires is None or r.expires > now),
                }
                for r in records
            ]
        )
        return
    columns = [("id", True), ("name", True), ("roles", False), ("state", True)]
    columns += [("expires", False), ("last used", False)]
    rows = []
    for r in records:
        state = "revoked" if r.revoked else "expired" if r.expires and r.expires <= now else "valid"
        rows.append(
            (
                r.id,
                literal(r.name, one_line=True),
                ", ".join(sorted(r.roles)),
                state,
                _when(r.expires) if r.expires else "never",
                _when(r.last_used) if r.last_used else "",
            )
        )
    out.print(fitted_table(columns, rows, out.width))


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="A key's id, or a name (every valid key of it).")],
    db: DbOption = None,
) -> None:
    """Revoke a key by id, or every valid key of a name; they are refused from then on."""

    async def main() -> list[Any]:
        tables = await _tables(db)
        try:
            revoked: list[Any] = await tables.revoke_keys(key, time.time())
            return revoked
        finally:
            await tables.close()

    revoked = _run(main)
    if not revoked:
        fail(f"no valid key with id or name {key!r} (`cadenza keys list` shows them)")
    for record in revoked:
        out.print(literal(f"revoked {record.id} (key:{record.name})"))
