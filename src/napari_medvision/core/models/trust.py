"""What in a bundle config would run its author's code.

MONAI's config parser evaluates ``$`` expressions and instantiates any importable
``_target_``. A bundle is safe to run without asking only when the parts we use
(and everything they reference) are plain MONAI / torch components and values.
"""

from __future__ import annotations

from typing import Any

#: ``_target_`` prefixes that are library components, not the bundle author's code.
SAFE_TARGET_PREFIXES = ("monai.", "torch.nn.")


def code_in_config(config: dict, keys: list[str]) -> list[str]:
    """Reasons (one per finding) why evaluating ``keys`` of ``config`` would run foreign code.

    Follows ``@id`` references (``@a::b`` too) so a harmless-looking component
    that points at an expression is caught.
    """
    findings: list[str] = []
    seen: set[str] = set()

    def visit(node: Any, where: str) -> None:
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str) and "." in target and not target.startswith(SAFE_TARGET_PREFIXES):
                findings.append(f"'{where}' builds '{target}'")
            for key, value in node.items():
                visit(value, f"{where}::{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                visit(value, f"{where}::{index}")
        elif isinstance(node, str):
            if node.startswith("$"):
                findings.append(f"'{where}' evaluates the expression {node[:60]!r}")
            elif node.startswith("@"):
                follow(node[1:])

    def follow(reference: str) -> None:
        if reference in seen:
            return
        seen.add(reference)
        node: Any = config
        for part in reference.split("::"):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return
        visit(node, reference)

    for key in keys:
        follow(key)
    return findings
