"""Reading the directory of users (``cadenza.toml``): every problem with the file is one line
that names it, and names that would be ambiguous are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadenza import ApprovalDenied, CadenzaError, Directory


def load(tmp_path: Path, content: bytes | str) -> Directory:
    file = tmp_path / "cadenza.toml"
    file.write_bytes(content if isinstance(content, bytes) else content.encode())
    return Directory.load(file)


def test_a_configuration_is_read() -> None:
    example = Path(__file__).parents[1] / "examples" / "cadenza.toml"
    people = Directory.load(example)
    assert people.roles("olivia") == {"compliance_officer"}
    assert people.is_user("olivia") and not people.is_user("compliance_officer")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[users]\nol\xefvia = ['x']\n", "not UTF-8 text (byte 0xef at offset 10); save it"),
        ("users = 5\n", "[users] must be a table of user = [roles]"),
        ("[users]\nolivia = 'officer'\n", "users.olivia must be a list of role names"),
        ("[users\n", "Expected ']'"),
        (
            "[users]\nolivia = ['admin']\nbob = ['olivia']\n",
            "'olivia' is both a user and a role (held by bob)",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_it(
    tmp_path: Path, content: bytes | str, message: str
) -> None:
    with pytest.raises(CadenzaError) as caught:
        load(tmp_path, content)
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'cadenza.toml'}: ") and message in text
    assert "\n" not in text


def test_an_unreadable_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cadenza.toml"
    folder.mkdir()
    with pytest.raises(CadenzaError, match="no such configuration file"):
        Directory.load(folder)
    file = tmp_path / "other.toml"
    file.write_text("[users]\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(CadenzaError, match=r"other\.toml: cannot read it: Permission denied$"):
        Directory.load(file)


def test_a_role_is_no_one() -> None:
    people = Directory({"olivia": frozenset({"compliance_officer"})})
    assert people.matches("olivia", ["compliance_officer"])
    assert not people.matches("compliance_officer", ["compliance_officer"])
    with pytest.raises(ApprovalDenied, match="'compliance_officer' is a role"):
        people.check("compliance_officer", ["compliance_officer"], "decide 'review'")
