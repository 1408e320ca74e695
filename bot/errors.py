"""Domain errors: each names the template that explains it to the user.

Services raise them; the handler edge (handlers/errors.py) renders the template in the
user's language. Nothing is changed when one is raised inside a transaction.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal the user can understand and act on."""

    template = "errors/generic.j2"

    def __init__(self, **context: Any) -> None:
        super().__init__(f"{type(self).__name__} {context}")
        self.context = context


class NotAllowed(DomainError):
    """The caller's roles or scope do not allow this."""

    template = "errors/not_allowed.j2"


class BadArguments(DomainError):
    """A command was given arguments it cannot use; ``usage`` names the usage template."""

    template = "errors/bad_arguments.j2"


class UnknownUnit(DomainError):
    template = "errors/unknown_unit.j2"


class BadUnitPath(DomainError):
    template = "errors/bad_unit_path.j2"


class UnknownPerson(DomainError):
    template = "errors/unknown_person.j2"


class WrongChat(DomainError):
    """The command belongs in another kind of chat (private vs group)."""

    template = "errors/wrong_chat.j2"


class StaleButton(DomainError):
    """A button whose action no longer applies (or whose data was forged)."""

    template = "errors/stale_button.j2"
