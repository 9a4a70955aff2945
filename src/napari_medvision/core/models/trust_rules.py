"""What a bundle config may hold without its author being trusted: the allow-lists of the trust gate.

Three kinds of thing in a MONAI config run code when MONAI parses it: a ``_target_``
(instantiated), a ``$`` expression (``eval``) and a ``$import`` statement (imported
on the first lookup of any key). Each has its rule here:

- a ``_target_`` passes when MONAI's own path for it names a class on an exact
  allow-list: network layers (``torch.nn`` and ``monai.networks``), MONAI transforms
  except those taking code, a path or a name to look up from the config, the plain
  inferers, and the pieces of ``monai.apps.detection`` a detector needs;
- a ``$`` expression passes when, as MONAI will ``eval`` it (references already
  rewritten to ``__local_refs['id']``), it is data only: constants, references,
  literals, arithmetic, comparisons, ``len``/``int``/``float`` and dtype constants;
- an import passes when it imports a library module (never the bundle's own
  ``scripts``) and binds no name that data-only expressions rely on.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import inspect
import pydoc

#: Only names under these are looked up at all: locating imports the module, so nothing else is imported.
LOCATABLE = ("monai.networks.", "monai.transforms.", "monai.inferers.", "monai.apps.detection.", "torch.nn.")
_LAYER_MODULES = ("monai.networks.nets.", "monai.networks.blocks.", "monai.networks.layers.", "torch.nn.modules.")
_TRANSFORM_MODULES = ("monai.transforms.", "monai.apps.detection.transforms.")
#: Transforms that take code, a path or a name to import from the config, or only sleep or log.
_DENIED_TRANSFORMS = frozenset({
    "Lambda", "Lambdad", "RandLambda", "RandLambdad", "TorchVision", "TorchVisiond", "RandTorchVision",
    "RandTorchVisiond", "TorchIO", "TorchIOd", "RandTorchIO", "RandTorchIOd", "CuCIM", "CuCIMd", "RandCuCIM",
    "RandCuCIMd", "DataStats", "DataStatsd", "SimulateDelay", "SimulateDelayd",
})
_DENIED_TRANSFORM_PREFIXES = ("Load", "Save", "Write")  # file readers and writers
_INFERERS = frozenset(f"monai.inferers.inferer.{name}" for name in (
    "SimpleInferer", "SlidingWindowInferer", "SlidingWindowInfererAdapt", "SliceInferer"))
_DETECTION = frozenset({
    "monai.apps.detection.networks.retinanet_detector.RetinaNetDetector",
    "monai.apps.detection.networks.retinanet_network.RetinaNet",
    "monai.apps.detection.networks.retinanet_network.resnet_fpn_feature_extractor",
    "monai.apps.detection.utils.anchor_utils.AnchorGenerator",
    "monai.apps.detection.utils.anchor_utils.AnchorGeneratorWithAnchorShape",
    "monai.apps.detection.utils.box_selector.BoxSelector",
    "monai.apps.detection.utils.box_coder.BoxCoder",
})
#: Argument names (prefix, suffixes) that make a component download or read files when truthy.
_FETCHING_PREFIX = "pretrained"
_FETCHING_SUFFIXES = ("url", "path", "_file", "_dir")

_CALLS = frozenset({"len", "int", "float"})
_DTYPE_MODULES = frozenset({"torch", "np", "numpy"})
_REFS = "__local_refs"  # the name MONAI rewrites ``@id`` to inside an expression
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.USub, ast.UAdd, ast.Not, ast.And,
              ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn)

#: Top-level packages a bundle may import untrusted: libraries, never its own code.
SAFE_IMPORTS = frozenset({"os", "glob", "json", "math", "copy", "functools", "itertools", "collections", "pathlib",
                          "re", "typing", "logging", "warnings", "datetime", "time", "numpy", "torch", "monai",
                          "ignite", "scipy", "yaml"})
#: Names data-only expressions rely on, and the module each may be bound to by an import.
_PROTECTED = {"len": None, "int": None, "float": None, _REFS: None, "__builtins__": None,
              "torch": "torch", "np": "numpy", "numpy": "numpy", "monai": "monai"}


# --- components -------------------------------------------------------------------
def is_unknown(path: str) -> bool:
    """Whether ``path`` is a misspelt class name: a MONAI / torch.nn path that names nothing, or a bare
    name that is neither a builtin nor a module (the build then fails naming the key; nothing runs).

    A dotted name elsewhere (``scripts.net.Net``) is never "unknown": it may become importable.
    Only the top-level module is looked for (``find_spec`` runs no module code).
    """
    if path.startswith(LOCATABLE):
        return target_problem(path) == "not found"
    if not path.isidentifier() or hasattr(builtins, path):
        return False
    try:
        return importlib.util.find_spec(path) is None
    except (ImportError, ValueError):
        return False


def target_problem(path: str) -> str | None:
    """Why the component MONAI will build from ``path`` (its resolved dotted name) needs trust, or None."""
    if not path.startswith(LOCATABLE):
        return "not a MONAI or torch.nn component"
    try:
        component = pydoc.locate(path)
    except Exception:  # noqa: BLE001 - pydoc.ErrorDuringImport and whatever a module raises
        component = None
    if component is None:
        return "not found"
    return None if is_allowed_component(component) else "not on the allow-list of networks, transforms and inferers"


def is_allowed_component(component) -> bool:
    """Whether ``component`` (a located object) is on the allow-list."""
    module = getattr(component, "__module__", None) or ""
    name = f"{module}.{getattr(component, '__qualname__', '')}"
    if name in _DETECTION:
        return True
    if not inspect.isclass(component) or component.__qualname__ != component.__name__:
        return False
    if module.startswith(_LAYER_MODULES):
        import torch

        return issubclass(component, torch.nn.Module)
    if module.startswith(_TRANSFORM_MODULES):
        from monai.transforms import Transform

        denied = component.__name__ in _DENIED_TRANSFORMS or component.__name__.startswith(_DENIED_TRANSFORM_PREFIXES)
        return issubclass(component, Transform) and not denied
    return name in _INFERERS


def argument_problems(arguments: dict) -> list[str]:
    """Arguments that would make an allowed component fetch or read files (``pretrained``, ``*_url``, ``*_path``)."""
    return [f"argument '{key}' makes it download or read files" for key, value in arguments.items()
            if isinstance(key, str) and value
            and (key.lower().startswith(_FETCHING_PREFIX) or key.lower().endswith(_FETCHING_SUFFIXES))]


# --- expressions ------------------------------------------------------------------
def expression_problem(code: str) -> str | None:
    """Why the Python expression ``code`` (as MONAI evaluates it) is more than data, or None.

    Args:
        code: the expression without its ``$``, references rewritten as MONAI does
            (``__local_refs['id']``).
    """
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        return "is not a Python expression"
    offending = _offending(tree.body)
    if offending is None:
        return None
    return f"computes {ast.unparse(offending)[:80]!r}"


def _offending(node: ast.AST) -> ast.AST | None:
    """The first sub-expression of ``node`` that is not data, or None."""
    children: list[ast.AST | None]
    if isinstance(node, ast.Constant):
        return None
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        children = list(node.elts)
    elif isinstance(node, ast.Dict):
        children = [*node.keys, *node.values]
    elif isinstance(node, ast.BinOp):
        children = [node.op, node.left, node.right]
    elif isinstance(node, ast.UnaryOp):
        children = [node.op, node.operand]
    elif isinstance(node, ast.BoolOp):
        children = [node.op, *node.values]
    elif isinstance(node, ast.Compare):
        children = [*node.ops, node.left, *node.comparators]
    elif isinstance(node, ast.IfExp):
        children = [node.test, node.body, node.orelse]
    elif isinstance(node, ast.Subscript) and _is_reference(node):
        return None
    elif isinstance(node, ast.Slice):
        children = [node.lower, node.upper, node.step]
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS \
            and not node.keywords:
        children = list(node.args)
    elif isinstance(node, ast.Attribute) and _is_dtype(node):
        return None
    elif isinstance(node, _OPERATORS):
        return None
    else:
        return node
    for child in children:
        if child is not None and (bad := _offending(child)) is not None:
            return node if isinstance(bad, (ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.Starred)) else bad
    return None


def _is_reference(node: ast.AST) -> bool:
    """``__local_refs['id']`` (what MONAI makes of ``@id``), or an index into one: ``@id[0]``."""
    if not isinstance(node, ast.Subscript):
        return False
    if isinstance(node.value, ast.Name) and node.value.id == _REFS:
        return isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)
    return _is_reference(node.value) and _offending(node.slice) is None


def _is_dtype(node: ast.Attribute) -> bool:
    """``torch.float32``, ``np.uint8``, ``numpy.inf``: a dtype or float constant of torch / numpy."""
    if not (isinstance(node.value, ast.Name) and node.value.id in _DTYPE_MODULES):
        return False
    if node.value.id == "torch":
        import torch

        return isinstance(getattr(torch, node.attr, None), torch.dtype)
    import numpy

    value = getattr(numpy, node.attr, None)
    return (inspect.isclass(value) and issubclass(value, numpy.generic)) or type(value) is float


# --- imports ----------------------------------------------------------------------
def import_problem(statement: str) -> str | None:
    """Why the import ``statement`` (without its ``$``) needs trust, or None.

    Mirrors MONAI's ``ConfigExpression._parse_import_string``: only the first
    statement and its first name are imported.
    """
    try:
        node = next(ast.iter_child_nodes(ast.parse(statement)))
    except (SyntaxError, StopIteration):
        return "is not an import statement"
    if not isinstance(node, (ast.Import, ast.ImportFrom)) or not node.names:
        return "is not an import statement"
    alias = node.names[0]
    module = alias.name if isinstance(node, ast.Import) else (node.module or "")
    if isinstance(node, ast.ImportFrom) and node.level:
        return f"imports from the bundle's own folder ('{'.' * node.level}{module}')"
    if module.split(".")[0] not in SAFE_IMPORTS:
        return f"imports '{module}', which is not a library module known to be harmless"
    bound = alias.asname or alias.name
    if bound in _PROTECTED and (isinstance(node, ast.ImportFrom) or _PROTECTED[bound] != alias.name):
        return f"binds the name '{bound}' to something else"
    return None
