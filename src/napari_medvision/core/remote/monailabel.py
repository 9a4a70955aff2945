"""A MONAI Label server as a place to run models and train them: its REST API, with clear errors.

Endpoints used (MONAI Label 0.8): ``GET /info/`` (models, labels, trainers), ``POST /infer/{model}``
(multipart ``file``; ``output=image`` answers the label NIfTI), ``PUT /datastore/image`` and
``PUT /datastore/label`` (multipart ``file`` / ``label``), ``POST /train/{model}`` and ``GET /train/``
(training and its status), ``POST /activelearning/{strategy}`` (the next study to label).

The bearer token comes from ``MEDVISION_SERVER_TOKEN`` or is handed to the client by the caller (the
dock keeps it in memory only); it is never put on a command line, in a log line or in a message.
Every failure is a :class:`ServerError` with one line saying what went wrong and what to do.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MedvisionError
from ..volume import Volume

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "MEDVISION_SERVER_TOKEN"
#: Largest distance (mm, or cosine) between the server's mask grid and the study's taken as the same grid:
#: the mask comes back as NIfTI, whose header is float32.
GRID_TOLERANCE = 1e-3


class ServerError(MedvisionError):
    """The server could not be reached, refused the request, or answered something unusable."""


class MonaiLabelClient:
    """One MONAI Label server.

    Args:
        url: the server's root, e.g. ``http://gpu-server:8000``.
        token: bearer token; default: ``MEDVISION_SERVER_TOKEN`` (None: no auth header).
        timeout: seconds to wait for the server to start answering one request.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 300.0):
        if not url or not url.startswith(("http://", "https://")):
            raise ServerError(f"'{url}' is not a server URL: give one like http://host:8000")
        self.url = url.rstrip("/")
        self._token = token if token is not None else (os.environ.get(TOKEN_VARIABLE) or None)
        self.timeout = timeout
        self._info: dict | None = None

    def __repr__(self) -> str:  # never the token
        return f"MonaiLabelClient({self.url!r}, token={'set' if self._token else 'none'})"

    # -- plumbing -------------------------------------------------------------------------------
    def _request(self, method: str, path: str, what: str, **kwargs):
        import requests

        headers = kwargs.pop("headers", {})
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = requests.request(method, self.url + path, headers=headers, timeout=(10, self.timeout),
                                        **kwargs)
        except requests.exceptions.Timeout:
            raise ServerError(f"the server at {self.url} did not answer {what} within {self.timeout:g} s; "
                              "try again later or check the server") from None
        except requests.exceptions.RequestException as exc:
            raise ServerError(f"cannot reach the MONAI Label server at {self.url} ({type(exc).__name__}); "
                              "check the URL and that the server is running") from None
        if response.status_code in (401, 403):
            hint = (f"set {TOKEN_VARIABLE} (or the dock's token) to a valid token" if not self._token
                    else "the token was refused: get a new one")
            raise ServerError(f"the server at {self.url} refused {what} ({response.status_code}): {hint}")
        if response.status_code >= 400:
            raise ServerError(f"the server at {self.url} failed {what} ({response.status_code}: "
                              f"{_detail(response)})")
        return response

    def _json(self, method: str, path: str, what: str, **kwargs) -> Any:
        response = self._request(method, path, what, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"the server at {self.url} answered {what} with something that is not JSON; "
                              "is it a MONAI Label server?") from None

    # -- models ---------------------------------------------------------------------------------
    def info(self, refresh: bool = False) -> dict:
        """``GET /info/``: the app's models, trainers, labels and strategies (cached once read)."""
        if self._info is None or refresh:
            info = self._json("GET", "/info/", "the model list")
            if not isinstance(info, dict) or "models" not in info:
                raise ServerError(f"{self.url} answered /info/ without a model list; is it a MONAI Label server?")
            self._info = info
        return self._info

    def models(self) -> list[dict]:
        """The server's models as ``medvision models`` lists local ones (``path`` is the server URL)."""
        records = []
        for name, model in sorted(self.info()["models"].items()):
            labels = _labels(model.get("labels"))
            records.append({"name": name, "task": model.get("type", "segmentation"), "path": f"{self.url}#{name}",
                            "labels": {str(value): name for name, value in sorted(labels.items(), key=lambda item: item[1])},
                            "description": model.get("description", ""), "kind": "monailabel",
                            "trainable": name in (self.info().get("trainers") or {})})
        return records

    def check_model(self, model: str, trainer: bool = False) -> dict:
        """The server's record of ``model`` (a trainer of that name when ``trainer``).

        Raises:
            ServerError: the server has no such model, naming those it has.
        """
        table = self.info().get("trainers" if trainer else "models") or {}
        if model not in table:
            kind = "trainer" if trainer else "model"
            have = ", ".join(sorted(table)) or "none"
            raise ServerError(f"the server at {self.url} has no {kind} '{model}'; it has: {have}")
        return self.info()["models"].get(model, table[model])

    def labels(self, model: str) -> dict[int, str]:
        """Label value -> name of ``model`` (background excluded)."""
        return {v: k for v, k in sorted((v, k) for k, v in _labels(self.check_model(model).get("labels")).items())
                if v != 0}

    # -- inference ------------------------------------------------------------------------------
    def infer(self, model: str, volume: Volume, params: dict | None = None) -> Volume:
        """Run ``model`` on ``volume`` on the server; the label map on the study's exact grid.

        Raises:
            ServerError: unknown model, server failure, or a mask that does not fit the study.
        """
        self.check_model(model)
        with tempfile.TemporaryDirectory(prefix="medvision-server-") as folder:
            upload = _as_nifti(volume, Path(folder) / "image.nii.gz")
            with open(upload, "rb") as stream:
                response = self._request("POST", f"/infer/{model}", f"inference with '{model}'",
                                         params={"output": "image"}, data={"params": json.dumps(params or {})},
                                         files={"file": ("image.nii.gz", stream, "application/gzip")})
            mask_path = Path(folder) / "mask.nii.gz"
            mask_path.write_bytes(response.content)
            return mask_on_study_grid(mask_path, volume, self.url)

    # -- datastore, training, active learning ---------------------------------------------------
    def add_image(self, image_id: str, volume_or_path) -> str:
        """``PUT /datastore/image``: upload a study under ``image_id``; returns the server's id."""
        with tempfile.TemporaryDirectory(prefix="medvision-server-") as folder:
            path = _as_nifti(volume_or_path, Path(folder) / f"{image_id}.nii.gz")
            with open(path, "rb") as stream:
                record = self._json("PUT", "/datastore/image", f"the upload of image '{image_id}'",
                                    params={"image": image_id},
                                    files={"file": (f"{image_id}.nii.gz", stream, "application/gzip")})
        return record.get("image", image_id)

    def download_image(self, image_id: str) -> Volume:
        """``GET /datastore/image``: a study of the server's datastore, read as a Volume (its own geometry).

        Raises:
            ServerError: no such study, or an answer that is not a readable image.
        """
        from ..io import read_volume

        response = self._request("GET", "/datastore/image", f"the download of '{image_id}'",
                                 params={"image": image_id})
        name = _attachment_name(response.headers.get("content-disposition", "")) or f"{image_id}.nii.gz"
        with tempfile.TemporaryDirectory(prefix="medvision-server-") as folder:
            path = Path(folder) / Path(name).name
            path.write_bytes(response.content)
            try:
                return read_volume(path)
            except MedvisionError as exc:
                raise ServerError(f"the server at {self.url} sent '{image_id}' as something unreadable "
                                  f"({exc})") from None

    def remove_image(self, image_id: str) -> None:
        """``DELETE /datastore/image``: remove a study and its labels from the server's datastore."""
        self._json("DELETE", "/datastore/image", f"removing image '{image_id}'", params={"id": image_id})

    def save_label(self, image_id: str, label: Volume, tag: str = "final") -> dict:
        """``PUT /datastore/label``: the (corrected) label of a study already on the server."""
        with tempfile.TemporaryDirectory(prefix="medvision-server-") as folder:
            path = _as_nifti(label, Path(folder) / f"{image_id}.nii.gz", labels=True)
            with open(path, "rb") as stream:
                return self._json("PUT", "/datastore/label", f"the label of '{image_id}'",
                                  params={"image": image_id, "tag": tag},
                                  files={"label": (f"{image_id}.nii.gz", stream, "application/gzip")})

    def train(self, model: str, params: dict | None = None) -> dict:
        """``POST /train/{model}``: start training (the server queues it); returns its task record."""
        self.check_model(model, trainer=True)
        return self._json("POST", f"/train/{model}", f"training of '{model}'", json=params or {})

    def train_status(self) -> dict | None:
        """``GET /train/``: the latest training task (``status``: RUNNING, DONE, ERROR...), None if none ran."""
        import requests

        try:
            return self._json("GET", "/train/", "the training status")
        except ServerError as exc:
            if "(404" in str(exc):
                return None
            raise
        except requests.RequestException:  # pragma: no cover - _json wraps these
            raise

    def stop_training(self) -> dict:
        """``DELETE /train/``: stop the running training."""
        return self._json("DELETE", "/train/", "stopping the training")

    def next_sample(self, strategy: str = "random", params: dict | None = None) -> dict | None:
        """``POST /activelearning/{strategy}``: the study the server would have labelled next (None: none left)."""
        strategies = self.info().get("strategies") or {}
        if strategies and strategy not in strategies:
            raise ServerError(f"the server at {self.url} has no active-learning strategy '{strategy}'; "
                              f"it has: {', '.join(sorted(strategies))}")
        record = self._json("POST", f"/activelearning/{strategy}", f"the next study ({strategy})", json=params or {})
        return record or None


