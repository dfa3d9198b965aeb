"""The one error of the templating package: a set that cannot be rendered."""

from __future__ import annotations


class TemplateError(Exception):
    """A set that cannot be rendered; ``str()`` names set, file and line."""

    def __init__(self, template_set: str, file: str, line: int | None, problem: str) -> None:
        where = f"{file}, line {line}" if line else file
        super().__init__(f"template set {template_set!r}, {where}: {problem}")
        self.template_set = template_set
        self.file = file
        self.line = line
        self.problem = problem
