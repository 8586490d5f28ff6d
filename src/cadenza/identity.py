"""Who may do what: users and their roles, read from ``cadenza.toml`` (``[users]``) or from
the file named by ``CADENZA_CONFIG``.

```toml
[users]
olivia = ["compliance_officer"]
victor = ["viewer"]
```

An approver list or ``allowed_users`` names users or roles; a user matches by name or by any
of their roles."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cadenza.errors import CadenzaError


class ApprovalDenied(CadenzaError):
    """An actor asked for something their roles do not allow; the refusal is recorded."""


@dataclass(frozen=True, slots=True)
class Directory:
    users: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Directory:
        """From ``path``, else ``$CADENZA_CONFIG``, else ``./cadenza.toml`` (an empty directory
        when there is none: every check then refuses named users it does not know)."""
        source = path or os.environ.get("CADENZA_CONFIG") or "cadenza.toml"
        file = Path(source)
        if not file.is_file():
            if path is not None or "CADENZA_CONFIG" in os.environ:
                raise CadenzaError(f"no such configuration file: {file}")
            return cls()
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise CadenzaError(f"{file}: {exc}") from None
        users = data.get("users", {})
        if not isinstance(users, dict):
            raise CadenzaError(f"{file}: [users] must be a table of user = [roles]")
        parsed: dict[str, frozenset[str]] = {}
        for name, roles in users.items():
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise CadenzaError(f"{file}: users.{name} must be a list of role names")
            parsed[name] = frozenset(roles)
        return cls(parsed)

    def roles(self, user: str) -> frozenset[str]:
        return self.users.get(user, frozenset())

    def matches(self, user: str, allowed: Iterable[str]) -> bool:
        """Whether ``user`` is one of ``allowed``, by name or by role."""
        allowed = set(allowed)
        return user in allowed or bool(self.roles(user) & allowed)

    def check(self, user: str, allowed: Iterable[str], what: str) -> None:
        allowed = list(allowed)
        if self.matches(user, allowed):
            return
        known = "" if user in self.users else f" (unknown user {user!r})"
        roles = ", ".join(sorted(self.roles(user))) or "no roles"
        raise ApprovalDenied(
            f"{user} may not {what}: it needs one of {', '.join(allowed)}; "
            f"{user} has {roles}{known}"
        )
