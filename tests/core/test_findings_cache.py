"""Trust verdicts remembered by content: re-judged when a config, the gate or MONAI changes."""

from __future__ import annotations

import json

import pytest

from napari_medvision.core.models import findings_cache, load_bundle
from tests.bundles import unet_bundle


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVISION_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "trust_findings.json"


def counting_judge(findings):
    calls = []

    def judge():
        calls.append(1)
        return list(findings)
    return judge, calls


def test_a_verdict_is_judged_once_per_content(tmp_path, cache):
    folder = unet_bundle(tmp_path / "net")
    judge, calls = counting_judge(["'x' runs code"])
    assert findings_cache.cached_findings(folder, judge) == ["'x' runs code"]
    assert findings_cache.cached_findings(folder, judge) == ["'x' runs code"]
    assert len(calls) == 1 and cache.is_file()
    (folder / "models" / "model.pt").write_bytes(b"other weights")  # weights decide nothing the gate says
    assert findings_cache.cached_findings(folder, judge) == ["'x' runs code"] and len(calls) == 1


def test_an_edited_config_is_judged_again(tmp_path, cache):
    folder = unet_bundle(tmp_path / "net")
    bundle = load_bundle(folder)
    assert bundle.trust_findings() == []
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["inferer"] = {"_target_": "$__import__('os').system('true')"}
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    findings = load_bundle(folder).trust_findings()
    assert findings and any("inferer" in f for f in findings)


def test_a_new_gate_or_monai_judges_again(tmp_path, cache, monkeypatch):
    folder = unet_bundle(tmp_path / "net")
    judge, calls = counting_judge([])
    findings_cache.cached_findings(folder, judge)
    monkeypatch.setattr(findings_cache, "gate_key", lambda: "another gate")
    findings_cache.cached_findings(folder, judge)
    assert len(calls) == 2


def test_the_gate_key_follows_the_gate_source_and_monai(monkeypatch):
    findings_cache.gate_key.cache_clear()
    before = findings_cache.gate_key()
    monkeypatch.setattr(findings_cache.metadata, "version", lambda package: "0.0-other")
    findings_cache.gate_key.cache_clear()
    try:
        assert findings_cache.gate_key() != before
    finally:
        findings_cache.gate_key.cache_clear()


def test_a_broken_or_unwritable_cache_only_costs_speed(tmp_path, cache, monkeypatch):
    folder = unet_bundle(tmp_path / "net")
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    judge, calls = counting_judge(["f"])
    assert findings_cache.cached_findings(folder, judge) == ["f"]
    monkeypatch.setattr(findings_cache, "cache_file", lambda: tmp_path / "file" / "under" / "a-file")
    (tmp_path / "file").write_text("")
    assert findings_cache.cached_findings(folder, judge) == ["f"] and len(calls) == 2


def test_old_verdicts_make_room(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(findings_cache, "MAX_ENTRIES", 2)
    folders = [unet_bundle(tmp_path / f"net{i}", labels={1: f"organ{i}"}) for i in range(3)]
    for folder in folders:
        findings_cache.cached_findings(folder, lambda: [])
    assert len(json.loads(cache.read_text())["findings"]) == 2
