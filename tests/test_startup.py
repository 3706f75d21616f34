"""The `deepvrm` command answers --help and argument errors without importing torch (issue: 10-14 s
for `deepvrm --help`), while `import deepvrm` anywhere else still registers the Auto classes at once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import deepvrm
from deepvrm.cli import COMMANDS

# Runs the command as its console script does (a script named `deepvrm`), then says which heavy
# modules the run imported and what it returned.
LAUNCHER = """\
import json, sys
from deepvrm.cli import main
try:
    code = main()
except SystemExit as exit:
    code = exit.code
heavy = sorted(name for name in ("torch", "transformers.modeling_utils", "numpy.linalg", "PIL.Image") if name in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _run_command(tmp_path, *args: str) -> tuple[dict, str]:
    script = tmp_path / "deepvrm"
    script.write_text(LAUNCHER)
    run = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    return json.loads(run.stderr.strip().splitlines()[-1]), run.stdout + run.stderr


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_of_every_command_imports_no_torch(tmp_path, command):
    result, output = _run_command(tmp_path, *([command] if command else []), "--help")
    assert result["code"] in (0, None), output
    assert "torch" not in result["heavy"], f"`deepvrm {command} --help` imported {result['heavy']}"
    assert "usage:" in output


@pytest.mark.parametrize("args, message", [
    (["detect", "--dtype", "float8"], "invalid choice: 'float8'"),
    (["evaluate", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["detect", "photos", "--compile-mode", "fast"], "invalid choice: 'fast'"),
    (["init", "--preset", "nope", "--output", "x"], "invalid choice: 'nope'"),
    (["convert", "src", "dst", "--fusion", "sum"], "invalid choice: 'sum'"),
    (["train", "--stage", "3"], "invalid choice: 3"),
    (["probe", "--model", "m"], "the following arguments are required: --data"),
])  # fmt: skip
def test_argument_errors_answer_without_torch(tmp_path, args, message):
    result, output = _run_command(tmp_path, *args)
    assert result["code"] == 2, output
    assert message in output
    assert "torch" not in result["heavy"], f"`deepvrm {' '.join(args)}` imported {result['heavy']}"


@pytest.mark.slow  # a fresh Python importing torch and transformers
def test_classes_used_in_the_command_are_registered_with_the_auto_classes(tmp_path):
    # In the command the package's classes load on first use; reaching for one registers them all.
    script = tmp_path / "deepvrm"
    script.write_text(
        "import sys, deepvrm\n"
        "assert 'torch' not in sys.modules, 'import deepvrm in the command imported torch'\n"
        "from deepvrm import DeepVRMQwen3VLForImageClassification\n"
        "from transformers import AutoConfig, AutoModelForImageClassification\n"
        "config = AutoConfig.for_model('deepvrm_qwen3_vl')\n"
        "print(AutoModelForImageClassification._model_mapping[type(config)].__name__)\n"
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "DeepVRMQwen3VLForImageClassification"


@pytest.mark.slow  # a fresh Python importing torch and transformers
def test_import_deepvrm_outside_the_command_registers_at_once():
    code = (
        "import deepvrm\n"
        "from transformers import AutoConfig, AutoModel, AutoProcessor\n"
        "config = AutoConfig.for_model('deepvrm')\n"
        "print(type(config).__name__, AutoModel._model_mapping[type(config)].__name__, 'DeepVRMConfig' in vars(deepvrm))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["DeepVRMConfig", "DeepVRMModel", "True"]


@pytest.mark.parametrize("argv, command", [
    (["/venv/bin/python", "/venv/bin/deepvrm", "detect"], True),
    (["python", "-m", "deepvrm.cli", "evaluate"], True),
    (["python", "-X", "importtime", "-m", "deepvrm.cli"], True),
    (["python", "-u", "/venv/bin/deepvrm"], True),
    (["python", "train.py", "deepvrm"], False),
    (["python", "-c", "import deepvrm", "deepvrm"], False),
    (["python", "-m", "pytest", "deepvrm"], False),
    (["python"], False),
    (["python", "-X", "deepvrm"], False),
])  # fmt: skip
def test_which_processes_count_as_the_command(monkeypatch, argv, command):
    monkeypatch.setattr(sys, "orig_argv", argv)
    assert deepvrm._started_as_command() is command
