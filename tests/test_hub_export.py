"""`deepvrm push --dry-run`: what an export holds, and that it loads where `deepvrm` cannot be imported.

The main test writes a full export, a re-sharded one, an adapter-only one and one of a folder in the
official layout, then loads all of them in ONE fresh Python process in which `import deepvrm` fails
(`deepvrm.hub_upload.verify.run_without_deepvrm`), through `trust_remote_code=True` only: pipeline,
AutoModelForImageClassification, the chat interface's generate, the adapter applied through PEFT. Its
scores are compared with the package's own classes.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import random_image
from safetensors import safe_open
from safetensors.torch import save_file

import deepvrm
from deepvrm import DeepVRMForConditionalGeneration, DeepVRMForImageClassification, DeepVRMProcessor
from deepvrm.configuration_deepvrm import AUTO_MAP
from deepvrm.hub_upload import CleanProcessError, ExportError, check_in_clean_process, export_model
from deepvrm.hub_upload.cli import main as push_main
from deepvrm.hub_upload.verify import run_without_deepvrm

PACKAGE_CODE = Path(deepvrm.__file__).parent  # the model files of the package: modeling_deepvrm/
CODE_FILES = {p.name for p in PACKAGE_CODE.glob("*.py")} - {"__init__.py"}
PROCESSOR_FILES = {"processor_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}
METRICS = {
    "GenImage": {"accuracy": 0.9742, "real_accuracy": 0.98, "fake_accuracy": 0.9684, "average_precision": 0.991,
                 "roc_auc": 0.993, "best_accuracy": 0.981, "best_threshold": 0.42, "n_real": 500, "n_fake": 500,
                 "n_failed": 0},
    "GenImage/Midjourney": {"accuracy": 0.95, "real_accuracy": 0.97, "fake_accuracy": 0.93, "average_precision": 0.98,
                            "roc_auc": 0.985, "n_real": 100, "n_fake": 100, "n_failed": 0},
    "fake-only": {"accuracy": 0.9, "real_accuracy": None, "fake_accuracy": 0.9, "average_precision": None,
                  "roc_auc": None, "n_real": 0, "n_fake": 10, "n_failed": 1},
    "perturbations": {"jpeg:75": {"GenImage": {"accuracy": 0.81, "n_real": 500, "n_fake": 500}}},
}  # fmt: skip


def _card_metadata(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def make_adapter_folder(base_dir: Path, out: Path, with_config: bool = True, with_processor: bool = False):
    """A stage-2-like run folder: a PEFT LoRA adapter on a couple of decoder and low-level-encoder layers,
    deepvrm_training.json, and optionally the Deep-VRM config and the processor (the HF Trainer saves its
    processing class beside the adapter). Returns the PEFT model (for reference scores)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = DeepVRMForConditionalGeneration.from_pretrained(base_dir).eval()
    targets = r".*language_model\.layers\.[23]\.self_attn\.(q_proj|v_proj)|.*visual_low_level\.blocks\.1\.attn\.qkv"
    # init_lora_weights=False: random B, so the adapter really changes the scores.
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    peft_model.save_pretrained(out)
    if with_config:
        model.config.save_pretrained(out)
    if with_processor:
        DeepVRMProcessor.from_pretrained(base_dir).save_pretrained(out)
    info = {"stage": 2, "base_model": str(base_dir), "injection_layer": model.config.injection_layer,
            "fusion": model.config.fusion, "objective": "lm", "lora_r": 4, "lora_alpha": 8}  # fmt: skip
    (out / "deepvrm_training.json").write_text(json.dumps(info, indent=2))
    return peft_model.eval()


