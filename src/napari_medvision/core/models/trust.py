"""The trust gate: what in a bundle config would run its author's code, judged as MONAI will evaluate it.

MONAI's config parser expands ``%`` macros, turns relative (``@::x``) and old-style
(``@a#b``) ids into absolute ones, evaluates ``$`` expressions, imports ``$import``
statements and instantiates any locatable ``_target_``. The gate therefore works on
MONAI's own view of the config, never on its text:

1. :func:`expand_config` runs MONAI's macro and relative-id resolution to a fixed
   point, with macros that name another file read from inside the bundle folder only;
2. the expanded config is parsed by MONAI's ``ConfigParser`` into the very items the
   build then instantiates (:func:`parse_config`);
3. :func:`config_findings` walks those items from the keys we use, following
   MONAI's own reference finder (``ReferenceResolver.find_refs_in_config``), and asks
   :mod:`.trust_rules` about every component, expression and import on the way.

Deny by default: anything the rules do not know to be harmless is a finding.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from . import trust_rules

#: Macro expansion passes before a config is taken to be looping.
MAX_MACRO_DEPTH = 8


@dataclass(frozen=True)
class Finding:
    """One thing that would run code: where it sits in the config and what it does."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"'{self.where}' {self.what}"


# --- expansion --------------------------------------------------------------------
def expand_config(config: dict, root: Path) -> dict:
    """``config`` with every ``%`` macro and relative id resolved, as MONAI resolves them.

    A macro naming another file (``%configs/extra.json#net``) is read from inside the
    bundle folder ``root`` only, whatever the working directory.

    Raises:
        ModelError: a macro or relative id that MONAI cannot resolve (naming its key),
            a file outside the bundle folder (trusted or not), or macros that loop.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser(copy.deepcopy(config), globals=False)
    root = Path(root).resolve()
    for _ in range(MAX_MACRO_DEPTH):
        before = copy.deepcopy(parser.get())
        for _ in range(MAX_MACRO_DEPTH):  # a file's content may name a file in turn: none left for MONAI
            if not _inline_file_macros(parser, parser.get(), "", root):
                break
        try:
            parser.resolve_macro_and_relative_ids()
        except (KeyError, ValueError, IndexError, TypeError) as exc:  # _check_macros names the key first
            raise ModelError(f"the config cannot be expanded by MONAI: {_first_line(exc)}") from None
        if parser.get() == before:
            break
    left = _strings(parser.get(), "", lambda text: text.startswith("%"))
    if left:
        where, text = left[0]
        raise ModelError(f"'{where}': the macro '{text}' never resolves (macros that refer to each other in a loop, "
                         f"or nested more than {MAX_MACRO_DEPTH} deep); fix the bundle's config")
    return parser.get()


def _inline_file_macros(parser, node: Any, where: str, root: Path) -> int:
    """Check every macro under ``node`` and replace those naming a file by that file's content (in place).

    Returns:
        How many file macros were replaced.
    """
    from monai.bundle import ConfigParser

    inlined = 0
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        sub = f"{where}::{key}" if where else str(key)
        if isinstance(value, (dict, list)):
            inlined += _inline_file_macros(parser, value, sub, root)
            continue
        if not isinstance(value, str):
            continue
        try:
            text = ConfigParser.resolve_relative_ids(sub, value)
        except ValueError as exc:
            raise ModelError(f"'{sub}': {_first_line(exc)}") from None
        if not text.startswith("%"):
            continue
        path, ids = ConfigParser.split_path_id(text[1:])
        try:
            source = parser if not path else ConfigParser(ConfigParser.load_config_file(_inside(root, path, sub)))
            content = source[ids]
        except (KeyError, ValueError, IndexError, TypeError, OSError) as exc:
            raise ModelError(f"'{sub}': the macro '{value}' names nothing in "
                             f"{path or 'this config'} ({_first_line(exc)})") from None
        if path:
            node[key] = copy.deepcopy(content)
            inlined += 1
    return inlined


def _inside(root: Path, path: str, where: str) -> Path:
    """``path`` (relative to the bundle folder) as a file inside ``root``; refused otherwise."""
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise ModelError(f"'{where}' reads '{path}', which is outside the bundle folder; refused "
                         "(trusted or not, a bundle only reads its own files)")
    if not target.is_file():
        raise ModelError(f"'{where}': the macro names '{path}', which is not a file in the bundle")
    return target


def _strings(node: Any, where: str, wanted) -> list[tuple[str, str]]:
    """``(id, text)`` of every string under ``node`` for which ``wanted(text)`` holds."""
    if isinstance(node, str):
        return [(where, node)] if wanted(node) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    return [hit for key, value in items for hit in _strings(value, f"{where}::{key}" if where else str(key), wanted)]


# --- parsing and walking ------------------------------------------------------------
def parse_config(expanded: dict, overrides: dict[str, Any]):
    """A MONAI ``ConfigParser`` holding ``expanded`` (plus our ``overrides``), parsed into items.

    The gate judges these items and the build instantiates them: what was checked is
    what is built. Expansion is a fixed point, so MONAI's own pass in ``parse`` changes nothing.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser(expanded)
    for key, value in overrides.items():
        parser[key] = value
    try:
        parser.parse(reset=True)
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise ModelError(f"the config cannot be parsed by MONAI: {_first_line(exc)}") from None
    return parser


