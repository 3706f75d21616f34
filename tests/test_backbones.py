"""Everything beyond the forward, per backbone, on the tiny Qwen3-VL and Qwen3.5 presets: folders,
the Auto classes and the pipeline, the classification path, the shared tower, LoRA targets and the
training dry run, and the commands (detect, evaluate, probe, attribute, push)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import random_image
from transformers import AutoConfig, AutoModelForImageClassification, AutoProcessor, pipeline

import deepvrm
from deepvrm import DeepVRMForConditionalGeneration, DeepVRMForImageClassification, deepvrm_class
from deepvrm.analysis import synthetic
from deepvrm.cli import main as cli_main
from deepvrm.configuration import preset_config
from deepvrm.configuration.init_model import build_processor, init_model_folder
from deepvrm.inference.sources import resolve_model

PRESETS = {"tiny-qwen3-vl": "qwen3_vl", "tiny-qwen3.5": "qwen3_5"}


@pytest.fixture(scope="module", params=list(PRESETS))
def folder(request, tmp_path_factory):
    """`deepvrm init` of the preset: a complete random Deep-VRM folder of the backbone."""
    return request.param, init_model_folder(request.param, tmp_path_factory.mktemp(request.param) / "model", seed=0)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i, (h, w) in enumerate([(128, 128), (90, 170), (200, 64)]):
        random_image(h, w, seed=i).save(root / f"{i}.png")
    return root


def test_folder_reloads_through_the_auto_classes_and_the_generic_classes(folder):
    preset, path = folder
    backbone = PRESETS[preset]
    assert resolve_model(path).kind == "deepvrm" and resolve_model(path).backbone == backbone
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == f"deepvrm_{backbone}" and type(config) is type(deepvrm.DeepVRMConfig.from_pretrained(path))
    for loader, role in ((AutoModelForImageClassification.from_pretrained, "classification"),
                         (DeepVRMForImageClassification.from_pretrained, "classification"),
                         (DeepVRMForConditionalGeneration.from_pretrained, "generation")):  # fmt: skip
        assert type(loader(path)) is deepvrm_class(backbone, role)
    processor = AutoProcessor.from_pretrained(path)
    assert processor.chat_template == build_processor(config).chat_template
    assert processor.image_processor.patch_size == 16 and list(processor.image_processor.image_mean) == [0.5, 0.5, 0.5]


def test_pipeline_and_classifier_agree_with_the_chat_models_first_answer_token(folder, images):
    """Two answer-token rows at the answer position: the classifier's softmax is the chat model's
    first-token probabilities renormalised over real/fake, and the pipeline reports the same."""
    _, path = folder
    classifier = AutoModelForImageClassification.from_pretrained(path).eval()
    chat = DeepVRMForConditionalGeneration.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    image = random_image(90, 170, seed=1)
    inputs = processor.detection_inputs([image])
    with torch.no_grad():
        expected = chat(**inputs).logits[:, -1, chat.config.answer_token_ids].softmax(-1)[0]
        got = classifier(**processor.image_processor(images=[image], return_tensors="pt")).logits.softmax(-1)[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    result = {r["label"]: r["score"] for r in pipeline("image-classification", model=str(path))(str(images / "1.png"))}
    assert set(result) == {"real", "fake"}
    assert abs(result["fake"] - float(expected[1])) < 1e-5


def test_shared_tower_is_exact_both_ways_and_reloads(folder, tmp_path):
    _, path = folder
    model = DeepVRMForImageClassification.from_pretrained(path).eval()
    from deepvrm.shared_tower import lora_target_names

    low = model.model.visual_low_level
    names = lora_target_names(low)
    assert names and not any("deepstack" in n for n in names)
    with torch.no_grad():  # a stage-2-like low-level tower: visual + rank-2 deltas on the LoRA targets
        for name in names:
            weight = low.get_submodule(name).weight
            weight.add_(torch.randn(weight.shape[0], 2) @ torch.randn(2, weight.shape[1]) * 0.05)
    inputs = build_processor(model.config).image_processor([random_image(128, 128)], return_tensors="pt")
    with torch.no_grad():
        separate = model(**inputs).logits
        model.share_vision_tower()
        assert model.config.low_level_tower == "shared" and not hasattr(model.model, "visual_low_level")
        shared = model(**inputs).logits
        assert (shared - separate).abs().max() < 1e-4
        model.save_pretrained(tmp_path / "shared")
        reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "shared").eval()
        assert torch.allclose(reloaded(**inputs).logits, shared, atol=1e-6)
        model.unshare_vision_tower()
        assert (model(**inputs).logits - separate).abs().max() < 1e-4


@pytest.mark.parametrize("preset, stage1_modules, stage2_modules", [
    # stage 1: every linear of every decoder layer; stage 2: layers K..N-1 and the low-level tower's
    # blocks and merger (not its DeepStack mergers)
    ("tiny-qwen3-vl", 4 * 7, 2 * 7 + 2 * 4 + 2),
    # Qwen3.5: linear-attention layers have 5 projections + 3 MLP, full attention 4 + 3
    ("tiny-qwen3.5", 3 * 8 + 7, (8 + 7) + 2 * 4 + 2),
])  # fmt: skip
def test_lora_targets_of_both_stages(preset, stage1_modules, stage2_modules):
    from deepvrm.trainers.lora import lora_target_regex
    from deepvrm.trainers.models import load_stage1_model, load_stage2_model
    import re

    stock = load_stage1_model(preset, meta=True)
    model = load_stage2_model(preset, meta=True)
    assert type(model) is deepvrm_class(PRESETS[preset], "generation")
    for m, targets, expected in ((stock, ["language_model"], stage1_modules),
                                 (model, ["language_model_from_injection", "visual_low_level"], stage2_modules)):  # fmt: skip
        pattern = re.compile(lora_target_regex(m, targets))
        chosen = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear) and pattern.fullmatch(n)]
        assert len(chosen) == expected, chosen
        assert not any("deepstack" in n or ".visual." in n for n in chosen)
    if preset == "tiny-qwen3-vl":  # the semantic tower's DeepStack mergers are a `visual` target
        assert re.compile(lora_target_regex(model, ["visual"])).fullmatch("model.visual.deepstack_merger_list.0.linear_fc1")


@pytest.mark.parametrize("preset, trainable", [
    ("tiny-qwen3-vl", 208_896), ("tiny-qwen3.5", 213_504),
    ("qwen3-vl-2b", 55_967_744), ("qwen3-vl-4b", 81_166_336), ("qwen3-vl-8b", 104_691_712),
    ("qwen3.5-0.8b", 27_998_208), ("qwen3.5-2b", 53_950_464), ("qwen3.5-4b", 82_780_160), ("qwen3.5-9b", 107_485_184),
])  # fmt: skip
def test_stage2_dry_run_prints_peft_trainable_line(preset, trainable, capsys):
    assert cli_main(["train", "--stage", "2", "--model", preset, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"trainable params: {trainable:,}" in out, out[-2000:]


def test_detect_and_evaluate(folder, images, tmp_path, capsys):
    _, path = folder
    out = tmp_path / "scores.jsonl"
    assert cli_main(["detect", str(images), "--model", str(path), "-o", str(out), "--no-progress", "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(rows) == 3 and all(0 <= r["score"] <= 1 for r in rows), rows
    data = synthetic.write_dataset(tmp_path / "data", per_class=3, size=64)
    assert cli_main(["evaluate", str(data), "--model", str(path), "--no-progress", "-q", "-o", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    first = next(iter(metrics.values()))
    assert first["n_real"] == first["n_fake"] == 3 and 0 <= first["accuracy"] <= 1


def test_probe_on_the_deepvrm_and_on_its_plain_base_and_attribute(folder, tmp_path, capsys):
    preset, path = folder
    data = synthetic.write_dataset(tmp_path / "data", per_class=4, size=64)
    # the plain stock checkpoint of the backbone, with the tokenizer
    from _reference_backbones import stock_config_from

    torch.manual_seed(0)
    plain = deepvrm_class(PRESETS[preset], "stock")(stock_config_from(preset_config(preset)))
    plain.save_pretrained(tmp_path / "plain")
    build_processor(preset_config(preset)).tokenizer.save_pretrained(tmp_path / "plain")
    assert resolve_model(tmp_path / "plain").kind == PRESETS[preset]
    for model, kind in ((tmp_path / "plain", PRESETS[preset]), (path, "deepvrm")):
        report = tmp_path / f"probe-{kind}"
        assert cli_main(["probe", "--model", str(model), "--data", str(data), "--folds", "2", "--pixels", str(128 * 128),
                         "--report", str(report)]) == 0  # fmt: skip
        probe = json.loads((report / "probe.json").read_text())
        assert probe["model_kind"] == kind and len(probe["datasets"][0]["layers"]) == 5
    report = tmp_path / "attribute"
    assert cli_main(["attribute", "--model", str(path), "--data", str(data), "--report", str(report), "--token-maps", "1"]) == 0
    assert any(report.iterdir())
    assert cli_main(["attribute", "--model", str(tmp_path / "plain"), "--data", str(data)]) == 2
    assert "plain Qwen3" in capsys.readouterr().err


@pytest.mark.slow  # a fresh Python process
def test_push_export_loads_without_deepvrm(folder, tmp_path):
    """`deepvrm push --dry-run`: the export carries the package's model files (this backbone's among them)
    and loads through trust_remote_code in a process where `import deepvrm` fails, giving the package's scores."""
    from deepvrm.hub_upload.verify import run_without_deepvrm

    preset, path = folder
    export = tmp_path / "export"
    assert cli_main(["push", str(path), "--dry-run", str(export), "--repo-id", "test-org/tiny", "--no-verify"]) == 0
    config = json.loads((export / "config.json").read_text())
    modeling = f"modeling_deepvrm_{PRESETS[preset]}"
    assert config["auto_map"]["AutoModelForImageClassification"].startswith(modeling + ".")
    assert (export / f"{modeling}.py").read_bytes() == (__import__("pathlib").Path(deepvrm.__file__).parent / f"{modeling}.py").read_bytes()
    image_path = tmp_path / "image.png"
    random_image(90, 170, seed=1).save(image_path)
    code = r"""
import json, sys, torch
from PIL import Image
from transformers import AutoModelForImageClassification, AutoModelForImageTextToText, AutoProcessor, pipeline
folder, image_path = sys.argv[1:3]
image = Image.open(image_path)
classifier = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
chat = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
inputs = processor.detection_inputs(image)
with torch.no_grad():
    scores = classifier(**processor.image_processor(images=[image], return_tensors="pt")).logits.softmax(-1)[0].tolist()
    generated = chat.generate(**inputs, max_new_tokens=2, do_sample=False)[0, inputs["input_ids"].shape[1]:].tolist()
piped = {r["label"]: r["score"] for r in pipeline("image-classification", model=folder, trust_remote_code=True)(image_path)}
print("RESULT " + json.dumps({"scores": scores, "generated": generated, "pipeline": piped,
      "classes": [type(classifier).__name__, type(classifier).__module__, type(chat).__name__],
      "deepvrm": sorted(m for m in sys.modules if m.split(".")[0] == "deepvrm")}))
"""
    result = run_without_deepvrm(code, str(export), str(image_path), env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    child = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert child["deepvrm"] == [] and child["classes"][1].startswith("transformers_modules.")
    assert child["classes"][0] == deepvrm_class(PRESETS[preset], "classification").__name__
    classifier = DeepVRMForImageClassification.from_pretrained(path).eval()
    chat = DeepVRMForConditionalGeneration.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    image = random_image(90, 170, seed=1)
    inputs = processor.detection_inputs(image)
    with torch.no_grad():
        expected = classifier(**processor.image_processor(images=[image], return_tensors="pt")).logits.softmax(-1)[0]
        generated = chat.generate(**inputs, max_new_tokens=2, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    torch.testing.assert_close(torch.tensor(child["scores"]), expected, rtol=0, atol=1e-5)
    assert abs(child["pipeline"]["fake"] - float(expected[1])) < 1e-5
    assert child["generated"] == generated.tolist()


@pytest.mark.parametrize("preset", list(PRESETS))
def test_lm_training_batches_use_the_backbones_chat_template(preset):
    """The LM objective's inputs are the classifier's prompt (the backbone's template: Qwen3.5's answer
    follows its empty thinking block) with the answer after it, and the loss is on the answer only."""
    from deepvrm.trainers.collator import IGNORE_INDEX, DeepVRMCollator

    config = preset_config(preset)
    processor = build_processor(config)
    batch = DeepVRMCollator(processor, objective="lm")([{"image": random_image(128, 128), "label": 1}])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    n_image = ids.count(config.image_token_id)
    prompt = list(config.prompt_prefix_ids) + [config.image_token_id] * n_image + list(config.prompt_suffix_ids)
    start = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    assert ids[:start] == prompt and labels[start] == config.answer_token_ids[1]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_from_base_model_of_a_folder_takes_the_prompt_ids_from_its_tokenizer(preset, tmp_path):
    from _reference_backbones import stock_config_from

    torch.manual_seed(0)
    plain = deepvrm_class(PRESETS[preset], "stock")(stock_config_from(preset_config(preset))).eval()
    plain.save_pretrained(tmp_path / "plain")
    build_processor(preset_config(preset)).tokenizer.save_pretrained(tmp_path / "plain")
    model = DeepVRMForImageClassification.from_base_model(str(tmp_path / "plain"))
    assert type(model) is deepvrm_class(PRESETS[preset], "classification")
    assert model.config.injection_layer == 2 and model.config.system_prompt is None
    for name in ("prompt_prefix_ids", "prompt_suffix_ids", "answer_token_ids"):
        assert getattr(model.config, name) == getattr(preset_config(preset), name), name
    assert torch.equal(model.model.visual_low_level.merger.linear_fc1.weight, plain.model.visual.merger.linear_fc1.weight)


def test_stage1_then_stage2_then_adapter_only(folder, tmp_path):
    """Both training stages on the backbone: stage 1 trains (and saves) the stock model of the backbone,
    stage 2 builds its Deep-VRM from it; an adapter-only run rebuilds (deepvrm's loader and its card's
    PEFT code) to the merged run's model."""
    import re

    from deepvrm.trainers.cli import main as train_main
    from deepvrm.trainers.models import load_adapter_folder

    preset, path = folder
    backbone = PRESETS[preset]
    data = synthetic.write_dataset(tmp_path / "data", per_class=4, size=128)
    fast = ["--per-device-train-batch-size", "4", "--global-batch-size", "0", "--dataloader-num-workers", "0",
            "--disable-tqdm", "true", "--report-to", "none", "--max-steps", "2", "--save-strategy", "no",
            "--lora-r", "4", "--lora-alpha", "8", "--train-data", str(data)]  # fmt: skip
    stage1 = tmp_path / "stage1"
    assert train_main(["--stage", "1", "--model", str(path), "--output-dir", str(stage1), *fast]) == 0
    assert json.loads((stage1 / "config.json").read_text())["model_type"] == backbone  # the stock base
    stage2 = tmp_path / "stage2"
    assert train_main(["--stage", "2", "--model", str(stage1), "--output-dir", str(stage2), *fast]) == 0
    assert json.loads((stage2 / "config.json").read_text())["model_type"] == f"deepvrm_{backbone}"
    merged = AutoModelForImageClassification.from_pretrained(stage2).eval()
    adapter = tmp_path / "adapter"
    assert train_main(["--stage", "2", "--model", str(stage1), "--output-dir", str(adapter), "--save-adapter-only", *fast]) == 0
    rebuilt = [load_adapter_folder(str(adapter))]
    for code in re.findall(r"```python\n(.*?)```", (adapter / "README.md").read_text(), re.S):
        namespace = {}
        exec(code, namespace)
        rebuilt.append(namespace["model"])
    assert len(rebuilt) == 3
    state = merged.state_dict()
    for model in rebuilt:
        assert model.config.backbone == backbone
        for key, value in model.state_dict().items():
            if key in state:
                torch.testing.assert_close(value, state[key], rtol=0, atol=1e-6)
