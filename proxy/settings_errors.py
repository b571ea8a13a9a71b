"""Configuration errors as an operator reads them: one line per wrong key, never a value.

pydantic's own rendering prints ``input_value=``, the whole section for a section-level check
(the Neo4j password included), and the command line would add a traceback. Here each problem
is the key's dotted name (``audit.pth``, ``auth.oidc[1].issuer``) and pydantic's ``msg``, which
describes what was expected and never quotes what was found; ``input`` and ``ctx`` are dropped.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


class ConfigurationError(ValueError):
    """The configuration is wrong; ``problems`` are safe to print (they name no value)."""

    def __init__(self, source: Path | None, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        where = f"configuration {source}" if source is not None else "configuration"
        super().__init__(f"{where}: " + "; ".join(problems))

    def lines(self) -> list[str]:
        """The message as a few lines for the terminal: where, then one line per problem."""
        where = f"configuration {self.source}" if self.source is not None else "configuration"
        return [f"{where} is not valid:", *(f"  {problem}" for problem in self.problems)]


def validation_problems(error: ValidationError) -> list[str]:
    """One line per problem of ``error``, naming the key and its section, never a value."""
    problems: list[str] = []
    for detail in error.errors(include_input=False, include_context=False, include_url=False):
        location = [part for part in detail["loc"] if part not in _UNION_TAGS]
        *section_path, last = location or ["(top level)"]
        section = _dotted(section_path)
        if detail["type"] == "extra_forbidden":
            where = f"section [{section}]" if section else "the top level"
            problems.append(f"unknown key {last!r} in {where}")
        elif detail["type"] == "missing":
            problems.append(f"{_dotted(location)}: required, not set")
        else:
            # A model-level check (``mode="after"``) is located at its section.
            name = _dotted(location) or "(top level)"
            problems.append(f"{name}: {_message(detail['msg'])}")
    return problems


# pydantic names the branch of a union (``dict[any,any]``, ``function-after[...]``) in ``loc``;
# an operator thinks in keys.
_UNION_TAGS = frozenset({"dict[any,any]", "list[any]"})


def _dotted(parts: list[int | str] | tuple[int | str, ...]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("function-"):
            continue
        else:
            text += f".{part}" if text else part
    return text


def _message(msg: str) -> str:
    # Our own validators raise ValueError; pydantic prefixes "Value error, ".
    return msg.removeprefix("Value error, ")