def make_official_folder(out: Path) -> Path:
    """The official release's layout at tiny widths: config.json of type qwen2_5_vl without any Deep-VRM
    field (28 layers, so the hard-coded injection layer 16 applies), weights under transformers 4.5x's
    legacy names (visual.*, visual_low_level.*, model.layers.*), and a bare tokenizer."""
    from deepvrm import DeepVRMConfig
    from deepvrm.configuration import preset_config
    from deepvrm.configuration.tokenizer import build_tiny_tokenizer

    torch.manual_seed(1)
    config = preset_config("tiny", injection_layer=16, text_config={"num_hidden_layers": 28, "max_window_layers": 28})
    model = DeepVRMForConditionalGeneration(config)
    with torch.no_grad():  # the towers differ, as after training
        for p in model.model.visual_low_level.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    legacy = {}
    for key, value in model.state_dict().items():
        for new, old in (("model.visual.", "visual."), ("model.visual_low_level.", "visual_low_level."), ("model.language_model.", "model.")):
            if key.startswith(new):
                key = old + key[len(new):]
                break
        legacy[key] = value.contiguous()
    out.mkdir(parents=True)
    save_file(legacy, str(out / "model.safetensors"), metadata={"format": "pt"})
    official = {k: v for k, v in config.to_dict().items() if k not in (
        "injection_layer", "fusion", "prompt", "system_prompt", "answer_token_ids", "prompt_prefix_ids",
        "prompt_suffix_ids", "min_pixels", "max_pixels", "auto_map", "id2label", "label2id")}  # fmt: skip
    official.update(model_type="qwen2_5_vl", architectures=["Qwen2_5_VLForConditionalGeneration"])
    (out / "config.json").write_text(json.dumps(official))
    build_tiny_tokenizer().save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def exports(tiny_model_dir, tmp_path_factory):
    """Full, re-sharded and adapter-only dry-run exports of the tiny model (written through the CLI)."""
    root = tmp_path_factory.mktemp("hub-export")
    model_dir = root / "model"
    model_dir.mkdir()
    for f in Path(tiny_model_dir).iterdir():
        (model_dir / f.name).write_bytes(f.read_bytes())
    (model_dir / "metrics.json").write_text(json.dumps(METRICS))
    # a model folder saved by an older version carries its own, older model code: the export ships the package's
    (model_dir / "modeling_deepvrm.py").write_text("raise ImportError('a stale copy')\n")
    full, sharded, adapter = root / "full", root / "sharded", root / "adapter"
    assert push_main([str(model_dir), "--dry-run", str(full), "--repo-id", "test-org/tiny-deepvrm", "--no-verify",
                      "--dataset", "test-org/deepvrm-d2", "--base-model", "Qwen/Qwen2.5-VL-7B-Instruct"]) == 0  # fmt: skip
    assert push_main([str(model_dir), "--dry-run", str(sharded), "--max-shard-size", "600KB", "--no-verify"]) == 0
    adapter_run = root / "adapter-run"
    peft_model = make_adapter_folder(Path(tiny_model_dir), adapter_run)
    assert push_main([str(adapter_run), "--adapter-only", "--dry-run", str(adapter), "--repo-id", "test-org/tiny-lora",
                      "--base-model", "test-org/tiny-base", "--no-verify"]) == 0  # fmt: skip
    official_dir = make_official_folder(root / "official-layout")
    official = root / "official"
    assert push_main([str(official_dir), "--dry-run", str(official), "--no-verify"]) == 0
    return {"model": model_dir, "full": full, "sharded": sharded, "adapter": adapter, "adapter_run": adapter_run,
            "peft_model": peft_model, "root": root, "official_dir": official_dir, "official": official}  # fmt: skip


