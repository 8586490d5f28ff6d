"""``ValidationNode``: check the tool calls of the last AI message against schemas and
answer each with a ``ToolMessage`` holding the validated arguments or the errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.tools.base import create_schema_from_function
from pydantic import BaseModel, ValidationError

__all__ = ("ValidationNode",)


def _default_format_error(error: BaseException, call: dict[str, Any], schema: Any) -> str:
    return f"{error!r}\n\nRespond after fixing all validation errors."


class ValidationNode:
    """Validates tool calls instead of running them (for extraction with a chat model)."""

    def __init__(
        self,
        schemas: Sequence[BaseTool | type[BaseModel] | Callable[..., Any]],
        *,
        format_error: Callable[[BaseException, dict[str, Any], Any], str] | None = None,
        name: str = "validation",
        tags: list[str] | None = None,
    ) -> None:
        self.name = name
        self.tags = tags
        self._format_error = format_error or _default_format_error
        self.schemas_by_name: dict[str, type[BaseModel]] = {}
        for schema in schemas:
            if isinstance(schema, BaseTool):
                args = schema.args_schema
                if not (isinstance(args, type) and issubclass(args, BaseModel)):
                    raise ValueError(
                        "Validation node only works with tools that have a pydantic BaseModel "
                        f"args_schema. Got {schema.name} with args_schema: {args}."
                    )
                self.schemas_by_name[schema.name] = args
            elif isinstance(schema, type) and issubclass(schema, BaseModel):
                self.schemas_by_name[schema.__name__] = schema
            elif callable(schema):
                self.schemas_by_name[schema.__name__] = create_schema_from_function(
                    "Validation", schema
                )
            else:
                raise ValueError(
                    "Unsupported input to ValidationNode. Expected BaseModel, tool or "
                    f"function. Got: {type(schema)}."
                )

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return name or self.name

    def invoke(self, input: Any, config: dict[str, Any] | None = None, **_: Any) -> Any:
        if isinstance(input, list):
            kind, messages = "list", input
        elif messages := input.get("messages", []):
            kind = "dict"
        else:
            raise ValueError("No message found in input")
        last = messages[-1]
        if not isinstance(last, AIMessage):
            raise ValueError("Last message is not an AIMessage")
        outputs = [self._check(call) for call in last.tool_calls]
        return outputs if kind == "list" else {"messages": outputs}

    async def ainvoke(self, input: Any, config: dict[str, Any] | None = None, **_: Any) -> Any:
        return self.invoke(input, config)

    def _check(self, call: dict[str, Any]) -> ToolMessage:
        schema = self.schemas_by_name[call["name"]]
        try:
            content = schema.model_validate(call["args"]).model_dump_json()
        except ValidationError as exc:
            return ToolMessage(
                content=self._format_error(exc, call, schema),
                name=call["name"],
                tool_call_id=call["id"],
                additional_kwargs={"is_error": True},
            )
        return ToolMessage(content=content, name=call["name"], tool_call_id=call["id"])
