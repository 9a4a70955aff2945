"""MONAI bundles: metadata, inference config, weights.

A bundle folder holds ``configs/metadata.json``, ``configs/inference.json`` (or
``.yaml``) and ``models/model.pt`` (a state dict, loaded with
``weights_only=True``) or ``models/model.ts`` (TorchScript). From the config we
use ``network_def``, ``preprocessing`` (minus ``LoadImage*``: we feed the image
from memory), ``inferer`` and ``postprocessing`` (minus ``SaveImage*``); a
detection bundle also gives ``detector``. Our own keys live under
``"medvision"`` in metadata.json (task, labels, colours, window, CAM layer).
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError, UntrustedCodeError
from . import trust_store
from .findings_cache import cached_findings
from .trust import config_findings, expand_config, parse_config

if TYPE_CHECKING:  # torch loads when a bundle is built, not when one is listed (medvision models)
    import torch

log = logging.getLogger(__name__)

TASKS = ("segmentation", "classification", "detection", "interactive")
#: Bundles shipped with the project (they pass the trust gate on their merits, like any other).
SAMPLE_MODELS_DIR = Path(__file__).resolve().parents[2] / "sample_models"
_DROP_PRE = ("LoadImage", "LoadImaged", "LoadImageD", "LoadImageDict")
_DROP_POST = ("SaveImage", "SaveImaged", "SaveImageD", "SaveImageDict")
#: A transforms value that only names lists: ``"@pre"`` or ``"$@pre + @more"``.
_REFERENCED_LISTS = re.compile(r"@[\w:]+|\$\s*@[\w:]+(?:\s*\+\s*@[\w:]+)*\s*")


@dataclass
class LoadedModel:
    """What an engine needs, built on one device."""

    network: torch.nn.Module
    preprocessing: Any
    inferer: Any | None
    postprocessing: Any | None
    device: torch.device
    detector: Any | None = None


@dataclass
class Bundle:
    """A MONAI bundle folder, read but not yet instantiated."""

    path: Path
    metadata: dict
    config: dict
    trusted: bool = False
    _warnings: list[str] = field(default_factory=list)

    # --- description --------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def display_name(self) -> str:
        return self.metadata.get("name") or self.name

    @property
    def description(self) -> str:
        return self.metadata.get("description", "")

    @property
    def extras(self) -> dict:
        """Our ``"medvision"`` keys (metadata.json wins over the config)."""
        return {**self.config.get("medvision", {}), **self.metadata.get("medvision", {})}

    @cached_property
    def task(self) -> str:
        task = self.extras.get("task")
        if task:
            if task not in TASKS:
                raise ModelError(f"bundle '{self.name}' names an unknown task '{task}' (use one of {TASKS})")
            return task
        pred = self._output_format()
        kind = str(pred.get("type", "")).lower()
        if "detector" in self.config or kind == "object":
            return "detection"
        if kind in ("probabilities", "vector", "class", "classes") or pred.get("format") == "classes":
            return "classification"
        return "segmentation"

    @cached_property
    def labels(self) -> dict[int, str]:
        """Output channel (or class) index -> name; background (0) left out for segmentation."""
        names = self.extras.get("labels") or self._output_format().get("channel_def") or {}
        labels = {int(k): str(v) for k, v in names.items()}
        if not labels and self.task == "detection":
            labels = {0: "object"}
        if self.task == "segmentation":
            labels.pop(0, None)
        return labels

    @property
    def colors(self) -> dict[int, str]:
        return {int(k): v for k, v in self.extras.get("colors", {}).items()}

    @property
    def kind(self) -> str:
        """``bundle``, or ``torchscript`` / ``onnx`` for a bare network that ``medvision import`` wrapped."""
        return str(self.extras.get("kind", "bundle"))

    @property
    def spatial_dims(self) -> int:
        network = self.config.get("network_def", {})
        if isinstance(network, dict) and isinstance(network.get("spatial_dims"), int):
            return network["spatial_dims"]
        shape = self._input_format().get("spatial_shape")
        return len(shape) if isinstance(shape, list) and shape else 3

    @property
    def in_channels(self) -> int:
        network = self.config.get("network_def", {})
        for key in ("in_channels", "n_input_channels"):
            if isinstance(network, dict) and isinstance(network.get(key), int):
                return network[key]
        return int(self._input_format().get("num_channels", 1))

    def summary(self) -> dict:
        """The ``medvision models --json`` record, with its kind and whether it needs trust and why."""
        findings = self.trust_findings()
        return {"name": self.name, "task": self.task, "path": str(self.path), "kind": self.kind,
                "labels": {str(k): v for k, v in self.labels.items()}, "description": self.description,
                "needs_trust": bool(findings), "trust_findings": findings,
                "trusted": bool(findings) and trust_store.is_trusted(self.path)}

    def _output_format(self) -> dict:
        outputs = self.metadata.get("network_data_format", {}).get("outputs", {})
        return outputs.get("pred") or next(iter(outputs.values()), {})

    def _input_format(self) -> dict:
        inputs = self.metadata.get("network_data_format", {}).get("inputs", {})
        return inputs.get("image") or next(iter(inputs.values()), {})

    # --- trust ----------------------------------------------------------------
    def used_keys(self) -> list[str]:
        keys = ["network_def", "preprocessing", "inferer", "postprocessing"]
        if self.task == "detection":
            keys = ["network_def", "preprocessing", "detector", "detector_ops", "inferer", "postprocessing"]
        return [k for k in keys if k in self.config]

    def code_findings(self, parser=None) -> list[str]:
        """Why building this bundle would run its author's code (empty: it would not).

        Raises:
            ModelError: a config MONAI cannot expand or parse (naming the key).
        """
        if parser is None:
            import torch

            parser = self._parser(torch.device("cpu"))
        findings = [str(f) for f in config_findings(parser, self.used_keys())]
        if (self.path / "scripts").is_dir() and any("scripts" in f for f in findings):
            findings.append("the bundle imports its own scripts/ folder")
        return findings

    def trust_findings(self) -> list[str]:
        """:meth:`code_findings` for display: a config that cannot be checked is one finding, not an error.

        Remembered by content (:mod:`.findings_cache`), so a listing imports MONAI only for new or
        edited bundles; the gate at build time always judges afresh.
        """
        return cached_findings(self.path, self._findings_for_display)

    def _findings_for_display(self) -> list[str]:
        try:
            return self.code_findings()
        except ModelError as exc:
            return [f"the config cannot be checked: {exc}"]

    def check_trust(self, parser=None) -> None:
        """Raise unless the bundle runs no code of its own, or is trusted (now or remembered).

        Raises:
            UntrustedCodeError: listing every finding.
        """
        if self.trusted:
            return
        findings = self.code_findings(parser)
        if findings and not trust_store.is_trusted(self.path):
            raise UntrustedCodeError(
                f"bundle '{self.name}' runs its own code ({'; '.join(findings)}); "
                "run it only if you trust its author: --trust on the command line, 'Trust' in the widget"
            )

    # --- building ---------------------------------------------------------------
    def _parser(self, device: torch.device):
        """MONAI's parser of the expanded config, minus loaders and savers, our keys set: what is
        checked and then built."""
        config = expand_config(self.config, self.path)
        _drop_transforms(config, "preprocessing", _DROP_PRE, required=True)
        _drop_transforms(config, "postprocessing", _DROP_POST, required=False)
        return parse_config(config, {"bundle_root": str(self.path), "device": device})

    def build(self, device: torch.device) -> LoadedModel:
        """Instantiate network (with weights), transforms and inferer on ``device``.

        Raises:
            UntrustedCodeError: code that needs trust, or weights that are not plain tensors.
            ModelError: unknown network class, missing or mismatching weights.
        """
        from .bundle_code import bundle_code

        parser = self._parser(device)
        self.check_trust(parser)
        trusted = self.trusted or trust_store.is_trusted(self.path)
        with bundle_code(self.path, enabled=trusted):  # a trusted bundle's scripts/, as MONAI's runner
            return self._build(parser, device)

    def _build(self, parser, device: torch.device) -> LoadedModel:
        def parsed(key):
            if key not in self.config:
                return None
            try:
                return parser.get_parsed_content(key)
            except Exception as exc:  # MONAI wraps import / constructor errors
                raise ModelError(f"bundle '{self.name}': cannot build '{key}': {_first_line(exc)}") from None

        network = self._network(parsed, device)
        detector = None
        if self.task == "detection":
            detector = parsed("detector")
            if detector is None:
                raise ModelError(f"detection bundle '{self.name}' has no 'detector' in its config")
            parsed("detector_ops")
            detector.network = network
            detector.eval()
        return LoadedModel(network, parsed("preprocessing"), parsed("inferer"), parsed("postprocessing"),
                           device, detector)

    def _network(self, parsed, device: torch.device) -> torch.nn.Module:
        import torch

        weights = self.path / "models" / "model.pt"
        script = self.path / "models" / "model.ts"
        onnx = self.path / "models" / "model.onnx"
        if "network_def" in self.config and weights.is_file():
            network = parsed("network_def")
            load_weights(network, weights)
        elif script.is_file():
            try:
                network = torch.jit.load(str(script), map_location="cpu")
            except Exception as exc:  # torch raises RuntimeError, ValueError... for files it cannot parse
                log.info("torch.jit.load(%s) failed: %r", script, exc)
                raise ModelError(f"'{script.name}' in bundle '{self.name}' is not a TorchScript model "
                                 "(corrupt, or not saved with torch.jit.save)") from None
        elif onnx.is_file():
            from .onnx_network import OnnxNetwork

            network = OnnxNetwork(onnx)
        elif "network_def" in self.config:
            raise ModelError(f"bundle '{self.name}' has no weights: expected {weights} (or models/model.ts)")
        else:
            raise ModelError(f"bundle '{self.name}' has neither a network_def nor models/model.ts")
        return network.to(device).eval()


def warm_up() -> None:
    """Import what building a bundle needs (MONAI scans all its modules on first lookup)
    and probe the GPU once.

    Widgets call this in a background thread when they open, so the first run
    does not spend its first second importing while holding the GIL.
    """
    from monai.bundle import ConfigParser

    from .device import choose_device

    choose_device("auto")  # the first CUDA probe loads driver libraries while holding the GIL
    ConfigParser({"n": {"_target_": "Identity"}}).get_parsed_content("n")


def load_bundle(path: str | Path, trusted: bool = False) -> Bundle:
    """Read a bundle folder's metadata and inference config (nothing is instantiated).

    Raises:
        ModelError: not a bundle folder, or unreadable configs.
    """
    path = Path(path).expanduser().resolve()
    configs = path / "configs"
    if not configs.is_dir():
        raise ModelError(f"'{path}' is not a MONAI bundle (no configs/ folder)")
    metadata = _read_config(configs / "metadata.json") if (configs / "metadata.json").is_file() else {}
    for name in ("inference.json", "inference.yaml", "inference.yml"):
        if (configs / name).is_file():
            return Bundle(path, metadata, _read_config(configs / name), trusted)
    raise ModelError(f"bundle '{path.name}' has no configs/inference.json or inference.yaml")


def load_weights(network: torch.nn.Module, path: Path) -> None:
    """Load a state dict into ``network`` without unpickling anything but tensors.

    Raises:
        UntrustedCodeError: the file needs full unpickling (it could run code).
        ModelError: keys or shapes that do not fit, naming the first ones.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        log.info("torch.load(%s, weights_only=True) failed: %s", path, exc)
        needed = _unpickled_global(exc) or next(iter(_pickled_objects(path)), None)
        if needed is None:
            raise ModelError(f"'{path.name}' is not a PyTorch weights file (corrupt or another format)") from None
        raise UntrustedCodeError(
            f"'{path.name}' is not plain weights: loading it would unpickle arbitrary objects ({needed}); refused"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        log.info("torch.load(%s, weights_only=True) failed: %s", path, exc)
        raise ModelError(f"'{path.name}' cannot be read as weights (corrupt or truncated: "
                         f"{_first_sentence(exc)})") from None
    except Exception as exc:  # the weights-only unpickler fails on random bytes in many ways
        log.info("torch.load(%s, weights_only=True) failed: %r", path, exc)
        raise ModelError(f"'{path.name}' is not a PyTorch weights file (corrupt or another format)") from None
    for key in ("model", "state_dict", "network"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ModelError(f"'{path.name}' holds a {type(state).__name__}, not a state dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f"{k} {tuple(state[k].shape)} in the file vs {tuple(own[k].shape)} in the network" for k in own
                   if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                parts.append(f"{what}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}")
        raise ModelError(f"weights in '{path.name}' do not fit the network ({'; '.join(parts)})")
    network.load_state_dict(state)


def _drop_transforms(config: dict, key: str, names: tuple[str, ...], required: bool) -> None:
    """Remove transforms named ``names`` from the lists ``config[key]`` is made of (in place).

    The lists may be given directly, in a ``Compose``, or by reference (``"@pre"``,
    ``"$@pre + @more"``), as an expanded config has them.
    """
    node = config.get(key)
    if node is None:
        return
    lists = _transform_lists(config, node)
    if lists is None:
        if required:
            raise ModelError(f"'{key}' is not a list of transforms (nor a reference to one), so an in-memory "
                             "image cannot be fed to it")
        return
    for transforms in lists:
        transforms[:] = [t for t in transforms if _transform_name(config, t) not in names]


def _transform_lists(config: dict, node: Any, depth: int = 0) -> list[list] | None:
    """The transform lists ``node`` consists of, following references; None if it is anything else."""
    from monai.bundle import ReferenceResolver

    if isinstance(node, dict) and "_target_" in node:
        node = node.get("transforms")
    if isinstance(node, list):
        return [node]
    if not isinstance(node, str) or not _REFERENCED_LISTS.fullmatch(node) or depth > 8:
        return None
    lists: list[list] = []
    for ref in ReferenceResolver.match_refs_pattern(node):
        found = _transform_lists(config, _lookup(config, ref), depth + 1)
        if found is None:
            return None
        lists += found
    return lists


def _transform_name(config: dict, transform: Any) -> str:
    """The class name a transform entry (a component or a ``"@ref"`` to one) builds."""
    if isinstance(transform, str) and transform.startswith("@"):
        transform = _lookup(config, transform[1:])
    return str(transform.get("_target_", "")).split(".")[-1] if isinstance(transform, dict) else ""


def _lookup(config: dict, ref: str) -> Any:
    from monai.bundle import ConfigParser

    return ConfigParser(config, globals=False).get(ref)


def _read_config(path: Path) -> dict:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
        import yaml

        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (ValueError, OSError) as exc:
        raise ModelError(f"cannot read '{path}': {_first_line(exc)}") from None
    except Exception as exc:  # yaml.YAMLError
        raise ModelError(f"cannot read '{path}': {_first_line(exc)}") from None


def _unpickled_global(exc: BaseException) -> str | None:
    """The Python object a weights-only load refused (``posix.system``...), None if it refused none.

    torch explains a refusal in several paragraphs; the one fact a user needs is what the file wanted.
    """
    match = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return match.group(1) if match else None


def _pickled_objects(path: Path) -> list[str]:
    """Python objects a pickle names (``module.name``), read with :mod:`pickletools`: nothing runs.

    torch's weights-only unpickler stops at the first opcode it does not know, before it sees what
    a plain ``pickle.dump`` file would import; this tells such a file from a corrupt one.
    """
    import pickletools
    import zipfile

    found: list[str] = []
    strings: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [n for n in archive.namelist() if n.endswith("data.pkl")]
                data = archive.read(members[0]) if members else b""
        else:
            data = path.read_bytes()
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            if isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - a corrupt stream: what was found before it still counts
        pass
    return [name for name in found if not name.startswith(("torch.", "collections.OrderedDict"))]


def _first_sentence(exc: BaseException) -> str:
    """The first sentence of an exception's first line (torch appends advice paragraphs)."""
    return re.split(r"(?<=[a-z0-9)])\. ", _first_line(exc), maxsplit=1)[0].rstrip(".")[:160]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