# Runs in a fresh interpreter: deepvrm blocked, everything through trust_remote_code.
ISOLATED = textwrap.dedent(
    r"""
    import json, sys

    try:
        import deepvrm  # noqa: F401
        raise SystemExit("deepvrm is importable: the test would prove nothing")
    except ModuleNotFoundError:
        pass

    import torch
    from PIL import Image
    from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification,
                              AutoModelForImageTextToText, AutoProcessor, pipeline)
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    torch.set_num_threads(2)
    full, sharded, adapter, base, image_path, official = sys.argv[1:7]
    image = Image.open(image_path)
    out = {}
    config = AutoConfig.from_pretrained(full, trust_remote_code=True)
    out["config"] = [type(config).__name__, type(config).__module__, config.injection_layer, config.fusion]
    model = AutoModelForImageClassification.from_pretrained(full, trust_remote_code=True).eval()
    image_processor = AutoImageProcessor.from_pretrained(full, trust_remote_code=True)
    with torch.no_grad():
        out["classifier"] = model(**image_processor(images=[image], return_tensors="pt")).logits.softmax(-1)[0].tolist()
    out["classes"] = [type(model).__name__, type(model).__module__, type(image_processor).__name__]
    detector = pipeline("image-classification", model=full, trust_remote_code=True)
    out["pipeline"] = {r["label"]: r["score"] for r in detector(image_path)}
    chat = AutoModelForImageTextToText.from_pretrained(full, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(full, trust_remote_code=True)
    out["processor"] = type(processor).__name__
    inputs = processor.detection_inputs(image)
    with torch.no_grad():
        logits = chat(**inputs).logits[:, -1, chat.config.answer_token_ids]
        generated = chat.generate(**inputs, max_new_tokens=2, do_sample=False)
    out["chat"] = logits.softmax(-1)[0].tolist()
    out["generated"] = generated[0, inputs["input_ids"].shape[1]:].tolist()
    out["bare"] = type(AutoModel.from_pretrained(full, trust_remote_code=True)).__name__
    # re-sharded weights load to the same scores
    sharded_model = AutoModelForImageClassification.from_pretrained(sharded, trust_remote_code=True).eval()
    with torch.no_grad():
        out["sharded"] = sharded_model(**image_processor(images=[image], return_tensors="pt")).logits.softmax(-1)[0].tolist()
    # the adapter, as its card says: remote class from the adapter repo + PEFT on the base
    from peft import PeftModel

    DeepVRM = get_class_from_dynamic_module("modeling_deepvrm.DeepVRMForConditionalGeneration", adapter)
    tuned = PeftModel.from_pretrained(DeepVRM.from_pretrained(base), adapter).eval()
    adapter_processor = AutoProcessor.from_pretrained(adapter, trust_remote_code=True)
    adapter_inputs = adapter_processor.detection_inputs(image)
    with torch.no_grad():
        out["adapter"] = tuned(**adapter_inputs).logits[:, -1, tuned.config.answer_token_ids].softmax(-1)[0].tolist()
    # an official-layout checkpoint (legacy weight names) loads through the remote code's renaming
    official_model = AutoModelForImageClassification.from_pretrained(official, trust_remote_code=True).eval()
    with torch.no_grad():
        out["official"] = official_model(**image_processor(images=[image], return_tensors="pt")).logits.softmax(-1)[0].tolist()
    out["deepvrm_modules"] = sorted(m for m in sys.modules if m == "deepvrm" or m.startswith("deepvrm."))
    print("RESULT " + json.dumps(out))
    """
)




