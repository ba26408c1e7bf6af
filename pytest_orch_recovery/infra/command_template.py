"""A user's agent command template: parsed once into argv words, filled without a shell.

``--orch-agent "my-agent --task {task_id} --prompt-file {prompt_file}"`` is split with
:func:`shlex.split` when it is validated; each placeholder is then replaced as plain text
*inside its own word*, and the words are run directly (no ``/bin/sh -c``). So no value can
change the command's word structure, whatever it contains: quotes, ``$(...)``, newlines.

What a template cannot make safe is a program that reads one of its arguments as code:
``sh -c 'echo {task_id} > out'`` hands the value to a second shell. A placeholder may
therefore only sit in a word that is otherwise plain (``--task={task_id}``,
``{workdir}/notes.md``), never in a word with spaces or shell syntax, nor right after ``-c``
or ``-e``. Every value is also in the environment (``ORCH_TASK_ID`` and friends), which is how
a script reads it safely: ``sh -c 'echo "$ORCH_TASK_ID" > out'``.

One list, :data:`~pytest_orch_recovery.infra.placeholders.PLACEHOLDERS`, serves the option
validator and the command builder.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass

from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.infra.placeholders import PLACEHOLDERS, known

MAX_TEMPLATE_CHARS = 4096
# Arguments after which most interpreters take the next word as code.
_CODE_FLAGS = frozenset({"-c", "-e", "-lc", "-ic", "-ec", "--command", "--eval", "--exec"})
# Text that may sit next to a placeholder in one word: no whitespace, quotes or shell syntax.
_PLAIN = re.compile(r"[A-Za-z0-9_./:=,@%+-]*")


class TemplateError(OrchRecoveryError, ValueError):
    """A command template that cannot be used safely, and why."""


@dataclass(frozen=True)
class CommandTemplate:
    """The parsed template: argv words, each with its placeholders still in it.

    >>> t = parse_template("my-agent --task={task_id} {prompt}")
    >>> t.render({"task_id": "t1", "prompt": "say $(hi); rm -rf /"})
    ['my-agent', '--task=t1', 'say $(hi); rm -rf /']
    """

    source: str
    words: tuple[str, ...]

    def render(self, values: Mapping[str, str]) -> list[str]:
        """The argv: each placeholder replaced by its value as plain text in its word."""
        for key, value in values.items():
            if "\x00" in value:
                raise TemplateError(f"value of {{{key}}} contains a NUL character")
        filled = {name: values.get(name, "") for name in PLACEHOLDERS}
        return [word.format_map(filled) for word in self.words]


def parse_template(text: str) -> CommandTemplate:
    """Split and check ``text``; :class:`TemplateError` says what is wrong.

    >>> parse_template("sh -c 'echo {task_id} > out'")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.infra.command_template.TemplateError: placeholder {task_id} is ...
    """
    if not text.strip():
        raise TemplateError("the command template is empty")
    if "\x00" in text:
        raise TemplateError("the command template contains a NUL character")
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(
            f"the command template is {len(text)} characters long; the "
            f"limit is {MAX_TEMPLATE_CHARS}"
        )
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise TemplateError(f"cannot split the command template into words: {exc}") from None
    if not words:
        raise TemplateError("the command template is empty")
    for index, word in enumerate(words):
        names, literal = _placeholders(word)
        if not names:
            continue
        shown = "{" + names[0] + "}"
        if index == 0:
            raise TemplateError(f"placeholder {shown} cannot be the program to run")
        if not _PLAIN.fullmatch(literal):
            raise TemplateError(
                f"placeholder {shown} is inside the word {word!r}, which a program would read "
                "as a script: put the placeholder in a word of its own, or read "
                f'"${PLACEHOLDERS[names[0]]}" from the environment in the script'
            )
        if words[index - 1] in _CODE_FLAGS:
            raise TemplateError(
                f"placeholder {shown} follows {words[index - 1]}, where a program runs its "
                f'argument as code; read "${PLACEHOLDERS[names[0]]}" from the environment '
                "instead"
            )
    return CommandTemplate(text, tuple(words))


def _placeholders(word: str) -> tuple[list[str], str]:
    """The placeholder names in ``word`` and its literal text (``{{``/``}}`` unescaped)."""
    names: list[str] = []
    literal = ""
    try:
        parsed = list(string.Formatter().parse(word))
    except ValueError as exc:
        raise TemplateError(
            f"word {word!r}: {exc} (write {{{{ and }}}} for literal braces)"
        ) from None
    for text, field, spec, conversion in parsed:
        literal += text
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            raise TemplateError(f"unknown placeholder {{{field}}}; known: {known()}")
        if spec or conversion:
            raise TemplateError(f"placeholder {{{field}}} takes no format or conversion")
        names.append(field)
    if any(c in literal for c in "{}"):
        raise TemplateError(f"word {word!r}: a literal brace in a word with a placeholder")
    return names, literal
