"""Reading the YAML files admins send (checklists, reminder plans) so that every problem can
be shown with its line number: the nodes keep their positions, unlike ``yaml.safe_load``."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

import yaml


class Trouble(StrEnum):
    YAML = "yaml"  # not YAML at all
    EMPTY = "empty"
    TOO_MANY = "too_many"


class FileTrouble(NamedTuple):
    """Why a whole file cannot be read: what, on which line, and a detail to show."""

    trouble: Trouble
    line: int
    detail: str = ""


def entries(text: str, limit: int) -> list[yaml.Node] | FileTrouble:
    """The file's entries (one mapping, or each item of a top-level list), at most ``limit``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        return FileTrouble(Trouble.YAML, line, str(exc.problem or exc))
    except yaml.YAMLError as exc:
        return FileTrouble(Trouble.YAML, 1, str(exc))
    nodes = [] if root is None else root.value if isinstance(root, yaml.SequenceNode) else [root]
    if not nodes:
        return FileTrouble(Trouble.EMPTY, 1)
    if len(nodes) > limit:
        return FileTrouble(Trouble.TOO_MANY, 1, str(limit))
    return nodes
