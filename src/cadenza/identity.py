"""Who may do what: users and their roles, read from ``cadenza.toml`` (``[users]``) or from
the file named by ``CADENZA_CONFIG``.

```toml
[users]
olivia = ["compliance_officer"]
victor = ["viewer"]
```

Only configured users act. An approver list or ``allowed_users`` names users or roles; a
*configured user* matches it by their name or by one of their roles. A name that is not a
configured user (a role's name included) matches nothing, so it is refused like any unknown
user: a role is something users hold, never someone who decides. For the same reason a name
may not be both a user and a role: ``approvers = ["olivia"]`` must mean one thing."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cadenza.core.errors import CadenzaError


class ApprovalDenied(CadenzaError):
    """An actor asked for something their roles do not allow; the refusal is recorded."""


@dataclass(frozen=True, slots=True)
class Directory:
    """The configured users and their roles. An empty directory configures nobody: every
    check that needs a user then refuses, and a named actor is taken as a label only where
    nothing is guarded (see :meth:`authorize`)."""

    users: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: Where the users came from, for refusals: a person told "unknown user" must be able to
    #: see that no configuration file was found, or which one was read.
    origin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        both = self.users.keys() & self.role_names
        if both:
            name = min(both)
            holders = ", ".join(sorted(u for u, roles in self.users.items() if name in roles))
            raise CadenzaError(
                f"{name!r} is both a user and a role (held by {holders}), so a list naming it "
                "would be ambiguous; rename the user or the role"
            )

    @classmethod
    def load(cls, path: str | Path | None = None) -> Directory:
        """From ``path``, else ``$CADENZA_CONFIG``, else ``./cadenza.toml`` (an empty directory
        when there is none). Every problem with the file is a one-line :class:`CadenzaError`
        that starts with the file's name."""
        source = path or os.environ.get("CADENZA_CONFIG") or "cadenza.toml"
        file = Path(source)
        if not file.is_file():
            if path is not None or "CADENZA_CONFIG" in os.environ:
                raise CadenzaError(f"no such configuration file: {file}")
            return cls(origin=f"found no {file} in {Path.cwd()} and CADENZA_CONFIG is not set")
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise CadenzaError(f"{file}: cannot read it: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CadenzaError(
                f"{file}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
                "save it as UTF-8"
            ) from None
        try:
            data = tomllib.loads(text)
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
        try:
            return cls(parsed, origin=f"read from {file.resolve()}")
        except CadenzaError as exc:
            raise CadenzaError(f"{file}: {exc}") from None

    @property
    def role_names(self) -> frozenset[str]:
        """Every role some user holds."""
        return frozenset().union(*self.users.values())

    def is_user(self, name: str) -> bool:
        return name in self.users

    def roles(self, user: str) -> frozenset[str]:
        return self.users.get(user, frozenset())

    def matches(self, user: str, allowed: Iterable[str]) -> bool:
        """Whether ``user`` is a configured user who is one of ``allowed``, by name or role."""
        if user not in self.users:
            return False
        allowed = set(allowed)
        return user in allowed or bool(self.users[user] & allowed)

    def names(self, user: str) -> list[str]:
        """The names that stand for ``user`` in an allowed list: their own and their roles',
        none for a name that is not a configured user (:meth:`matches` is true exactly when
        one of them is listed). Listing what a user may decide looks these up."""
        if user not in self.users:
            return []
        return [user, *sorted(self.users[user])]

    def check_user(self, user: str, what: str) -> None:
        """Refuse a name that is not a configured user (whatever ``what`` needs)."""
        if user in self.users:
            return
        if user in self.role_names:
            why = f"{user!r} is a role, and roles do not act: name the user who holds it"
        elif self.users:
            why = "not a configured user" + (f"; users are {self.origin}" if self.origin else "")
        else:
            where = f"{self.origin}; " if self.origin else ""
            why = f"no users are configured: {where}list them under [users] in cadenza.toml"
        raise ApprovalDenied(f"{user} may not {what}: unknown user {user!r} ({why})")

    def check(self, user: str, allowed: Iterable[str], what: str) -> None:
        """Refuse ``user`` unless a configured user who is one of ``allowed``."""
        allowed = list(allowed)
        self.check_user(user, what)
        if self.matches(user, allowed):
            return
        roles = ", ".join(sorted(self.roles(user))) or "no roles"
        raise ApprovalDenied(
            f"{user} may not {what}: it needs one of {', '.join(allowed) or 'nobody'}; "
            f"{user} has {roles}"
        )

    def authorize(self, actor: str | None, allowed: Iterable[str], what: str) -> None:
        """The rule for starting and controlling runs. Where ``allowed`` names anyone, only a
        configured user among them may (a caller who gives no name is refused). Where it is
        empty, anyone may, but a caller who gives a name must be a configured user once any
        user is configured: the name goes into the audit trail and must not be one that
        nobody holds (or a role's). With no users configured at all, names are labels."""
        allowed = list(allowed)
        if allowed:
            if not actor:
                raise ApprovalDenied(
                    f"a caller who did not say who they are may not {what}: it needs one of "
                    f"{', '.join(allowed)}; say who you are (actor / --as)"
                )
            self.check(actor, allowed, what)
        elif actor and self.users:
            self.check_user(actor, what)
