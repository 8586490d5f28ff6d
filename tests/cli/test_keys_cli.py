"""``cadenza keys``: a key is printed once and stored only as its hash; listing never shows
it; revoking by id or name; lifetimes and roles are checked in one line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("jwt", reason="API keys come with the server extra: pip install '.[server]'")

from cadenza.cli import app
from cadenza.server.auth.keys import KEY_LENGTH, check_format, key_hash

runner = CliRunner()


def invoke(db: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--store", str(db)])
    return result.exit_code, result.stdout, result.stderr


def test_create_list_and_revoke(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    code, out, err = invoke(db, "keys", "create", "--name", "ci", "--role", "operator",
                            "--expires", "90d")  # fmt: skip
    assert code == 0, err
    key = out.strip()
    assert len(key) == KEY_LENGTH and check_format(key) is None
    assert "key:ci (operator)" in err and "shown only now" in err
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT hash FROM api_keys").fetchone()
    assert stored == key_hash(key) and key not in db.read_bytes().decode("latin-1")
    code, out, _ = invoke(db, "keys", "create", "--name", "ci")
    assert code == 0
    code, out, _ = invoke(db, "keys", "list", "--json")
    listed = json.loads(out)
    assert [(k["identity"], k["roles"], k["valid"]) for k in listed] == [
        ("key:ci", ["operator"], True),
        ("key:ci", [], True),
    ]
    assert listed[0]["expires"] - listed[0]["created"] == 90 * 86400
    assert key not in out
    code, out, _ = invoke(db, "keys", "revoke", listed[1]["id"])
    assert code == 0 and listed[1]["id"] in out
    code, out, _ = invoke(db, "keys", "revoke", "ci")
    assert code == 0 and listed[0]["id"] in out
    code, _, err = invoke(db, "keys", "revoke", "ci")
    assert code == 2 and err.startswith("error: no valid key")
    code, out, _ = invoke(db, "keys", "list")
    assert code == 0 and out.count("revoked") == 2


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--role", "boss"], "a key's roles are viewer, operator, admin, auditor"),
        (["--expires", "soon"], "use a number and a unit"),
        (["--expires", "0d"], "between 1 second and 10 years"),
        (["--expires", "11000d"], "between 1 second and 10 years"),
    ],
)
def test_bad_options_are_one_line(tmp_path: Path, args: list[str], reason: str) -> None:
    code, _, err = invoke(tmp_path / "k.db", "keys", "create", "--name", "ci", *args)
    assert code == 2 and reason in err and err.count("\n") == 1


def test_a_bad_name_is_one_line(tmp_path: Path) -> None:
    code, _, err = invoke(tmp_path / "k.db", "keys", "create", "--name", "no spaces")
    assert code == 2 and "key name 'no spaces'" in err
