"""The PACS path against a real Orthanc (DICOMweb plugin): CLI contract, errors, credentials."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest

from napari_medvision.cli import main
from napari_medvision.core.dicom.dicomweb import PacsClient, PacsCredentials, PacsError
from napari_medvision.core.dicom.pacs_cache import cached_series, trim_cache
from napari_medvision.core.phantom import generate_phantom
from tests.core.test_dicom_seg import dciodvfy_errors
from tests.dicom_series import volume_to_ct_series, write_ct_series
from tests.orthanc import PASSWORD, USER, orthanc, orthanc_auth  # noqa: F401 - fixtures


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ct_to_pacs_model_seg_and_back(orthanc, tmp_path, capsys, monkeypatch):
    """PACS -> pull -> model -> DICOM-SEG -> PACS, all through the CLI contract."""
    monkeypatch.delenv("MEDVISION_PACS_PASSWORD", raising=False)
    case = generate_phantom(seed=3, shape=(20, 48, 48), spacing=(6.0, 6.0, 10.0), lesion_probability=0.0)
    volume_to_ct_series(case.image, tmp_path / "scanner", patient_id="PACS-007")
    assert cli(capsys, "pacs", "push", "--url", orthanc.url, tmp_path / "scanner")[0] == 0

    code, out, _ = cli(capsys, "pacs", "search", "--url", orthanc.url, "--patient", "PACS-007", "--json")
    assert code == 0
    [record] = json.loads(out)
    assert set(record) == {"study_uid", "series_uid", "patient_id", "modality", "description", "instances"}
    assert (record["patient_id"], record["modality"], record["instances"]) == ("PACS-007", "CT", 20)

    code, _, err = cli(capsys, "pacs", "pull", "--url", orthanc.url, "--series", record["series_uid"],
                       "--output", tmp_path / "pulled")
    assert code == 0, err
    assert len(list((tmp_path / "pulled").glob("*.dcm"))) == 20

    code, out, err = cli(capsys, "infer", "--model", "ct_organs_unet", "--input", tmp_path / "pulled",
                         "--output", tmp_path / "result.dcm", "--json")
    assert code == 0, err
    seg = hd.seg.segread(tmp_path / "result.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == record["series_uid"]
    names = {seg.get_segment_description(n).segment_label for n in seg.segment_numbers}
    assert names <= set(json.loads(out)["labels"].values()) and "liver" in names
    assert dciodvfy_errors(tmp_path / "result.dcm") == []

    assert cli(capsys, "pacs", "push", "--url", orthanc.url, tmp_path / "result.dcm")[0] == 0
    code, out, _ = cli(capsys, "pacs", "search", "--url", orthanc.url, "--study", record["study_uid"],
                       "--modality", "SEG", "--json")
    [found] = json.loads(out)
    assert found["series_uid"] == seg.SeriesInstanceUID and found["study_uid"] == record["study_uid"]


def test_pacs_errors_are_one_line_without_credentials(orthanc_auth, tmp_path, capsys, monkeypatch, caplog):
    import base64
    import logging

    caplog.set_level(logging.DEBUG)
    write_ct_series(tmp_path / "ct", np.full((3, 8, 8), -1000, np.int16))
    url = orthanc_auth.url
    monkeypatch.setenv("MEDVISION_PACS_PASSWORD", "wrong-password-1")
    code, _, err = cli(capsys, "pacs", "search", "--url", url, "--user", USER)
    assert code == 2 and "HTTP 401" in err and err.count("\n") == 1
    assert "wrong-password-1" not in err
    monkeypatch.setenv("MEDVISION_PACS_PASSWORD", PASSWORD)
    assert cli(capsys, "pacs", "push", "--url", url, "--user", USER, tmp_path / "ct")[0] == 0
    for filters, expected in (([], 1), (["--name", "Phantom*", "--date", "20260101-20260131"], 1),
                              (["--date", "20250101"], 0), (["--modality", "MR"], 0)):
        code, out, _ = cli(capsys, "pacs", "search", "--url", url, "--user", USER, *filters, "--json")
        assert code == 0 and len(json.loads(out)) == expected, filters
    code, _, err = cli(capsys, "pacs", "pull", "--url", url, "--user", USER, "--series", "1.2.3.4.5",
                       "--output", tmp_path / "none")
    assert code == 2 and "1.2.3.4.5 is not on the PACS" in err and PASSWORD not in err
    assert not list((tmp_path / "none").glob("*"))
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert caplog.records and not any(secret in caplog.text for secret in (PASSWORD, "wrong-password-1", basic))
    code, _, err = cli(capsys, "pacs", "search", "--url", f"http://127.0.0.1:{_closed_port()}/dicom-web")
    assert code == 2 and "cannot reach the PACS" in err and err.count("\n") == 1


def test_stow_rejection_shows_the_pacs_reason(orthanc, tmp_path):
    [path] = write_ct_series(tmp_path / "ct", np.full((1, 8, 8), -1000, np.int16))
    client = PacsClient(orthanc.url)
    with pytest.raises(PacsError, match=r"processing failure \(0x0110\)"):
        client.push([pydicom.dcmread(path)], study_uid="1.2.826.0.1.3680043.8.498.999")
    assert client.search(patient_id="MV-0001") == []


def test_cached_series_is_retrieved_once_and_trimmed(orthanc, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVISION_CACHE", str(tmp_path / "cache"))
    paths = write_ct_series(tmp_path / "ct", np.full((4, 16, 16), -1000, np.int16))
    client = PacsClient(orthanc.url)
    monkeypatch.setattr("napari_medvision.core.dicom.dicomweb.PUSH_BATCH", 3)  # two STOW requests
    assert client.push(pydicom.dcmread(p) for p in paths) == 4
    uid = str(pydicom.dcmread(paths[0]).SeriesInstanceUID)
    calls = []
    folder = cached_series(client, uid, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (4, 4) and len(list(folder.glob("*.dcm"))) == 4
    assert cached_series(client, uid, progress=lambda *a: calls.append(a)) == folder and len(calls) == 4
    assert trim_cache(limit_mb=0) == [folder] and not folder.exists()


def test_credentials_stay_out_of_repr_and_go_into_the_session():
    secret = PacsCredentials("alice", "pw-123")
    assert "pw-123" not in repr(secret) and secret.session().auth == ("alice", "pw-123")
    token = PacsCredentials(token="tok-456")
    assert "tok-456" not in repr(token)
    assert token.session().headers["Authorization"] == "Bearer tok-456"


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_jpeg2000_series_is_pulled_as_stored_and_decoded_here(orthanc, tmp_path, capsys):
    """Orthanc 1.10 cannot transcode JPEG 2000: the pull asks for the stored syntax and GDCM decodes it."""
    from napari_medvision.core.io import read_volume
    from tests.dicom_series import compress_jpeg2000

    hu = np.random.default_rng(1).integers(-1000, 1500, (3, 12, 12)).astype(np.int16)
    paths = write_ct_series(tmp_path / "ct", hu, patient_id="J2K-1")
    compress_jpeg2000(paths)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert cli(capsys, "pacs", "push", "--url", orthanc.url, tmp_path / "ct")[0] == 0
    uid = str(pydicom.dcmread(paths[0]).SeriesInstanceUID)
    code, _, err = cli(capsys, "pacs", "pull", "--url", orthanc.url, "--series", uid, "--output", tmp_path / "got")
    assert code == 0, err
    assert {str(pydicom.dcmread(p).file_meta.TransferSyntaxUID) for p in (tmp_path / "got").glob("*.dcm")} == {
        "1.2.840.10008.1.2.4.90"}
    np.testing.assert_array_equal(read_volume(tmp_path / "got").array, hu)
