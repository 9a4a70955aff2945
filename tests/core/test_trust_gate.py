"""The trust gate against a bundle author hiding code: each bundle here would write a marker file.

Untrusted, the marker must not appear and the error must name the component; trusted,
the same bundle does write it (so each test can fail). Data-only configs, the shipped
samples and the public spleen bundle build untrusted.
"""

import json
import re
import sys
import textwrap
import types

import pytest
import torch

from napari_medvision import cli
from napari_medvision.core.errors import ModelError, UntrustedCodeError
from napari_medvision.core.io import write_volume
from napari_medvision.core.models import load_bundle
from napari_medvision.core.models import trust_rules, trust_store
from napari_medvision.core.models.bundle import SAMPLE_MODELS_DIR
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import spleen_bundle, unet_bundle
from tests.zoo_configs import zoo_configs

CPU = torch.device("cpu")


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "marker.txt"


def code(marker, value="3"):
    """A ``$`` expression that writes ``marker`` and then evaluates to ``value``."""
    return f"$open(r'{marker}', 'w').close() or {value}"


def evil_bundle(tmp_path, edit, name="evil"):
    """The small UNet bundle with ``edit(config)`` applied to its inference config."""
    folder = unet_bundle(tmp_path / name)
    path = folder / "configs" / "inference.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return folder


def assert_gate_holds(folder, marker, named: str):
    """Untrusted: refused naming ``named``, no marker. Trusted: the marker appears."""
    with pytest.raises(UntrustedCodeError) as refused:
        load_bundle(folder).build(CPU)
    assert named in str(refused.value)
    assert not marker.exists(), "code ran before the gate refused it"
    try:
        load_bundle(folder, trusted=True).build(CPU)
    except Exception:  # noqa: BLE001 - the payload need not leave a working model behind
        pass
    assert marker.exists(), "with trust the bundle's code runs, as MONAI runs it"


# --- the bypasses of issue 22 -------------------------------------------------------
def test_macro_to_another_key(tmp_path, marker):
    def edit(config):
        config["evil"] = code(marker)
        config["network_def"]["out_channels"] = "%evil"
    folder = evil_bundle(tmp_path, edit)
    bundle = load_bundle(folder)
    assert bundle.code_findings() and bundle.config["network_def"]["out_channels"] == "%evil", "expanded a copy"
    assert_gate_holds(folder, marker, "network_def::out_channels")


def test_macro_to_another_file(tmp_path, marker):
    def edit(config):
        config["network_def"]["out_channels"] = "%configs/extra.json#evil"
    folder = evil_bundle(tmp_path, edit)
    (folder / "configs" / "extra.json").write_text(json.dumps({"evil": code(marker)}))
    assert_gate_holds(folder, marker, "network_def::out_channels")


def test_old_style_hash_reference(tmp_path, marker):
    def edit(config):
        config["evil_list"] = [code(marker)]
        config["network_def"]["out_channels"] = "@evil_list#0"
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, "evil_list::0")


def test_relative_reference_climbing_to_the_root(tmp_path, marker):
    def edit(config):
        config["evil"] = code(marker, "None")
        config["preprocessing"]["transforms"].append("@::::::evil")
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, "'evil' evaluates")


def test_builtin_open_as_target(tmp_path, marker):
    def edit(config):
        config["postprocessing"]["transforms"].append({"_target_": "open", "file": str(marker), "mode": "w"})
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, "builds 'open' (open)")


def test_monai_run_cmd(tmp_path, marker):
    def edit(config):
        config["inferer"]["_requires_"] = {"_target_": "monai.utils.run_cmd", "cmd_list": ["touch", str(marker)]}
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, "monai.utils.run_cmd")


def test_monai_bundle_run(tmp_path, marker):
    def edit(config):
        config["inferer"]["_requires_"] = {"_target_": "monai.bundle.run", "run_id": "go",
                                           "config_file": str(tmp_path / "evil" / "configs" / "other.json")}
    folder = evil_bundle(tmp_path, edit)
    (folder / "configs" / "other.json").write_text(json.dumps({"go": [code(marker)]}))
    assert_gate_holds(folder, marker, "monai.bundle.run")


