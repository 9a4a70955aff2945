"""A PACS over DICOMweb: search (QIDO-RS), retrieve a series (WADO-RS), send results (STOW-RS).

A thin layer over ``dicomweb-client`` that turns every HTTP failure into one clear
:class:`PacsError` line and keeps credentials out of messages and logs: the password or token
lives only in the :class:`PacsCredentials` object (never in ``repr``) and in the session's
headers. Series are retrieved in their stored transfer syntax (``*``), because servers such as
Orthanc 1.10 cannot transcode JPEG 2000; GDCM decodes them locally when the series is read.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pydicom
import requests

from ..errors import MedvisionError

log = logging.getLogger(__name__)
PASSWORD_ENV, TOKEN_ENV = "MEDVISION_PACS_PASSWORD", "MEDVISION_PACS_TOKEN"
#: Retrieve in whatever transfer syntax the PACS stored (no server-side transcoding).
STORED_SYNTAX = (("application/dicom", "*"),)
#: Instances per STOW-RS request (a whole CT series in one request would sit in memory at once).
PUSH_BATCH = 32
_SERIES_FIELDS = ["StudyInstanceUID", "SeriesInstanceUID", "PatientID", "PatientName", "StudyDate", "Modality",
                  "SeriesDescription", "StudyDescription", "NumberOfSeriesRelatedInstances"]
#: DICOM STOW-RS failure reasons (PS3.18 Table 10.5.3-1, PS3.4 C.4.2.1.4), the common ones.
_FAILURE_REASONS = {0x0110: "processing failure", 0x0122: "SOP class not supported", 0x0124: "not authorised",
                    0xA700: "out of resources", 0xA900: "data set does not match SOP class",
                    0xC000: "cannot understand", 0x0111: "duplicate SOP instance"}


class PacsError(MedvisionError):
    """The PACS cannot be reached, refused the request, or does not hold what was asked."""


@dataclass(frozen=True)
class PacsCredentials:
    """HTTP basic (``user`` + ``password``) or bearer (``token``) credentials; secrets never printed."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, user: str | None = None) -> "PacsCredentials":
        """``user`` with ``$MEDVISION_PACS_PASSWORD``, or ``$MEDVISION_PACS_TOKEN`` as a bearer token."""
        return cls(user or None, os.environ.get(PASSWORD_ENV) or None, os.environ.get(TOKEN_ENV) or None)

    def session(self) -> requests.Session:
        session = _QidoSession()
        if self.user:
            session.auth = (self.user, self.password or "")
        elif self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        return session


class _QidoSession(requests.Session):
    """A session that sends QIDO wildcards as ``*``.

    dicomweb-client percent-encodes ``*`` in query values (``%2A``); RFC 3986 makes the two
    equivalent, but Orthanc 1.10 then matches a literal asterisk and a ``Smith*`` search finds
    nothing (measured). ``*`` is allowed as it is in a query, so it is sent unencoded.
    """

    def send(self, request, **kwargs):
        if request.url and "?" in request.url:
            base, _, query = request.url.partition("?")
            request.url = f"{base}?{query.replace('%2A', '*')}"
        return super().send(request, **kwargs)


@dataclass(frozen=True)
class SeriesRecord:
    """One series a search found (the ``medvision pacs search --json`` record, plus display fields)."""

    study_uid: str
    series_uid: str
    patient_id: str
    modality: str
    description: str
    instances: int | None
    patient_name: str = ""
    study_date: str = ""

    def to_dict(self) -> dict:
        keys = ("study_uid", "series_uid", "patient_id", "modality", "description", "instances")
        return {key: getattr(self, key) for key in keys}


def safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PacsClient:
    """One DICOMweb server (``url`` is the DICOMweb root, e.g. ``http://host:8042/dicom-web``)."""

    def __init__(self, url: str, credentials: PacsCredentials | None = None, timeout: float = 30.0):
        from dicomweb_client import DICOMwebClient

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PacsError(f"'{safe_url(url)}' is not a DICOMweb address: give http(s)://host[:port]/root")
        self.url = url.rstrip("/")
        session = (credentials or PacsCredentials()).session()
        self._client = DICOMwebClient(self.url, session=session)
        self._client.set_http_retry_params(retry=False)
        self._timeout = timeout
        session.request = _with_timeout(session.request, timeout)

    # --- QIDO-RS --------------------------------------------------------------
    def search(self, *, patient_id: str | None = None, patient_name: str | None = None,
               study_date: str | None = None, modality: str | None = None,
               study_uid: str | None = None, series_uid: str | None = None) -> list[SeriesRecord]:
        """Series matching every given filter (``study_date``: ``YYYYMMDD`` or ``YYYYMMDD-YYYYMMDD``)."""
        filters = {key: value for key, value in (
            ("PatientID", patient_id), ("PatientName", patient_name), ("StudyDate", study_date),
            ("Modality", modality), ("StudyInstanceUID", study_uid), ("SeriesInstanceUID", series_uid)) if value}
        found = self._call("search", lambda: self._client.search_for_series(
            search_filters=filters, fields=_SERIES_FIELDS))
        return [_record(pydicom.Dataset.from_json(item)) for item in found]

    # --- WADO-RS --------------------------------------------------------------
    def pull(self, series_uid: str, output: str | Path,
             progress: Callable[[int, int | None], None] | None = None) -> list[Path]:
        """Retrieve a series into folder ``output``, one ``<SOPInstanceUID>.dcm`` per instance.

        Files appear in ``output`` only when the whole series has arrived.

        Raises:
            PacsError: the series is not on the PACS, or the transfer failed.
        """
        steps = self.iter_pull(series_uid, output)
        while True:
            try:
                done, total = next(steps)
            except StopIteration as stop:
                return stop.value
            if progress:
                progress(done, total)

    def iter_pull(self, series_uid: str, output: str | Path) -> Generator[tuple[int, int | None], None, list[Path]]:
        """:meth:`pull` as a generator: yields ``(instances received, instances expected)``, returns the paths."""
        record = self.series(series_uid)
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=output))
        try:
            written = []
            instances = self._call("retrieve", lambda: self._client.iter_series(
                record.study_uid, series_uid, media_types=STORED_SYNTAX))
            for dataset in self._iterate(instances):
                path = staging / f"{dataset.SOPInstanceUID}.dcm"
                dataset.save_as(path, enforce_file_format=True)
                written.append(path)
                yield len(written), record.instances
            if not written:
                raise PacsError(f"series {series_uid} on the PACS holds no instance")
            final = [output / path.name for path in written]
            for src, dst in zip(written, final):
                os.replace(src, dst)
            log.info("retrieved %d instances of series %s from %s", len(final), series_uid, safe_url(self.url))
            return final
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def series(self, series_uid: str) -> SeriesRecord:
        """The record of one series.

        Raises:
            PacsError: no series with this UID on the PACS.
        """
        found = self.search(series_uid=series_uid)
        if not found:
            raise PacsError(f"series {series_uid} is not on the PACS at {safe_url(self.url)}: check the UID "
                            "(medvision pacs search lists them)")
        return found[0]

    # --- STOW-RS --------------------------------------------------------------
    def push(self, datasets: Iterable[pydicom.Dataset], study_uid: str | None = None) -> int:
        """Send instances (into study ``study_uid`` when given), :data:`PUSH_BATCH` per request.

        Returns:
            How many instances the PACS stored.

        Raises:
            PacsError: the PACS refused some or all of a batch (its reason in the message); earlier
                batches stay stored.
        """
        stored, batch = 0, []
        for dataset in datasets:
            batch.append(dataset)
            if len(batch) == PUSH_BATCH:
                stored += self._push_batch(batch, study_uid, stored)
                batch = []
        if batch:
            stored += self._push_batch(batch, study_uid, stored)
        if not stored:
            raise PacsError("nothing to send: no DICOM file among the paths given")
        log.info("stored %d instances on %s", stored, safe_url(self.url))
        return stored

    def _push_batch(self, batch: list[pydicom.Dataset], study_uid: str | None, stored: int) -> int:
        response = self._call("send", lambda: self._client.store_instances(batch, study_instance_uid=study_uid))
        failed = (response.get("FailedSOPSequence") or []) if response is not None else []
        if failed:
            already = f" ({stored} sent before were stored)" if stored else ""
            raise PacsError(f"the PACS rejected {len(failed)} of {len(batch)} instance(s){already}: "
                            + _failure_text(failed))
        return len(batch)

    # --- errors ---------------------------------------------------------------
    def _call(self, what: str, call):
        try:
            return call()
        except requests.HTTPError as exc:
            raise self._http_error(what, exc.response) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PacsError(f"cannot reach the PACS at {safe_url(self.url)} ({type(exc).__name__}): check the "
                            "address and that the server is running") from None
        except requests.RequestException as exc:
            raise PacsError(f"the {what} request to {safe_url(self.url)} failed: {type(exc).__name__}") from None

    def _iterate(self, instances):
        iterator = iter(instances)
        while True:
            try:
                item = self._call("retrieve", lambda: next(iterator))
            except StopIteration:
                return
            yield item

    def _http_error(self, what: str, response) -> PacsError:
        status = getattr(response, "status_code", None)
        where = safe_url(self.url)
        if status in (401, 403):
            return PacsError(f"the PACS at {where} refused the credentials (HTTP {status}): check --user and "
                             f"${PASSWORD_ENV} (or ${TOKEN_ENV})")
        if status == 404:
            return PacsError(f"the PACS at {where} does not hold what was asked (HTTP 404) during {what}")
        reason = _response_reason(response) if what == "send" else ""
        return PacsError(f"the PACS at {where} refused the {what} request (HTTP {status} "
                         f"{getattr(response, 'reason', '')}){': ' + reason if reason else ''}")


def _with_timeout(request, timeout: float):
    def call(method, url, **kwargs):
        kwargs.setdefault("timeout", timeout)
        return request(method, url, **kwargs)
    return call


def _record(ds: pydicom.Dataset) -> SeriesRecord:
    count = ds.get("NumberOfSeriesRelatedInstances")
    return SeriesRecord(
        study_uid=str(ds.get("StudyInstanceUID", "")), series_uid=str(ds.get("SeriesInstanceUID", "")),
        patient_id=str(ds.get("PatientID", "")), modality=str(ds.get("Modality", "")),
        description=str(ds.get("SeriesDescription", "")), instances=int(count) if count not in (None, "") else None,
        patient_name=str(ds.get("PatientName", "")), study_date=str(ds.get("StudyDate", "")))


def _failure_text(failed) -> str:
    reasons = sorted({int(item.get("FailureReason", 0)) for item in failed})
    return ", ".join(f"{_FAILURE_REASONS.get(code, 'failure')} (0x{code:04X})" for code in reasons)


def _response_reason(response) -> str:
    """The PACS's own reason for a refused STOW: failed-instance codes, else its error message."""
    try:
        body = response.json()
    except ValueError:
        text = (getattr(response, "text", "") or "").strip().splitlines()
        return text[0][:200] if text else ""
    if isinstance(body, dict) and "00081198" in body:
        failed = pydicom.Dataset.from_json(body).get("FailedSOPSequence") or []
        return _failure_text(failed) if failed else ""
    if isinstance(body, dict):
        return str(body.get("Details") or body.get("Message") or "")[:200]
    return ""