def mask_on_study_grid(mask_path: Path, volume: Volume, source: str = "the server") -> Volume:
    """The mask file as a label Volume with ``volume``'s exact geometry.

    The server writes the mask on the uploaded image's grid (as NIfTI, so its header is float32 and may
    flip axes into RAS): a mask on the same voxel grid is laid onto the study (nearest, world to world);
    any other size or grid is refused.

    Raises:
        ServerError: the mask is unreadable, of another size, or on another grid.
    """
    import SimpleITK as sitk

    try:
        mask = sitk.ReadImage(str(mask_path))
    except RuntimeError:
        raise ServerError(f"{source} answered with a mask that is not a readable image") from None
    if mask.GetDimension() != 3 or mask.GetNumberOfComponentsPerPixel() != 1:
        raise ServerError(f"{source} answered with a {mask.GetDimension()}D mask of "
                          f"{mask.GetNumberOfComponentsPerPixel()} channel(s); a 3D label map was expected")
    size = tuple(mask.GetSize())
    if sorted(size) != sorted(volume.size):
        raise ServerError(f"{source} answered with a mask of size {list(size)} for a study of size "
                          f"{list(volume.size)}; the server's model does not fit this study")
    study = volume.to_sitk()
    if not _same_voxel_centres(mask, study):
        raise ServerError(f"{source} answered with a mask on another grid than the study's (size {list(size)}, "
                          f"origin {[round(v, 2) for v in mask.GetOrigin()]}); nothing was changed")
    resampled = sitk.Resample(mask, study, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())
    array = sitk.GetArrayFromImage(resampled)
    labels = array.astype(np.uint8) if array.min(initial=0) >= 0 and array.max(initial=0) < 256 else array
    return volume.with_array(labels, model=source)


