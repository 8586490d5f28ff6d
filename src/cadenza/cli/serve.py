"""``cadenza serve``: the HTTP API (the ``server`` extra: FastAPI and uvicorn)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cadenza.cli._app import DbOption, HandlersOption, _run, app, configure_logs, err, fail
from cadenza.core.errors import CadenzaError

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The configuration file (default: $CADENZA_CONFIG, else ./cadenza.toml).",
        show_default=False,
    ),
]


def need_server_extra() -> None:
    """Fail in one line, saying what to install, without the server extra."""
    try:
        import fastapi  # noqa: F401
        import jwt  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as exc:
        fail(f"cadenza serve needs the server extra ({exc.name} is missing): "
             "pip install 'cadenza[server]'")  # fmt: skip


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="The port (0: any free one).", min=0, max=65535)
    ] = 8000,
    workers_inline: Annotated[
        int | None,
        typer.Option(
            "--workers-inline",
            help="Runs this process executes at once; 0: only enqueue and read (workers "
            "execute). Default: 16 on SQLite, 0 on PostgreSQL.",
            min=0,
            show_default=False,
        ),
    ] = None,
    workflows: Annotated[
        list[str] | None,
        typer.Option(
            "--workflow",
            "-w",
            help="A workflow the API serves (module:attribute or file; repeatable).",
        ),
    ] = None,
    handlers: HandlersOption = None,
    config: ConfigOption = None,
    poll_interval: Annotated[
        float,
        typer.Option(help="Seconds between looks for events of other processes.", min=0.01),
    ] = 0.5,
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR (to stderr).")
    ] = "WARNING",
) -> None:
    """Serve the HTTP API: workflows, runs, approvals, audit and live events, with API keys
    or OIDC tokens. On SQLite it executes runs itself; on PostgreSQL it enqueues them for
    `cadenza worker` processes.

    It prints `listening on http://HOST:PORT` on stderr once it accepts requests, and stops
    on SIGTERM or SIGINT."""
    need_server_extra()
    from cadenza.server.catalog import Catalog
    from cadenza.server.config import ServerConfig

    observers = configure_logs(log_level)
    try:
        settings = ServerConfig.load(config)
        catalog = Catalog.load(workflows or [], handlers or [])
    except CadenzaError as exc:
        fail(str(exc))
    _run(lambda: _serve(db, host, port, workers_inline, settings, catalog, poll_interval,
                        observers, log_level))  # fmt: skip


async def _serve(
    db: str | None,
    host: str,
    port: int,
    workers_inline: int | None,
    settings: Any,
    catalog: Any,
    poll_interval: float,
    observers: list[Any],
    log_level: str,
) -> None:
    import uvicorn

    from cadenza.server.app import create_app
    from cadenza.server.service import Server

    server = Server(
        db,
        config=settings,
        catalog=catalog,
        workers_inline=workers_inline,
        poll_interval=poll_interval,
        observers=observers,
    )
    await server.open()  # here, so that a bad store is a one-line error before listening
    try:
        web = uvicorn.Server(
            uvicorn.Config(
                create_app(server),
                host=host,
                port=port,
                log_level=log_level.lower(),
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=10,
            )
        )
        # uvicorn stops on SIGTERM/SIGINT and then raises the signal again with the handler
        # it found: let that be a no-op, so that the server is closed below, not killed.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _ignore)
        serving = asyncio.ensure_future(web.serve())
        while not web.started and not serving.done():
            await asyncio.sleep(0.01)
        if web.started:
            bound = web.servers[0].sockets[0].getsockname()
            shape = (
                f"executing runs ({server.workers_inline} inline workers)"
                if server.executes
                else "enqueuing runs for workers"
            )
            where = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            sys.stderr.write(
                f"cadenza serve: listening on http://{where}:{bound[1]} "
                f"({server.dialect} store, {shape}, {len(catalog)} workflow version(s))\n"
            )
            sys.stderr.flush()
        await serving
        if not web.started:
            raise CadenzaError(f"could not listen on {host}:{port} (see the lines above)")
    finally:
        await server.close()
    err.print("cadenza serve: stopped", highlight=False, markup=False)


def _ignore(signum: int, frame: Any) -> None:
    """Stands for the signal handlers while uvicorn serves (it installs its own)."""