# --- more ways of hiding code --------------------------------------------------------
def test_yaml_anchor_and_merge_key(tmp_path, marker):
    folder = unet_bundle(tmp_path / "yaml")
    (folder / "configs" / "inference.json").unlink()
    (folder / "configs" / "inference.yaml").write_text(textwrap.dedent(f"""\
        unused: &payload "{code(marker)}"
        base: &net {{_target_: UNet, spatial_dims: 3, in_channels: 1, out_channels: *payload,
                    channels: [4, 8], strides: [2], num_res_units: 1}}
        network_def: {{<<: *net}}
        preprocessing: {{_target_: Compose, transforms: [{{_target_: EnsureChannelFirstd, keys: image}}]}}
        """))
    assert_gate_holds(folder, marker, "network_def::out_channels")


def test_unicode_look_alike_key(tmp_path, marker):
    lookalike = "n_\u043eut"  # Cyrillic o: MONAI follows the reference exactly, so must the gate
    def edit(config):
        config["n_out"] = 3
        config[lookalike] = code(marker)
        config["network_def"]["out_channels"] = "@" + lookalike
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, lookalike)


def test_full_width_names_in_an_expression(tmp_path, marker):
    def edit(config):  # Python folds full-width letters (NFKC): this is open(...)
        config["network_def"]["out_channels"] = f"$\uff4f\uff50\uff45\uff4e(r'{marker}', 'w').close() or 3"
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, "network_def::out_channels")


def test_callable_mode_on_a_builtin(tmp_path, marker):
    def edit(config):
        config["opener"] = {"_target_": "open", "_mode_": "callable", "file": str(marker), "mode": "w"}
        config["postprocessing"]["transforms"].append({"_target_": "@opener"})
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, "_mode_ 'callable'")
    findings = load_bundle(tmp_path / "evil").code_findings()
    # ids are those of the config as built: the SaveImaged before it is dropped
    assert "'postprocessing::transforms::3' builds whatever '@opener' evaluates to (not a class name)" in findings


def test_reference_inside_requires(tmp_path, marker):
    def edit(config):
        config["init"] = code(marker)
        config["network_def"]["_requires_"] = ["@init"]
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, "'init' evaluates")


def test_expression_inside_disabled(tmp_path, marker):
    def edit(config):
        config["inferer"]["_disabled_"] = code(marker, "False")
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, "inferer::_disabled_")


def test_expressions_under_odd_dict_keys(tmp_path, marker):
    def edit(config):  # a description and a "$" key are still items MONAI evaluates
        config["network_def"]["_desc_"] = code(marker, "'a UNet'")
        config["inferer"]["$note"] = code(marker, "'x'")
    folder = evil_bundle(tmp_path, edit)
    with pytest.raises(UntrustedCodeError, match=r"network_def::_desc_.*inferer::\$note"):
        load_bundle(folder).build(CPU)
    assert_gate_holds(folder, marker, "network_def::_desc_")


def test_nested_macros(tmp_path, marker):
    def edit(config):
        config["a"] = "%b"
        config["b"] = "%configs/extra.json#c"
        config["network_def"]["out_channels"] = "%a"
    folder = evil_bundle(tmp_path, edit)
    (folder / "configs" / "extra.json").write_text(json.dumps({"c": "%configs/more.yaml#d"}))
    (folder / "configs" / "more.yaml").write_text(f'd: "{code(marker)}"\n')
    assert_gate_holds(folder, marker, "network_def::out_channels")