def _same_voxel_centres(mask, study) -> bool:
    """Whether every corner voxel centre of ``study`` is (within tolerance) a voxel centre of ``mask``."""
    corners = [(i, j, k) for i in (0, study.GetSize()[0] - 1) for j in (0, study.GetSize()[1] - 1)
               for k in (0, study.GetSize()[2] - 1)]
    spacing = min(mask.GetSpacing())
    for corner in corners:
        point = study.TransformIndexToPhysicalPoint(corner)
        continuous = mask.TransformPhysicalPointToContinuousIndex(point)
        if any(abs(c - round(c)) * spacing > GRID_TOLERANCE * 10 or not -0.5 <= c <= s - 0.5
               for c, s in zip(continuous, mask.GetSize())):
            return False
    return True


def _as_nifti(volume_or_path, target: Path, labels: bool = False) -> Path:
    """A NIfTI file of the study (a file already NIfTI is sent as it is)."""
    if isinstance(volume_or_path, (str, Path)):
        source = Path(volume_or_path)
        if source.name.lower().endswith(".nii.gz"):
            return source
        from ..io import read_volume

        volume_or_path = read_volume(source)
    from ..io import write_volume

    return write_volume(volume_or_path, target, labels=labels)


def _labels(value) -> dict[str, int]:
    """MONAI Label's ``labels``: ``{"spleen": 1}`` or a list of names (1, 2, ... in order)."""
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return {str(name): index + 1 for index, name in enumerate(value)}
    return {}


def _attachment_name(disposition: str) -> str | None:
    """The file name of a ``Content-Disposition: attachment; filename="x.nii.gz"`` header (None if none)."""
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename" and value.strip('"'):
            return value.strip('"')
    return None


def _detail(response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = str(detail or response.text or response.reason or "no detail").strip().splitlines()
    return (text[0] if text else "no detail")[:200]
