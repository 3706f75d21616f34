"""Loading an exported folder in a Python process where `import deepvrm` fails, as a Hub user would.

The package is installed editable in development, so isolation flags alone do not hide it: the child
process puts a `sys.meta_path` finder first that makes every `deepvrm` import raise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BLOCK_DEEPVRM = r"""
import importlib.abc, sys

class _BlockDeepVRM(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "deepvrm":
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: the export must not need it)", name=name)
        return None

sys.meta_path.insert(0, _BlockDeepVRM())
"""

# Imports every class the folder's auto_map names (and the model class an adapter's card uses), then
# loads the config and the processor through the Auto classes. The weights are not needed for that.
_LOAD_CODE = r"""
import json, os
from transformers import AutoConfig, AutoProcessor
from transformers.dynamic_module_utils import get_class_from_dynamic_module

folder = sys.argv[1]
refs = {"modeling_deepvrm.DeepVRMForConditionalGeneration"}
for name in ("config.json", "processor_config.json"):
    if os.path.exists(os.path.join(folder, name)):
        data = json.load(open(os.path.join(folder, name)))
        refs |= set((data.get("auto_map") or {}).values()) | set(((data.get("image_processor") or {}).get("auto_map") or {}).values())
loaded = sorted(get_class_from_dynamic_module(ref, folder).__name__ for ref in refs)
if os.path.exists(os.path.join(folder, "config.json")):
    loaded.append(type(AutoConfig.from_pretrained(folder, trust_remote_code=True)).__name__)
if os.path.exists(os.path.join(folder, "processor_config.json")):
    loaded.append(type(AutoProcessor.from_pretrained(folder, trust_remote_code=True)).__name__)
assert not [m for m in sys.modules if m.split(".")[0] == "deepvrm"], "deepvrm was imported"
print(json.dumps(loaded))
"""


class CleanProcessError(RuntimeError):
    """The exported folder does not load without the deepvrm package."""


def run_without_deepvrm(code: str, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh `python -I` (cwd: an empty temporary folder, offline, its own
    HF_MODULES_CACHE) in which importing deepvrm raises ModuleNotFoundError."""
    with tempfile.TemporaryDirectory(prefix="deepvrm-clean-") as scratch:
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        child_env.update(HF_MODULES_CACHE=os.path.join(scratch, "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
        child_env.update(env or {})
        return subprocess.run([sys.executable, "-I", "-c", BLOCK_DEEPVRM + code, *args], cwd=scratch, env=child_env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip


def check_in_clean_process(folder: str | os.PathLike, timeout: float = 600) -> list[str]:
    """Import the code of an exported `folder` and load its config and processor without deepvrm.

    Returns the names of the classes loaded; raises `CleanProcessError` with the child's error otherwise."""
    folder = Path(folder).resolve()
    try:
        result = run_without_deepvrm(_LOAD_CODE, str(folder), timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise CleanProcessError(f"Loading {folder} in a clean Python process took over {timeout:.0f} s.") from error
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise CleanProcessError(f"The export in {folder} does not load without the deepvrm package:\n{tail}")
    return json.loads(result.stdout.strip().splitlines()[-1])
