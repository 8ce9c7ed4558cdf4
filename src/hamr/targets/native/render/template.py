"""The one templating function of code generation: ``$name`` placeholders (string.Template).

Kernel text is C, full of braces, so placeholders are ``$name`` (``${name}`` before an
identifier character). Every placeholder must be given: a missing value raises KeyError
instead of leaving a hole in generated code. Values are inserted as text and not scanned again.
"""

from __future__ import annotations

from string import Template


def render(template: str, **values: object) -> str:
    """`template` with each ``$name`` replaced by ``str(values[name])``."""
    return Template(template).substitute({key: str(value) for key, value in values.items()})