@pytest.fixture
def importable(tmp_path, monkeypatch):
    """A folder on sys.path whose modules are imported afresh by each test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("side_effect_mod", "fake_len"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield tmp_path
    for name in ("side_effect_mod", "fake_len"):
        sys.modules.pop(name, None)


def test_import_of_a_module_that_is_not_a_library(tmp_path, marker, importable):
    (importable / "side_effect_mod.py").write_text(f"open(r'{marker}', 'w').close()\n")
    def edit(config):  # MONAI imports every import statement on the first lookup, used key or not
        config["imports"].append("$import side_effect_mod")
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, "'imports::1' runs '$import side_effect_mod'")


def test_import_rebinding_a_name_expressions_use(tmp_path, marker, importable):
    (importable / "fake_len.py").write_text(f"def len(x):\n    open(r'{marker}', 'w').close()\n    return 3\n")
    def edit(config):
        config["imports"].append("$from fake_len import len")
        config["network_def"]["out_channels"] = "$len([1, 2, 3])"
    assert_gate_holds(evil_bundle(tmp_path, edit), marker, "fake_len")


def test_lambda_transform_and_reference_target(tmp_path, marker):
    def edit(config):
        config["postprocessing"]["transforms"].append(
            {"_target_": "Lambdad", "keys": "pred", "func": f"$lambda x: open(r'{marker}', 'w') and x"})
        config["make"] = code(marker, "None")
    findings = load_bundle(evil_bundle(tmp_path, edit)).code_findings()
    assert any("Lambdad" in f and "not on the allow-list" in f for f in findings)
    assert any("lambda x" in f for f in findings)
    assert not any(f.startswith("'make'") for f in findings), "an unused key is not a finding"


# --- through the command line ----------------------------------------------------------
@pytest.fixture
def ct(tmp_path):
    return write_volume(generate_phantom(1, shape=(16, 32, 32), spacing=(6.0, 6.0, 8.0)).image, tmp_path / "ct.nii.gz")


def test_medvision_infer_refuses_without_trust_and_runs_with_it(tmp_path, marker, ct, capsys):
    def edit(config):
        config["inferer"]["_requires_"] = {"_target_": "monai.utils.run_cmd", "cmd_list": ["touch", str(marker)]}
    folder = evil_bundle(tmp_path, edit)
    assert cli.main(["infer", "--model", str(folder), "--input", str(ct), "--device", "cpu", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bundle 'evil' runs its own code") and "monai.utils.run_cmd" in err
    assert not marker.exists()
    assert cli.main(["infer", "--model", str(folder), "--input", str(ct), "--device", "cpu", "--json",
                     "--trust"]) == 0
    assert marker.exists()


# --- what is refused trusted or not, and configs MONAI cannot read -------------------------
def test_macro_reading_outside_the_bundle_is_refused_even_trusted(tmp_path, marker):
    (tmp_path / "outside.json").write_text(json.dumps({"evil": code(marker)}))
    def edit(config):
        config["network_def"]["out_channels"] = "%../outside.json#evil"
    folder = evil_bundle(tmp_path, edit)
    for trusted in (False, True):
        with pytest.raises(ModelError, match=r"'network_def::out_channels' reads '\.\./outside\.json'.*outside"):
            load_bundle(folder, trusted=trusted).build(CPU)
    assert not marker.exists()


def test_macro_to_outside_hidden_in_a_file_macro_inside_a_list(tmp_path, marker):
    (tmp_path / "outside.json").write_text(json.dumps({"evil": code(marker)}))
    def edit(config):
        config["network_def"]["strides"] = ["%configs/extra.json#stride", {"x": 1}]
    folder = evil_bundle(tmp_path, edit)
    (folder / "configs" / "extra.json").write_text(json.dumps({"stride": ["%../../outside.json#evil"]}))
    with pytest.raises(ModelError, match=r"'network_def::strides::0::0' reads '\.\./\.\./outside\.json'"):
        load_bundle(folder, trusted=True).build(CPU)
    assert not marker.exists()


@pytest.mark.parametrize("edit, named", [
    (lambda c: c["network_def"].update(out_channels="%nokey"),
     "'network_def::out_channels': the macro '%nokey' names nothing in this config ('query key: nokey')"),
    (lambda c: c["network_def"].update(out_channels="%configs/missing.json#x"), "'network_def::out_channels'"),
    (lambda c: c.update(a="%b", b="%a", network_def={**c["network_def"], "out_channels": "%a"}), "'network_def::out_channels': the macro '%a' never resolves"),
    (lambda c: c.update(a="@b", b="@a", network_def={**c["network_def"], "out_channels": "@a"}),
     "cannot build 'network_def'"),
])
def test_configs_monai_cannot_read_are_one_clean_error(tmp_path, ct, capsys, edit, named):
    folder = evil_bundle(tmp_path, edit)
    with pytest.raises(ModelError, match=re.escape(named)) as error:
        load_bundle(folder, trusted=True).build(CPU)
    assert not isinstance(error.value, UntrustedCodeError)
    assert cli.main(["infer", "--model", str(folder), "--input", str(ct), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [err.splitlines()[-1]]
    assert "Traceback" not in err


def test_expression_target_and_debugger_need_trust(tmp_path):
    def edit(config):
        config["inferer"] = {"_target_": "$@network_def"}
        config["postprocessing"]["transforms"].append({"_target_": "Identityd", "keys": "pred", "_debug_": True})
    findings = load_bundle(evil_bundle(tmp_path, edit)).code_findings()
    assert "'inferer' builds whatever '$@network_def' evaluates to (not a class name)" in findings
    assert "'postprocessing::transforms::3' builds 'Identityd' in the debugger (_debug_)" in findings


def test_keys_we_set_are_not_findings_and_are_what_is_built(tmp_path):
    def edit(config):  # the bundle's own device and bundle_root are code; ours replace them
        config["device"] = "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"
        config["bundle_root"] = "$__import__('os').getcwd()"
        config["inferer"]["sw_device"] = "@device"
        config["postprocessing"]["transforms"][1]["meta_key_postfix"] = "$@bundle_root + '_meta'"
    folder = evil_bundle(tmp_path, edit)
    bundle = load_bundle(folder)
    assert bundle.code_findings() == []
    model = bundle.build(CPU)
    assert model.inferer.sw_device == CPU
    assert model.postprocessing.transforms[1].meta_key_postfix == (str(folder.resolve()) + "_meta",)


# --- data passes untrusted ------------------------------------------------------------------
def test_data_only_expressions_and_referenced_preprocessing_build_untrusted(tmp_path):
    def edit(config):
        config.update(spatial=[32, 32, 32], flag=True, patch_size=32, out_size=24,
                      pre_transforms=config["preprocessing"]["transforms"],
                      device="$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')")
        config["preprocessing"]["transforms"] = "$@pre_transforms"
        config["pre_transforms"][-1] = {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"}
        config["network_def"]["spatial_dims"] = "$len(@spatial)"
        config["network_def"]["channels"] = "$[4, 8] if @flag else [8, 16]"
        config["network_def"]["dropout"] = "$None"
        config["inferer"]["overlap"] = "$1.0 - float(@out_size) / float(@patch_size)"
        config["inferer"]["roi_size"] = "$[@spatial[0], @spatial[1], int(@patch_size)]"
    bundle = load_bundle(evil_bundle(tmp_path, edit, "data_only"))
    assert bundle.code_findings() == []
    model = bundle.build(CPU)
    assert model.inferer.overlap == 0.25 and list(model.inferer.roi_size) == [32, 32, 32]
    names = [type(t).__name__ for t in model.preprocessing.transforms]
    assert "LoadImaged" not in names and names[-1] == "EnsureTyped"


@pytest.mark.parametrize("name", ["ct_organs_unet", "ct_organs_unetr", "lesion_classifier", "nodule_detector",
                                  "radiograph_classifier"])
def test_shipped_samples_build_untrusted_on_their_merits(name):
    folder = SAMPLE_MODELS_DIR / name
    if not (folder / "models").is_dir():
        pytest.skip(f"sample model {name} not present in {SAMPLE_MODELS_DIR}")
    bundle = load_bundle(folder)
    assert bundle.code_findings() == []
    assert bundle.build(CPU).network is not None


def test_public_spleen_bundle_builds_untrusted(shared_data, tmp_path):
    bundle = load_bundle(spleen_bundle(shared_data, tmp_path / "spleen"))
    assert bundle.code_findings() == []
    assert bundle.build(CPU).network is not None


# --- remembered trust ---------------------------------------------------------------------
def test_remembered_trust_is_per_content(tmp_path, marker):
    def edit(config):
        config["network_def"]["out_channels"] = code(marker)
    folder = evil_bundle(tmp_path, edit)
    digest = trust_store.remember(folder, "evil")
    assert load_bundle(folder).summary()["trusted"] is True
    load_bundle(folder).build(CPU)
    assert marker.exists()
    marker.unlink()
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["network_def"]["channels"] = [4, 16]
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    assert trust_store.content_hash(folder) != digest
    with pytest.raises(UntrustedCodeError):
        load_bundle(folder).build(CPU)
    assert not marker.exists()


def test_trust_list_and_revoke(tmp_path, capsys):
    folder = unet_bundle(tmp_path / "some_bundle")
    digest = trust_store.remember(folder, "some_bundle")
    assert cli.main(["trust", "list", "--json"]) == 0
    assert [r["hash"] for r in json.loads(capsys.readouterr().out)] == [digest]
    assert cli.main(["trust", "revoke", digest[:12]]) == 0
    assert trust_store.trusted_bundles() == []
    assert cli.main(["trust", "revoke", "some_bundle"]) == 2
    assert capsys.readouterr().err.startswith("error: no trusted bundle matches")


def test_models_json_shows_every_finding(tmp_path, monkeypatch, capsys):
    clean = unet_bundle(tmp_path / "models" / "clean")
    risky = unet_bundle(tmp_path / "models" / "risky")
    config = json.loads((risky / "configs" / "inference.json").read_text())
    config["network_def"]["channels"] = "$list(range(4, 12, 4))"
    config["inferer"]["_target_"] = "scripts.inferer.MyInferer"
    (risky / "configs" / "inference.json").write_text(json.dumps(config))
    monkeypatch.setenv("MEDVISION_MODELS", str(tmp_path / "models"))
    assert cli.main(["models", "--json"]) == 0
    records = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert records["clean"]["needs_trust"] is False and records["clean"]["trust_findings"] == []
    assert records["risky"]["needs_trust"] is True
    assert [f.split("'")[1] for f in records["risky"]["trust_findings"]] == ["network_def::channels", "inferer"]
    assert {"name", "task", "path", "labels", "description"} <= set(records["risky"])
    assert cli.main(["models"]) == 0
    assert "scripts.inferer.MyInferer" in capsys.readouterr().out


# --- zoo-like configs -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(zoo_configs()))
def test_zoo_like_config_verdict(tmp_path, name):
    config, runs_untrusted = zoo_configs()[name]
    folder = tmp_path / name
    (folder / "configs").mkdir(parents=True)
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    findings = load_bundle(folder).code_findings()
    assert (findings == []) == runs_untrusted, findings


# --- the rules, one by one ---------------------------------------------------------------------
@pytest.mark.parametrize("expression", [
    "3", "'text'", "None", "True", "[1.5, 1.5, 2.0]", "(1, 2)", "{'a': 1, 'b': [2]}", "{1, 2}", "-1 + 2 * 3 / 4",
    "7 // 2 % 3", "not False", "1 < 2 <= 3 != 4", "1 if 2 > 1 else 0", "True and False or None",
    "__local_refs['x']", "__local_refs['x'][0]", "__local_refs['x'][1:2]", "len(__local_refs['x'])",
    "int('3')", "float(__local_refs['x'])", "'a' + __local_refs['suffix']", "torch.float32", "np.uint8",
    "numpy.inf", "'x' in ['x']", "None is None", "{**__local_refs['d']}", "torch.bfloat16",
    "__local_refs['x'][0]['y'][1:]",
])
def test_data_only_expressions(expression):
    assert trust_rules.expression_problem(expression) is None


@pytest.mark.parametrize("expression, shown", [
    ("open('f', 'w')", "open('f', 'w')"), ("__import__('os')", "__import__('os')"), ("lambda x: x", "lambda"),
    ("[i for i in range(3)]", "for i in"), ("abs(-1)", "abs(-1)"), ("len(x=1)", "len(x=1)"),
    ("len(*__local_refs['a'])", "len(*"), ("2 ** 100", "2 ** 100"), ("1 << 3", "1 << 3"),
    ("__local_refs['net'].to('cpu')", ".to("), ("torch.device", "torch.device"), ("np.load", "np.load"),
    ("np.__class__", "np.__class__"), ("os.float32", "os.float32"), ("[1][0]", "[1][0]"), ("name", "name"),
    ("f'{1}'", "f'"), ("(y := 1)", ":="), ("__local_refs[0]", "__local_refs[0]"), ("[open('f')]", "open('f')"),
    ("__local_refs['x'][abs(1)]", "abs(1)"), ("1 @ 2", "1 @ 2"), ("~1", "~1"), ("np.no_such_name", "no_such"),
    ("torch.inf", "torch.inf"), ("__local_refs['x'][0][abs(1)]", "abs(1)"),
])
def test_expressions_that_are_code(expression, shown):
    problem = trust_rules.expression_problem(expression)
    assert problem is not None and problem.startswith("computes ") and shown in problem


def test_a_syntax_error_is_not_data():
    assert trust_rules.expression_problem("1 +") == "is not a Python expression"


def test_the_innermost_code_is_named():
    assert trust_rules.expression_problem("[1, {'a': abs(2)}]") == "computes 'abs(2)'"
    assert trust_rules.expression_problem("1 + 2 ** 3") == "computes '2 ** 3'"


@pytest.mark.parametrize("statement", ["import os", "import numpy as np", "import torch", "import monai.bundle",
                                       "from os import path", "import glob, subprocess"])
def test_harmless_imports(statement):
    assert trust_rules.import_problem(statement) is None


@pytest.mark.parametrize("statement, why", [
    ("import scripts", "imports 'scripts'"), ("from scripts.net import Net", "imports 'scripts.net'"),
    ("from . import net", "bundle's own folder"), ("import subprocess", "imports 'subprocess'"),
    ("import os as np", "binds the name 'np'"), ("from os import system as len", "binds the name 'len'"),
    ("import numpy as torch", "binds the name 'torch'"), ("from numpy import float32 as numpy", "'numpy'"),
])
def test_imports_that_need_trust(statement, why):
    problem = trust_rules.import_problem(statement)
    assert problem is not None and why in problem


def test_what_is_not_an_import():
    assert trust_rules.import_problem("x = 1") == "is not an import statement"
    assert trust_rules.import_problem("import (") == "is not an import statement"
    assert trust_rules.import_problem("from . import net") == "imports from the bundle's own folder ('.')"


@pytest.mark.parametrize("path", [
    "monai.networks.nets.UNet", "monai.networks.nets.resnet.ResNet", "torch.nn.Conv3d", "torch.nn.Sequential",
    "monai.networks.blocks.backbone_fpn_utils.BackboneWithFPN", "monai.transforms.Spacingd",
    "monai.transforms.Compose", "monai.inferers.SlidingWindowInferer", "monai.inferers.SimpleInferer",
    "monai.apps.detection.networks.retinanet_detector.RetinaNetDetector",
    "monai.apps.detection.networks.retinanet_network.resnet_fpn_feature_extractor",
    "monai.apps.detection.transforms.dictionary.ClipBoxToImaged",
])
def test_allowed_components(path):
    assert trust_rules.target_problem(path) is None


@pytest.mark.parametrize("path, why", [
    ("open", "not a MONAI or torch.nn component"), ("builtins.eval", "not a MONAI"),
    ("monai.utils.misc.run_cmd", "not a MONAI"), ("monai.bundle.scripts.run", "not a MONAI"),
    ("monai.transforms.Lambdad", "allow-list"), ("monai.transforms.LoadImaged", "allow-list"),
    ("monai.transforms.SaveImage", "allow-list"), ("monai.transforms.TorchVisiond", "allow-list"),
    ("monai.transforms.DataStatsd", "allow-list"), ("monai.transforms.utils.rescale_array", "allow-list"),
    ("monai.networks.nets.resnet.resnet10", "allow-list"), ("monai.inferers.PatchInferer", "allow-list"),
    ("torch.nn.functional.relu", "allow-list"), ("torch.nn.Parameter", "allow-list"),
    ("monai.networks.nets.UNet.__init__", "allow-list"), ("monai.transforms.io.array.Path", "allow-list"),
    ("monai.networks.nets.NoSuchNet", "not found"), ("torch.nn.modules.conv.os.system", "not found"),
])
def test_refused_components(path, why):
    problem = trust_rules.target_problem(path)
    assert problem is not None and why in problem


def test_unknown_names_are_left_to_fail_the_build():
    assert trust_rules.is_unknown("NoSuchNet") and trust_rules.is_unknown("monai.networks.nets.NoSuchNet")
    assert not trust_rules.is_unknown("open") and not trust_rules.is_unknown("os")
    assert not trust_rules.is_unknown("scripts_not_here.net.Net") and not trust_rules.is_unknown("UNet.x")


def test_a_module_python_cannot_look_up_is_not_unknown(monkeypatch):
    monkeypatch.setitem(sys.modules, "spec_less_mod", types.ModuleType("spec_less_mod"))  # find_spec: ValueError
    assert not trust_rules.is_unknown("spec_less_mod")


def test_fetching_arguments():
    problems = trust_rules.argument_problems({"pretrained": True, "pretrained_backbone": False, "weights_url": "u",
                                              "ssl_weights_path": "p", "cache_dir": "d", "dropout_path_rate": 0.1,
                                              "spatial_dims": 3, "config_file": "c"})
    assert problems == [f"argument '{k}' makes it download or read files"
                        for k in ("pretrained", "weights_url", "ssl_weights_path", "cache_dir", "config_file")]
