"""Who may do what over the API: pure rules over a proven caller, no I/O.

**Roles.** A caller's roles are those its credential proves (an API key's roles, or the
groups of a token mapped by the issuer's ``role_map``) and, when its identity is mapped to a
configured user (``[server.identities]``), that user's roles in ``[users]``. Three roles give
power over the API itself:

- ``viewer``: read workflows, runs, events, state and streams;
- ``operator``: what a viewer may, and start, cancel, pause, unpause, re-drive, fork and
  signal runs;
- ``admin``: all of that, for every workflow (and runs of workflows this server does not
  know), and the server's audit log;

and ``auditor``: what a viewer may, and verify and export audit trails (which admins may
too). The approval roles that
workflows name are not server roles: deciding is for the configured user an approval names
(by name or role), which the engine checks, with quorum and one decision per person.

**Objects.** A workflow with ``allowed_users`` is visible only to callers among them (by
their user's name, or a role) and to admins; its runs are invisible to everyone else: an id
of one gives 404, as an unknown id does, and lists and streams leave them out.

**The engine's actor.** The engine applies a workflow's ``allowed_users`` itself and records
its refusals in the run's log; it is given the caller's configured user when the identity is
mapped to one, else the proven identity's own name (``key:ci``), which matches no configured
user, so that a refusal names who was refused."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cadenza.core.errors import CadenzaError
from cadenza.identity import Directory
from cadenza.server.auth import Identity

__all__ = ["PERMISSIONS", "SERVER_ROLES", "Access", "Caller", "Permission", "Refused"]

Permission = Literal["read", "operate", "audit", "admin"]

#: Which roles grant each permission.
PERMISSIONS: dict[Permission, frozenset[str]] = {
    "read": frozenset({"viewer", "operator", "admin", "auditor"}),
    "operate": frozenset({"operator", "admin"}),
    "audit": frozenset({"auditor", "admin"}),
    "admin": frozenset({"admin"}),
}
SERVER_ROLES = ("viewer", "operator", "admin", "auditor")


class Refused(CadenzaError):
    """The caller may not do this; the message says why (the server answers 403)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """A proven identity, the configured user it acts as (if mapped), and its roles."""

    identity: Identity
    user: str | None
    roles: frozenset[str]

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def actor(self) -> str:
        """Who the engine is told acts: the mapped user, else the proven identity."""
        return self.user or self.identity.name

    def shown(self) -> str:
        """The caller in a message: ``key:ci`` or ``oidc:abc (olivia)``."""
        return f"{self.name} ({self.user})" if self.user else self.name


class Access:
    """The rules of the module docstring over the configured users."""

    def __init__(self, directory: Directory, identities: dict[str, str]) -> None:
        self.directory = directory
        self.identities = identities

    def caller(self, identity: Identity) -> Caller:
        user = self.identities.get(identity.name)
        roles = identity.roles | (self.directory.roles(user) if user else frozenset())
        return Caller(identity, user, frozenset(roles))

    def may(self, caller: Caller, permission: Permission) -> bool:
        return bool(caller.roles & PERMISSIONS[permission])

    def require(self, caller: Caller, permission: Permission, what: str) -> None:
        """Refuse unless the caller holds a role that grants ``permission``."""
        if self.may(caller, permission):
            return
        needed = " or ".join(sorted(PERMISSIONS[permission]))
        held = ", ".join(sorted(caller.roles)) or "no roles"
        raise Refused(f"{caller.shown()} may not {what}: it needs the role {needed}; it has {held}")

    def sees(self, caller: Caller, allowed_users: Iterable[str] | None) -> bool:
        """Whether the caller may see a workflow with these ``allowed_users`` (``None``: a
        workflow this server does not know, which only admins see)."""
        if not self.may(caller, "read"):
            return False
        if self.may(caller, "admin"):
            return True
        if allowed_users is None:
            return False
        allowed = set(allowed_users)
        if not allowed:
            return True
        if caller.user is not None and self.directory.matches(caller.user, allowed):
            return True
        return bool(caller.roles & allowed)

    def deciding_names(self, caller: Caller) -> list[str]:
        """The names an approval must list for the caller to decide it (its user's and
        roles'); none for an identity mapped to no configured user."""
        return self.directory.names(caller.user) if caller.user else []
