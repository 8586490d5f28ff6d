"""The builder's verbs for composite and special steps: parallel, map, conditional, loop,
wait, approval, rollback and webhook. :class:`cadenza.graph.builder.Workflow` has them; they
build the step and add it to the workflow's :class:`~cadenza.graph._draft.Draft`, the only
state they touch."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cadenza.core.errors import DefinitionError
from cadenza.graph._builder_args import (
    StepRef,
    _condition,
    _enum,
    _policy,
    _positive,
)
from cadenza.graph._draft import Draft
from cadenza.graph.handlers import make_handler
from cadenza.graph.ir import (
    FailurePolicy,
    Route,
    RouteMode,
    Step,
    StepKind,
)
from cadenza.resilience.retry import RetryPolicy


class KindVerbs:
    """The verbs for the composite and special step kinds."""

    _draft: Draft

    def parallel(
        self,
        name: str,
        branches: Sequence[Any],
        *,
        max_concurrent: int | None = None,
        on_failure: str | FailurePolicy = FailurePolicy.FAIL_FAST,
    ) -> str:
        """Run ``branches`` concurrently (each a function, a list of functions run in order, or
        a sub-``Workflow``) and join their updates, in branch order, through the reducers."""
        path = f"steps.{name}"
        if not branches:
            raise DefinitionError("a parallel step needs at least one branch", path=path)
        graphs = tuple(
            self._draft.branch(b, f"{path}.branches[{i}]") for i, b in enumerate(branches)
        )
        return self._draft.add(
            Step(
                name=name,
                kind=StepKind.PARALLEL,
                branches=graphs,
                max_concurrent=_positive(max_concurrent, f"{path}.max_concurrent"),
                on_failure=_enum(FailurePolicy, on_failure, f"{path}.on_failure"),
            )
        )

    def map(
        self,
        name: str,
        *,
        items: str | Callable[..., Any],
        branch: Any,
        max_concurrent: int | None = None,
        on_failure: str | FailurePolicy = FailurePolicy.FAIL_FAST,
    ) -> str:
        """Run ``branch`` once per element of a list known only at run time: the state key
        ``items`` or the list ``items(state)`` returns. Each branch sees ``ctx.item`` and
        ``ctx.index``; updates join in item order."""
        path = f"steps.{name}"
        return self._draft.add(
            Step(
                name=name,
                kind=StepKind.MAP,
                items=items,
                body=self._draft.branch(branch, f"{path}.branch"),
                max_concurrent=_positive(max_concurrent, f"{path}.max_concurrent"),
                on_failure=_enum(FailurePolicy, on_failure, f"{path}.on_failure"),
            )
        )

    def conditional(
        self,
        name: str,
        routes: Mapping[StepRef, str | Callable[..., Any]] | Sequence[StepRef] | None = None,
        *,
        router: Callable[..., Any] | None = None,
        default: StepRef | None = None,
        mode: str | RouteMode = RouteMode.FIRST,
    ) -> str:
        """Route to steps by condition.

        Either ``routes`` maps each target step to an expression (``"amount > 10000"``) or a
        predicate ``fn(state) -> bool``; or ``router(state)`` returns the target name (or a
        list of names, or ``None``) and ``routes`` lists the targets it may return. With no
        match the ``default`` runs; with no default, nothing downstream of this step runs.
        A target given as a function that is not a step yet is added as a task."""
        path = f"steps.{name}"
        compiled: list[Route] = []
        if router is None:
            if not isinstance(routes, Mapping) or not routes:
                raise DefinitionError(
                    "give routes as {target: condition} or a router function", path=path
                )
            for i, (target, cond) in enumerate(routes.items()):
                compiled.append(
                    Route(self._draft.target(target), _condition(cond, f"{path}.routes[{i}]"))
                )
        else:
            if routes is None or isinstance(routes, Mapping | str):
                raise DefinitionError(
                    "a router needs the list of steps it may return: routes=[...]", path=path
                )
            compiled = [Route(self._draft.target(t)) for t in routes]
        return self._draft.add(
            Step(
                name=name,
                kind=StepKind.CONDITIONAL,
                routes=tuple(compiled),
                router=make_handler(router, path=f"{path}.router", inline=True)
                if router is not None
                else None,
                default=self._draft.target(default) if default is not None else None,
                mode=_enum(RouteMode, mode, f"{path}.mode"),
            )
        )

    def loop(
        self,
        name: str,
        *,
        body: Any,
        until: str | Callable[..., Any],
        max_iterations: int,
    ) -> str:
        """Repeat ``body`` until ``until`` holds (checked after each iteration). Reaching
        ``max_iterations`` without it holding fails the run."""
        path = f"steps.{name}"
        if not isinstance(max_iterations, int) or max_iterations < 1:
            raise DefinitionError(
                "max_iterations must be a positive integer (a loop without a bound could run "
                "forever)",
                path=f"{path}.max_iterations",
            )
        return self._draft.add(
            Step(
                name=name,
                kind=StepKind.LOOP,
                body=self._draft.branch(body, f"{path}.body"),
                until=_condition(until, f"{path}.until"),
                max_iterations=max_iterations,
            )
        )

    def wait(
        self,
        name: str,
        *,
        seconds: float | None = None,
        signal: str | None = None,
        output: str | None = None,
    ) -> str:
        """A durable timer (the run resumes after ``seconds`` even across a restart), or a
        wait for the named ``signal`` (``engine.signal``), failing after ``seconds`` if given;
        the signal's payload is stored under ``output``."""
        path = f"steps.{name}"
        if seconds is None and signal is None:
            raise DefinitionError("give seconds, a signal, or both", path=path)
        if seconds is not None and (not isinstance(seconds, int | float) or seconds < 0):
            raise DefinitionError("seconds must be a number >= 0", path=f"{path}.seconds")
        options = {"signal": signal, "output": output} if signal is not None else {}
        return self._draft.add(
            Step(
                name=name,
                kind=StepKind.WAIT,
                seconds=float(seconds) if seconds is not None else None,
                writes=frozenset({output}) if output else None,
                options=options,
            )
        )

    def approval(
        self,
        name: str,
        *,
        approvers: Sequence[str],
        quorum: int = 1,
        required_for: Sequence[str] = (),
        timeout: float | None = None,
        on_timeout: str = "reject",
        summary: str = "",
        show: Sequence[str] = (),
        on_reject: StepRef | None = None,
    ) -> str:
        """A HUMAN_APPROVAL step: the run waits (holding nothing) until ``quorum`` distinct
        ``approvers`` (users or roles) approve, or one rejects (the step fails, and with it the
        run, after compensation). ``required_for``: state flags of which one must hold for the
        approval to apply (otherwise it is skipped). ``timeout`` seconds, then ``on_timeout``:
        ``"reject"``, ``"approve"`` or ``"escalate:role1,role2"`` (a new period for them).
        ``summary`` and the state keys in ``show`` are what the approver sees. A rejection
        fails the run, or with ``on_reject`` goes to that step instead of the ones after."""
        path = f"steps.{name}"
        if not approvers or isinstance(approvers, str):
            raise DefinitionError("approvers is a list of users or roles", path=f"{path}.approvers")
        if not isinstance(quorum, int) or quorum < 1:
            raise DefinitionError("quorum must be a positive integer", path=f"{path}.quorum")
        if on_timeout not in ("reject", "approve") and not on_timeout.startswith("escalate:"):
            raise DefinitionError(
                f"on_timeout is 'reject', 'approve' or 'escalate:ROLE', got {on_timeout!r}",
                path=f"{path}.on_timeout",
            )
        if timeout is not None and timeout <= 0:
            raise DefinitionError("timeout must be a positive number", path=f"{path}.timeout")
        options = {
            "approvers": list(approvers),
            "quorum": quorum,
            "required_for": list(required_for),
            "timeout": timeout,
            "on_timeout": on_timeout,
            "summary": summary,
            "show": list(show),
            "on_reject": self._draft.target(on_reject) if on_reject is not None else None,
        }
        return self._draft.add(Step(name=name, kind=StepKind.HUMAN_APPROVAL, options=options))

    def rollback(self, name: str, *, reason: str = "") -> str:
        """A ROLLBACK step: reaching it compensates the completed steps (newest first) and
        fails the run with ``reason``. Put it on a route, e.g. a rejected payment."""
        return self._draft.add(Step(name=name, kind=StepKind.ROLLBACK, options={"reason": reason}))

    def webhook(
        self,
        name: str,
        *,
        endpoint: str,
        method: str = "POST",
        payload: Sequence[str] | None = None,
        output: str | None = None,
        headers: Mapping[str, str] | None = None,
        secret_env: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        breaker: str | None = None,
        callback: str | None = None,
    ) -> str:
        """A WEBHOOK step: ``method`` the JSON of the state keys ``payload`` (the whole state
        when ``None``) to ``endpoint`` (or to ``config.webhook_endpoints[name]``), signed with
        HMAC-SHA256 when ``secret_env`` names an environment variable holding the key (see
        :mod:`cadenza.steps.webhook` for the scheme). The answer (JSON, else text) is stored
        under ``output`` when given. Connection errors, timeouts (default 30 s), 5xx, 408 and
        429 are retried per ``retry`` (else the workflow's ``max_retries``); other statuses
        fail the step at once. Every attempt sends the same ``Idempotency-Key``. With
        ``callback`` (a state key), the step then waits for the receiver's signed callback to
        ``cadenza serve`` and stores its body there (see :mod:`cadenza.steps.webhook`)."""
        path = f"steps.{name}"
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise DefinitionError(
                f"endpoint must be an http(s) URL, got {endpoint!r}", path=f"{path}.endpoint"
            )
        verb = method.upper() if isinstance(method, str) else method
        if verb not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise DefinitionError(
                f"{method!r} is not one of: GET, POST, PUT, PATCH, DELETE", path=f"{path}.method"
            )
        if payload is not None and (
            isinstance(payload, str) or not all(isinstance(k, str) for k in payload)
        ):
            raise DefinitionError(
                "payload is a list of state keys (or None for the whole state)",
                path=f"{path}.payload",
            )
        if output is not None and (not isinstance(output, str) or not output):
            raise DefinitionError("output is the state key to store the answer in", path=path)
        if secret_env is not None and (not isinstance(secret_env, str) or not secret_env):
            raise DefinitionError(
                "secret_env is the name of an environment variable", path=f"{path}.secret_env"
            )
        if callback is not None and (not isinstance(callback, str) or not callback):
            raise DefinitionError(
                "callback is the state key to store the callback's body in",
                path=f"{path}.callback",
            )
        if callback is not None and not secret_env:
            raise DefinitionError(
                "a step that waits for a callback needs secret_env: callbacks are verified "
                "with its secrets",
                path=f"{path}.callback",
            )
        options = {
            "endpoint": endpoint,
            "method": verb,
            "payload": list(payload) if payload is not None else None,
            "output": output,
            "headers": {str(k): str(v) for k, v in (headers or {}).items()},
            "secret_env": secret_env,
        }
        return self._draft.add(
            Step(
                name=name,
                kind=StepKind.WEBHOOK,
                policy=_policy(timeout, None, 0.0, retry, path, breaker=breaker),
                writes=frozenset(k for k in (output, callback) if k),
                options={**options, "callback": callback} if callback else options,
            )
        )