def run_isolated(args: list[str]) -> dict:
    result = run_without_deepvrm(ISOLATED, *args, env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.slow
def test_exports_load_without_deepvrm_and_match_the_package(exports, tiny_model_dir, tmp_path):
    image_path = tmp_path / "image.png"
    random_image(100, 130, seed=7).save(image_path)
    image = random_image(100, 130, seed=7)
    child = run_isolated([str(exports["full"]), str(exports["sharded"]), str(exports["adapter"]), str(tiny_model_dir),
                          str(image_path), str(exports["official"])])  # fmt: skip
    assert child["deepvrm_modules"] == []
    assert child["config"][0] == "DeepVRMConfig" and child["config"][1].startswith("transformers_modules.")
    assert child["classes"][0] == "DeepVRMForImageClassification" and child["classes"][1].startswith("transformers_modules.")
    assert child["classes"][2] == "DeepVRMImageProcessor" and child["processor"] == "DeepVRMProcessor"
    assert child["bare"] == "DeepVRMModel"

    # The package's own classes on the same image.
    processor = DeepVRMProcessor.from_pretrained(tiny_model_dir)
    classifier = DeepVRMForImageClassification.from_pretrained(tiny_model_dir).eval()
    chat = DeepVRMForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    inputs = processor.detection_inputs(image)
    with torch.no_grad():
        expected = classifier(**processor.image_processor(images=[image], return_tensors="pt")).logits.softmax(-1)[0]
        expected_chat = chat(**inputs).logits[:, -1, chat.config.answer_token_ids].softmax(-1)[0]
        expected_generated = chat.generate(**inputs, max_new_tokens=2, do_sample=False)[0, inputs["input_ids"].shape[1]:]
        expected_adapter = exports["peft_model"](**inputs).logits[:, -1, chat.config.answer_token_ids].softmax(-1)[0]
    labels = [classifier.config.id2label[i] for i in range(2)]
    torch.testing.assert_close(torch.tensor(child["classifier"]), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor([child["pipeline"][label] for label in labels]), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(child["chat"]), expected_chat, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(child["sharded"]), expected, atol=1e-5, rtol=0)
    assert child["generated"] == expected_generated.tolist()
    torch.testing.assert_close(torch.tensor(child["adapter"]), expected_adapter, atol=1e-5, rtol=0)
    assert (expected_adapter - expected_chat).abs().max() > 1e-4  # the adapter changes the scores
    official = DeepVRMForImageClassification.from_pretrained(exports["official_dir"]).eval()
    with torch.no_grad():
        expected_official = official(**processor.image_processor(images=[image], return_tensors="pt")).logits.softmax(-1)[0]
    torch.testing.assert_close(torch.tensor(child["official"]), expected_official, atol=1e-5, rtol=0)


def test_export_code_files_are_the_package_model_files(exports):
    """What a Hub user runs is what this package runs: every .py of an export is a byte-identical copy of
    a file in the package's modeling_deepvrm/ folder, whatever .py files the model folder itself holds."""
    assert b"stale copy" in (exports["model"] / "modeling_deepvrm.py").read_bytes()
    assert {"configuration_deepvrm.py", "modeling_deepvrm.py", "processing_deepvrm.py"} <= CODE_FILES
    for kind in ("full", "sharded", "adapter", "official"):
        exported = {p.name: p.read_bytes() for p in exports[kind].glob("*.py")}
        assert set(exported) == CODE_FILES, kind
        for name, data in exported.items():
            assert data == (PACKAGE_CODE / name).read_bytes(), f"{kind}/{name} differs from the package's"


@pytest.mark.slow  # a fresh Python process
def test_clean_process_check_fails_when_the_code_needs_deepvrm(exports, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    for path in exports["full"].iterdir():
        if path.suffix != ".safetensors":
            (folder / path.name).write_bytes(path.read_bytes())
    with (folder / "injection.py").open("a") as handle:
        handle.write("\nimport deepvrm.inference  # a package import that a Hub user cannot satisfy\n")
    with pytest.raises(CleanProcessError, match="deepvrm"):
        check_in_clean_process(folder)


def test_full_export_contents(exports):
    full = exports["full"]
    names = {p.name for p in full.iterdir()}
    assert names == {"config.json", "generation_config.json", "model.safetensors", "README.md"} | CODE_FILES | PROCESSOR_FILES
    assert not list(full.parent.glob(".*partial*")), "staging folder left behind"
    config = json.loads((full / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and config["model_type"] == "deepvrm"
    processor_config = json.loads((full / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_deepvrm.DeepVRMProcessor"
    assert processor_config["image_processor"]["auto_map"]["AutoImageProcessor"] == "processing_deepvrm.DeepVRMImageProcessor"
    # weights are copied byte for byte
    assert (full / "model.safetensors").read_bytes() == (exports["model"] / "model.safetensors").read_bytes()
    # metrics.json beside the model is not uploaded as a file, its results go into the card
    assert "metrics.json" not in names


def test_model_card_states_only_what_the_model_records(exports):
    meta = _card_metadata(exports["full"] / "README.md")
    assert meta["pipeline_tag"] == "image-classification" and meta["library_name"] == "transformers"
    assert meta["license"] == "apache-2.0" and meta["base_model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert meta["datasets"] == ["test-org/deepvrm-d2"] and "deepvrm" in meta["tags"]
    by_dataset = {}
    for result in meta["model-index"][0]["results"]:
        dataset = result["dataset"]
        key = dataset["name"] + ("/" + dataset["config"] if "config" in dataset else "")
        by_dataset[key] = {m["type"]: m["value"] for m in result["metrics"]}
        assert result["task"]["type"] == "image-classification" and dataset["type"]
    assert by_dataset["GenImage"]["accuracy"] == pytest.approx(0.9742)
    assert by_dataset["GenImage"]["roc_auc"] == pytest.approx(0.993)
    assert by_dataset["GenImage"]["best_accuracy"] == pytest.approx(0.981)  # the oracle figure, named as such
    assert "best_threshold" not in by_dataset["GenImage"]  # a threshold, not a metric
    assert by_dataset["GenImage/Midjourney"]["average_precision"] == pytest.approx(0.98)
    assert by_dataset["fake-only"] == {"accuracy": 0.9, "fake_accuracy": 0.9}  # nulls left out
    assert not any("perturbations" in key for key in by_dataset)
    text = (exports["full"] / "README.md").read_text()
    for heading in ("## Model", "## Usage", "## Evaluation", "## Training"):
        assert heading in text
    assert 'pipeline("image-classification", model="test-org/tiny-deepvrm", trust_remote_code=True)' in text
    assert "AutoModelForImageTextToText" in text and "detection_inputs" in text
    assert "| GenImage | 500 | 500 | 0.9742 |" in text and "| GenImage [jpeg:75] |" in text
    assert "Residual injection before decoder layer 2" in text  # from the config
    # nothing the model was not measured on: no intended-use or limitation claims, no made-up scores
    assert "Intended use" not in text and "Limitations" not in text and "0.97}" not in text
    assert "No training record" in text  # and it says that it has none
    # the sharded export had no --repo-id: a placeholder, no model-index name needed, still valid YAML
    sharded_meta = _card_metadata(exports["sharded"] / "README.md")
    assert sharded_meta["model-index"][0]["name"] == "deepvrm" and "base_model" not in sharded_meta
    # no metrics beside the official-layout folder: no model-index, and the card says so
    official_text = (exports["official"] / "README.md").read_text()
    assert "model-index" not in _card_metadata(exports["official"] / "README.md")
    assert "No evaluation results were recorded" in official_text


def test_official_layout_export_keeps_the_weights_and_completes_the_config(exports):
    official = exports["official"]
    assert (official / "model.safetensors").read_bytes() == (exports["official_dir"] / "model.safetensors").read_bytes()
    config = json.loads((official / "config.json").read_text())
    assert config["model_type"] == "deepvrm" and config["injection_layer"] == 16 and config["fusion"] == "mean"
    assert config["auto_map"] == AUTO_MAP and config["architectures"] == ["DeepVRMForConditionalGeneration"]
    assert config["answer_token_ids"] and config["prompt_prefix_ids"]  # from the shipped tokenizer
    assert json.loads((official / "processor_config.json").read_text())["processor_class"] == "DeepVRMProcessor"


def test_resharded_export_has_an_index_and_the_same_tensors(exports):
    sharded = exports["sharded"]
    shards = sorted(sharded.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2 and not (sharded / "model.safetensors").exists()
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {p.name for p in shards}
    for shard in shards:  # tensor data within the limit (the header comes on top, as in transformers' sharding)
        header = int.from_bytes(shard.read_bytes()[:8], "little")
        assert shard.stat().st_size - 8 - header <= 600_000
    with safe_open(str(exports["model"] / "model.safetensors"), "pt") as original:
        keys = set(original.keys())
        assert set(index["weight_map"]) == keys
        for key in sorted(keys)[:: max(1, len(keys) // 10)]:
            with safe_open(str(sharded / index["weight_map"][key]), "pt") as shard:
                assert torch.equal(shard.get_tensor(key), original.get_tensor(key))


def test_adapter_only_export_contents(exports):
    adapter = exports["adapter"]
    names = {p.name for p in adapter.iterdir()}
    assert names == {"adapter_config.json", "adapter_model.safetensors", "deepvrm_training.json", "config.json",
                     "README.md"} | CODE_FILES | PROCESSOR_FILES  # fmt: skip
    assert (adapter / "adapter_model.safetensors").read_bytes() == (exports["adapter_run"] / "adapter_model.safetensors").read_bytes()
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "test-org/tiny-base"
    assert json.loads((adapter / "deepvrm_training.json").read_text())["base_model"] == "test-org/tiny-base"
    meta = _card_metadata(adapter / "README.md")
    assert meta["base_model"] == "test-org/tiny-base" and meta["base_model_relation"] == "adapter"
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "image-classification" and "lora" in meta["tags"]
    text = (adapter / "README.md").read_text()
    assert 'DeepVRM.from_pretrained("test-org/tiny-base"' in text and 'PeftModel.from_pretrained(model, "test-org/tiny-lora")' in text
    assert "r=4, alpha=8" in text
    full_weights = (exports["full"] / "model.safetensors").stat().st_size
    assert (adapter / "adapter_model.safetensors").stat().st_size < full_weights / 10


def test_adapter_folder_written_like_deepvrm_train(exports, tmp_path):
    """No config.json beside the adapter (as `deepvrm train --save-adapter-only` writes it): the card is
    built from deepvrm_training.json, and a local base with no Hub id is refused with the fix named."""
    run = tmp_path / "run"
    make_adapter_folder(Path(exports["model"]), run, with_config=False, with_processor=True)
    # what the HF Trainer leaves beside it: the end-of-training evaluation and the log history
    (run / "eval_results.json").write_text(json.dumps({"epoch": 2.0, "eval_toy_accuracy": 0.75, "eval_toy_real_accuracy": 0.5,
                                                       "eval_toy_roc_auc": None, "eval_toy_n_real": 8, "eval_loss": 1.2}))  # fmt: skip
    (run / "trainer_state.json").write_text(json.dumps({"global_step": 12, "epoch": 2.0, "train_batch_size": 4,
                                                        "log_history": [{"loss": 0.9}, {"loss": 0.41}]}))  # fmt: skip
    with pytest.raises(ExportError, match="--base-model"):
        export_model(run, tmp_path / "refused", adapter_only=True)
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "out"
    export = export_model(run, out, adapter_only=True, base_model="test-org/tiny-base", repo_id="test-org/lora")
    names = {p.name for p in out.iterdir()}
    assert "config.json" not in names and {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= names
    assert PROCESSOR_FILES | CODE_FILES <= names  # the run folder's processor; the model code all the same
    assert "README.md" in {p.name for p in run.iterdir()}  # PEFT's own card in the run folder is replaced by ours
    assert _card_metadata(out / "README.md")["library_name"] == "peft"
    assert export.parameters > 0 and export.folder == out
    text = (out / "README.md").read_text()
    assert "injection_layer" in text and "test-org/tiny-base" in text
    assert "12 optimizer steps (2.00 epochs)" in text and "0.4100" in text
    results = _card_metadata(out / "README.md")["model-index"][0]["results"]
    assert results[0]["dataset"]["name"] == "toy"
    assert {m["type"]: m["value"] for m in results[0]["metrics"]} == {"accuracy": 0.75, "real_accuracy": 0.5}
    # no local paths on the public page or in the published training record
    record = (out / "deepvrm_training.json").read_text()
    assert str(tmp_path) not in text and str(tmp_path) not in record and str(exports["root"]) not in record
    assert json.loads(record)["base_model"] == "test-org/tiny-base"


def test_export_is_reproducible(exports, tmp_path):
    again = tmp_path / "again"
    export_model(exports["model"], again, repo_id="test-org/tiny-deepvrm", datasets=["test-org/deepvrm-d2"],
                 base_model="Qwen/Qwen2.5-VL-7B-Instruct")  # fmt: skip
    for path in exports["full"].iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


def test_export_refuses_bad_input_and_writes_nothing(exports, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for f in exports["model"].iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    with safe_open(str(model / "model.safetensors"), "pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys() if "visual_low_level" not in k}
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="visual_low_level.*from_base_model"):
        export_model(model, out)
    assert not out.exists()
    # truncated weights
    data = (exports["model"] / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match="truncated"):
        export_model(model, out)
    # pickles are refused
    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ExportError, match="safetensors only"):
        export_model(model, out)
    # an unreadable shard size
    with pytest.raises(ExportError, match="5 gigs"):
        export_model(exports["model"], tmp_path / "x", max_shard_size="5 gigs")
    assert not (tmp_path / "x").exists()
    # an existing non-empty output folder is not overwritten
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_model(exports["model"], out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    # the CLI says so, with exit status 1
    assert push_main([str(model), "--dry-run", str(tmp_path / "cli-out"), "--no-verify"]) == 1
    assert not (tmp_path / "cli-out").exists()