def config_findings(parser, used: list[str]) -> list[Finding]:
    """Everything that evaluating ``used`` keys of a parsed config would run (empty: nothing).

    Visits the used items and, transitively, every item MONAI resolves before them:
    references (``@id``, also inside expressions, ``_requires_`` and ``_disabled_``) and
    nested components and expressions. Import statements are judged wherever they sit:
    MONAI imports them all on the first lookup of any key.
    """
    from monai.bundle import ConfigComponent, ConfigExpression, ReferenceResolver

    items = parser.ref_resolver.items
    findings = [Finding(where, what) for where, item in items.items()
                if isinstance(item, ConfigExpression) and _is_import(item)
                and (what := _import_finding(item.get_config())) is not None]
    stack, seen = list(reversed(used)), set()  # depth first: findings in reading order
    while stack:
        where = ReferenceResolver.normalize_id(stack.pop())
        if where in seen or where not in items:
            continue  # a missing id fails the build with MONAI's own message
        seen.add(where)
        item = items[where]
        if isinstance(item, ConfigComponent):
            findings += [Finding(where, what) for what in _component_findings(item)]
        elif isinstance(item, ConfigExpression) and not _is_import(item):
            problem = trust_rules.expression_problem(_as_evaluated(item.get_config()))
            if problem:
                findings.append(Finding(where, f"evaluates {item.get_config()[:80]!r}: it {problem}"))
        stack.extend(reversed(ReferenceResolver.find_refs_in_config(item.get_config(), where)))
    return findings


def _component_findings(item) -> list[str]:
    config = item.get_config()
    target = config.get("_target_")
    if not isinstance(target, str) or target.startswith(("$", "@", "%")):
        return [f"builds whatever {target!r} evaluates to (not a class name)"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns when a short name is in several modules
        path = item.resolve_module_name()
    if trust_rules.is_unknown(path):
        return []  # MONAI cannot build it: the build fails naming the key, and nothing runs
    found = []
    problem = trust_rules.target_problem(path)
    if problem:
        found.append(f"builds '{target}' ({path}): {problem}")
    mode = config.get("_mode_", "default")
    if mode != "default":
        found.append(f"builds '{target}' with _mode_ {mode!r} (only plain instantiation runs untrusted)")
    if config.get("_debug_"):
        found.append(f"builds '{target}' in the debugger (_debug_)")
    found += [f"builds '{target}': {problem}" for problem in trust_rules.argument_problems(item.resolve_args())]
    return found


def _is_import(item) -> bool:
    try:
        return item.is_import_statement(item.get_config())
    except SyntaxError:
        return False


def _import_finding(statement: str) -> str | None:
    problem = trust_rules.import_problem(statement[1:])
    return f"runs {statement[:80]!r}: it {problem}" if problem else None


def _as_evaluated(expression: str) -> str:
    """The Python code MONAI evaluates for ``expression``: references rewritten to ``__local_refs['id']``."""
    from monai.bundle import ReferenceResolver

    refs = ReferenceResolver.match_refs_pattern(expression)
    return ReferenceResolver.update_refs_pattern(expression, dict.fromkeys(refs))[1:]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
