"""The server's part of ``cadenza.toml``: token issuers, which proven identities act as which
configured users, and limits.

```toml
[users]                          # the engine's users and roles (cadenza.identity)
olivia = ["compliance_officer"]

[server]
max_body_bytes = 1048576         # request bodies larger than this are refused (413)

[server.identities]              # a proven identity -> the configured user it acts as
"oidc:00u1a2b3" = "olivia"       # an OIDC subject (name_prefix + the token's sub)
"key:olivia-laptop" = "olivia"   # an API key, by its name

[[server.oidc]]                  # one table per trusted issuer
issuer = "https://login.example.com/"
audience = "cadenza-api"
algorithms = ["RS256"]
role_claim = "groups"
role_map = { "cadenza-operators" = "operator", "cadenza-admins" = "admin" }
```

An identity is proven by a credential (``key:<name>`` for an API key, ``<name_prefix><sub>``
for a token) and acts as a configured user only where ``[server.identities]`` says so: the
server never infers a user from a name. For that reason a configured user's name may not
contain ``:``, so that no proven identity can ever be read as one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadenza.core.errors import CadenzaError
from cadenza.identity import Directory

__all__ = ["DEFAULT_MAX_BODY", "ServerConfig"]

DEFAULT_MAX_BODY = 1024 * 1024
_OIDC_FIELDS = frozenset(
    {
        "issuer", "audience", "algorithms", "role_claim", "role_map", "subject_claim",
        "name_prefix", "leeway", "require_nbf", "refresh_interval", "max_key_age", "timeout",
        "allow_http_loopback",
    }
)  # fmt: skip
_SERVER_FIELDS = frozenset({"identities", "oidc", "max_body_bytes"})


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What ``cadenza serve`` reads from the configuration file (see the module docstring).
    ``oidc`` holds :class:`~cadenza.server.auth.tokens.OIDCConfig` values (typed loosely so
    that this module imports no PyJWT)."""

    directory: Directory = field(default_factory=Directory)
    identities: Mapping[str, str] = field(default_factory=dict)
    oidc: tuple[Any, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    origin: str = ""

    def __post_init__(self) -> None:
        users = self.directory.users
        odd = sorted(u for u in users if ":" in u)
        if odd:
            raise CadenzaError(
                f"user {odd[0]!r}: a configured user's name may not contain ':' (key:... and "
                "oidc:... are the names of proven identities; map them under "
                "[server.identities])"
            )
        prefixes = ("key:", *(c.name_prefix for c in self.oidc))
        for identity, user in self.identities.items():
            if not identity.startswith(prefixes):
                raise CadenzaError(
                    f"server.identities: {identity!r} is not a proven identity: it must start "
                    f"with {' or '.join(prefixes)}"
                )
            if user not in users:
                raise CadenzaError(
                    f"server.identities: {identity!r} maps to {user!r}, which is not a "
                    "configured user (list it under [users])"
                )
        if not 1 <= self.max_body_bytes <= 64 * 1024 * 1024:
            raise CadenzaError("server.max_body_bytes must be between 1 and 67108864")

    @classmethod
    def load(cls, path: str | Path | None = None) -> ServerConfig:
        """From the file :meth:`Directory.load` reads (``path``, ``$CADENZA_CONFIG`` or
        ``./cadenza.toml``); every problem is one line naming the file."""
        import os
        import tomllib

        directory = Directory.load(path)
        source = Path(path or os.environ.get("CADENZA_CONFIG") or "cadenza.toml")
        if not source.is_file():
            return cls(directory=directory, origin=directory.origin)
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CadenzaError(f"{source}: {exc}") from None  # Directory.load said it first
        try:
            return cls.from_mapping(data.get("server", {}), directory, str(source))
        except CadenzaError as exc:
            raise CadenzaError(f"{source}: {exc}") from None

    @classmethod
    def from_mapping(cls, server: Any, directory: Directory, origin: str = "") -> ServerConfig:
        """From the ``[server]`` table, already parsed."""
        if not isinstance(server, Mapping):
            raise CadenzaError("[server] must be a table")
        unknown = sorted(set(server) - _SERVER_FIELDS)
        if unknown:
            raise CadenzaError(
                f"server.{unknown[0]}: unknown setting (known: {', '.join(sorted(_SERVER_FIELDS))})"
            )
        identities = server.get("identities", {})
        if not isinstance(identities, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in identities.items()
        ):
            raise CadenzaError('[server.identities] must map identities to users: "key:ci" = "ci"')
        issuers = server.get("oidc", [])
        if isinstance(issuers, Mapping):
            issuers = [issuers]
        if not isinstance(issuers, list):
            raise CadenzaError("[[server.oidc]] must be a table per issuer")
        body = server.get("max_body_bytes", DEFAULT_MAX_BODY)
        if not isinstance(body, int) or isinstance(body, bool):
            raise CadenzaError("server.max_body_bytes must be a whole number of bytes")
        return cls(
            directory=directory,
            identities=dict(identities),
            oidc=tuple(_issuer(i, entry) for i, entry in enumerate(issuers)),
            max_body_bytes=body,
            origin=origin,
        )

    def user_for(self, identity: str) -> str | None:
        """The configured user ``identity`` acts as, if one is mapped."""
        return self.identities.get(identity)


def _issuer(index: int, entry: Any) -> Any:
    where = f"server.oidc[{index}]"
    if not isinstance(entry, Mapping):
        raise CadenzaError(f"{where} must be a table")
    unknown = sorted(set(entry) - _OIDC_FIELDS)
    if unknown:
        raise CadenzaError(
            f"{where}.{unknown[0]}: unknown setting (known: {', '.join(sorted(_OIDC_FIELDS))})"
        )
    for required in ("issuer", "audience"):
        if not isinstance(entry.get(required), str):
            raise CadenzaError(f"{where}.{required} must be set (a string)")
    try:
        from cadenza.server.auth.tokens import OIDCConfig
    except ModuleNotFoundError as exc:
        raise CadenzaError(
            f"{where}: verifying tokens needs the server extra: pip install 'cadenza[server]' "
            f"({exc.name} is missing)"
        ) from None
    settings = dict(entry)
    if "algorithms" in settings:
        algorithms = settings["algorithms"]
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise CadenzaError(f"{where}.algorithms must be a list of names")
        settings["algorithms"] = tuple(algorithms)
    try:
        return OIDCConfig(**settings)
    except TypeError as exc:
        raise CadenzaError(f"{where}: {exc}") from None
    except CadenzaError as exc:
        raise CadenzaError(f"{where}: {exc}") from None
