"""Self-contained remote code for `trust_remote_code=True`, generated from the package's own modules.

People who download a Deep-VRM from the Hub usually do not have `deepvrm` installed, so the exported
folder carries three files that import only torch, transformers (with its own dependency
huggingface_hub, which transformers' configs use for `@strict`) and the standard library:

    configuration_deepvrm.py   <- configuration/configuration_deepvrm.py + configuration/presets.py
    processing_deepvrm.py      <- tokenization.py + processing.py
    modeling_deepvrm.py        <- injection.py + loading.py + modeling.py (+ the weight-renaming registration)

Nothing is maintained twice: at export time each source module is parsed with `ast`, and

- its imports from inside the package (`from .x import a`, `from deepvrm.x import a`, at any depth)
  are removed when `a` is defined in the same remote file, or rewritten to import `a` from the remote
  file that defines it (`from .configuration_deepvrm import a`);
- its other top-level imports are hoisted (deduplicated) above the concatenated bodies;
- the few definitions that only make sense inside the package (the tiny presets' offline tokenizer;
  `PACKAGE_ONLY`) are left out, and a lazy import of one of them becomes `raise ImportError(...)`;
- comments and formatting of everything else are kept, because the edits work on source lines.

The result is then checked (`check_remote_files`): it compiles, every import it makes is torch,
transformers, huggingface_hub, the standard library or one of the three files, and the regex with
which transformers discovers relative imports finds only those files. A core change that breaks
these rules makes the export fail with the file and line, instead of shipping code that cannot load.
`check_in_clean_process` also imports the files in a Python process where `import deepvrm` fails.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

# remote file (module name, without .py) -> package modules it is made of, in dependency order
REMOTE_LAYOUT: dict[str, list[str]] = {
    "configuration_deepvrm": ["deepvrm.configuration.configuration_deepvrm", "deepvrm.configuration.presets"],
    "processing_deepvrm": ["deepvrm.tokenization", "deepvrm.processing"],
    "modeling_deepvrm": ["deepvrm.injection", "deepvrm.loading", "deepvrm.modeling"],
}
ROLES = {
    "configuration_deepvrm": "the configuration class and the model-shape presets",
    "processing_deepvrm": "the image processor and the processor (prompt building, chat template)",
    "modeling_deepvrm": "the model classes and the residual injection",
}
# Definitions left out of the remote code: the offline tokenizer of the tiny test presets (it trains a
# BPE with the `tokenizers` library), and the package's push hook. "Class.method" names a method; names no longer in the source are
# ignored. A lazy import of one of them inside a shipped function becomes `raise ImportError(...)`
# (e.g. `preset_config_dict("tiny")` says that it needs the package; the real-model presets work).
PACKAGE_ONLY: dict[str, set[str]] = {
    "deepvrm.tokenization": {"TINY_VOCAB_SIZE", "_tiny_corpus", "_tiny_tokenizer_json", "build_tiny_tokenizer", "tiny_token_ids"},
    # A `push_to_hub` that routes through deepvrm.hub_upload (proposed for the core): remote classes keep
    # transformers' own, which copies these very files (the loader registered them for auto classes).
    "deepvrm.modeling": {"DeepVRMPreTrainedModel.push_to_hub"},
}
# Module-level code appended to a remote file (what `deepvrm.register()` does that remote code needs):
# official-layout checkpoints (`visual.*`, `model.layers.*`) must load through the remote classes too.
FOOTERS: dict[str, str] = {
    "modeling_deepvrm": (
        "# Official-layout checkpoints name weights `visual.*`, `model.layers.*`, ...: teach transformers'\n"
        "# loader those names for these classes (what `import deepvrm` does for the installed package).\n"
        "register_weight_renaming()\n"
    ),
}
# What the generated files may import besides each other.
ALLOWED_THIRD_PARTY = frozenset({"torch", "transformers", "huggingface_hub"})
AUTO_MAP_MODEL = {
    "AutoConfig": "configuration_deepvrm.DeepVRMConfig",
    "AutoModel": "modeling_deepvrm.DeepVRMModel",
    "AutoModelForImageClassification": "modeling_deepvrm.DeepVRMForImageClassification",
    "AutoModelForImageTextToText": "modeling_deepvrm.DeepVRMForConditionalGeneration",
    "AutoImageProcessor": "processing_deepvrm.DeepVRMImageProcessor",
    "AutoProcessor": "processing_deepvrm.DeepVRMProcessor",
}


class RemoteCodeError(RuntimeError):
    """The package's source cannot be turned into self-contained remote code (says where and why)."""


@dataclass
class _Module:
    name: str  # e.g. "deepvrm.loading"
    path: Path
    text: str
    tree: ast.Module
    lines: list[str]
    docstring: str | None = None
    all_names: list[str] = field(default_factory=list)
    defined: dict[str, str] = field(default_factory=dict)  # top-level name -> its source text
    dropped: list[ast.AST] = field(default_factory=list)  # PACKAGE_ONLY definitions
    left_out: list[str] = field(default_factory=list)

    @property
    def package(self) -> str:
        # what relative imports resolve against: the module's package, or the package itself for an __init__
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    @property
    def display(self) -> str:
        try:
            return str(self.path.relative_to(self.path.parents[1]))
        except ValueError:
            return str(self.path)


def _load_module_source(name: str) -> _Module:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RemoteCodeError(f"Cannot find the source of {name}.")
    path = Path(spec.origin)
    text = path.read_text(encoding="utf-8")
    return _Module(name=name, path=path, text=text, tree=ast.parse(text, filename=str(path)), lines=text.splitlines(keepends=True))


def _is_package_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "deepvrm"
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "deepvrm" for alias in node.names)
    return False


def _start_line(node: ast.AST) -> int:
    decorators = getattr(node, "decorator_list", None) or []
    return min([node.lineno] + [d.lineno for d in decorators])


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


class _Editor:
    """Line-range replacements on one module's source (1-based inclusive ranges, non-overlapping)."""

    def __init__(self, module: _Module):
        self.module = module
        self.edits: list[tuple[int, int, str]] = []

    def replace(self, node: ast.AST, replacement: str = "", start: int | None = None, extend_to: int | None = None) -> None:
        start = start if start is not None else _start_line(node)
        end = node.end_lineno
        lines = self.module.lines
        before = lines[start - 1][: node.col_offset] if start == node.lineno else lines[start - 1][: len(lines[start - 1]) - len(lines[start - 1].lstrip())]
        after = lines[end - 1][node.end_col_offset :]
        if before.strip() or (after.strip() and not after.strip().startswith("#")):
            raise RemoteCodeError(
                f"{self.module.display}:{node.lineno}: this statement shares its line with other code; "
                "put it on lines of its own so the remote code can be generated."
            )
        self.edits.append((start, extend_to or end, replacement))

    def apply(self) -> str:
        lines = list(self.module.lines)
        last_start = None
        for start, end, replacement in sorted(self.edits, reverse=True):
            if last_start is not None and end >= last_start:
                raise RemoteCodeError(f"{self.module.display}:{start}: overlapping edits (generator bug).")
            lines[start - 1 : end] = [replacement] if replacement else []
            last_start = start
        return "".join(lines)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    return parents


def _body_of(parent: ast.AST, node: ast.AST) -> list[ast.stmt]:
    for name in ("body", "orelse", "finalbody", "handlers"):
        body = getattr(parent, name, None)
        if isinstance(body, list) and node in body:
            return body
    return []


@dataclass
class RemoteCode:
    """The generated files (`{"modeling_deepvrm.py": source, ...}`) and where they came from."""

    files: dict[str, str]
    sources: dict[str, list[str]]
    left_out: dict[str, list[str]]
    source_hash: str  # of all the sources together

    def write(self, folder: str | os.PathLike) -> list[Path]:
        folder = Path(folder)
        written = []
        for name, text in self.files.items():
            path = folder / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
        return written


PACKAGE_ONLY_MODULES = (
    "deepvrm.hub_upload", "deepvrm.trainers", "deepvrm.cli", "deepvrm.registration", "deepvrm.init_model",
    "deepvrm.detect", "deepvrm.evaluate", "deepvrm.convert", "deepvrm.analysis",
)


def _is_package_only_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in PACKAGE_ONLY_MODULES)


def _resolve(module: _Module, node: ast.ImportFrom) -> str | None:
    try:
        return importlib.util.resolve_name("." * node.level + (node.module or ""), module.package)
    except (ImportError, ValueError):
        return None


def _index_definitions(module: _Module) -> None:
    """Fill `module.defined` (top-level names) and `module.dropped` (its PACKAGE_ONLY definitions)."""
    wanted = PACKAGE_ONLY.get(module.name, set())
    for node in module.tree.body:
        names = _defined_names(node)
        if any(n in wanted for n in names):
            if len(names) > 1:
                raise RemoteCodeError(f"{module.display}:{node.lineno}: cannot leave out part of a multi-target assignment.")
            module.dropped.append(node)
            module.left_out.append(names[0])
            continue
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and f"{node.name}.{item.name}" in wanted:
                    module.dropped.append(item)
                    module.left_out.append(f"{node.name}.{item.name}")
        for n in names:
            module.defined[n] = ast.get_source_segment(module.text, node) or ""


def _inside_dropped(module: _Module, node: ast.AST) -> bool:
    return any(_start_line(d) <= node.lineno and node.end_lineno <= d.end_lineno for d in module.dropped)


def _digest(modules) -> str:
    """Short sha256 of the source texts (a file's header names the hash of its own sources only)."""
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.name):
        digest.update(module.name.encode() + b"\0" + module.text.encode() + b"\0")
    return digest.hexdigest()[:16]


def generate_remote_code() -> RemoteCode:
    """Build the remote-code files from the installed package's source modules (see the module doc)."""
    from deepvrm import __version__

    loaded: dict[str, _Module] = {}

    def load(name: str) -> _Module:
        if name not in loaded:
            module = loaded[name] = _load_module_source(name)
            _index_definitions(module)
        return loaded[name]

    # 1. Which modules each remote file is made of: the seeds of REMOTE_LAYOUT, plus every package
    #    module a shipped module imports from (found through package re-exports), placed in the file of
    #    the first module that needs it; the package-only modules are never shipped.
    file_of: dict[str, str] = {}
    queue: list[str] = []
    for remote, names in REMOTE_LAYOUT.items():
        for name in names:
            load(name)
            file_of[name] = remote
            queue.append(name)

    def defining_module(target: str | None, imported: str, seen: frozenset = frozenset()) -> str | None:
        """The package module whose top level defines `imported`, following re-exports; for a submodule
        imported as a module (`from . import shared_tower`), that submodule (see `namespaces`); None when
        it is package-only or unknown."""
        if target is None or target in seen or _is_package_only_module(target):
            return None
        try:
            module = load(target)
        except (RemoteCodeError, ModuleNotFoundError, ValueError):
            return None
        if imported in module.defined:
            return target
        for node in module.tree.body:
            if isinstance(node, ast.ImportFrom) and _is_package_import(node) and any(a.name == imported for a in node.names):
                return defining_module(_resolve(module, node), imported, seen | {target})
        submodule = f"{target}.{imported}"
        if module.path.name == "__init__.py" and not _is_package_only_module(submodule):
            try:
                found = importlib.util.find_spec(submodule) is not None
            except (ImportError, ValueError):
                found = False
            if found:
                load(submodule)
                namespaces.add(submodule)
                return submodule
        return None

    # Submodules imported as modules: their file gets `name = types.SimpleNamespace(<their names>)`.
    namespaces: set[str] = set()

    index = 0
    while index < len(queue):
        module = loaded[queue[index]]
        index += 1
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.ImportFrom) or not _is_package_import(node) or _inside_dropped(module, node):
                continue
            for alias in node.names:
                found = defining_module(_resolve(module, node), alias.name)
                if found is not None and found not in file_of:
                    file_of[found] = file_of[module.name]
                    queue.append(found)
    modules = {name: loaded[name] for name in queue}
    left_out = {m.display: m.left_out for m in modules.values() if m.left_out}
    package_only_names = {n for m in modules.values() for n in m.left_out if "." not in n}

    # Which remote file defines a name imported from inside the package (None: a left-out name).
    def owner(module: _Module, node: ast.ImportFrom | ast.Import, imported: str) -> str | None:
        target = _resolve(module, node) if isinstance(node, ast.ImportFrom) else None
        found = defining_module(target, imported)
        if found is not None:
            return file_of[found]
        if imported in package_only_names or (target is not None and _is_package_only_module(target)):
            return None
        raise RemoteCodeError(
            f"{module.display}:{node.lineno}: cannot find where `{imported}` (imported from {target}) is defined, "
            "so it cannot be put into the remote code."
        )

    # Inside each file, a module comes after the modules it imports from at top level.
    ordered: dict[str, list[str]] = {remote: [] for remote in REMOTE_LAYOUT}
    for remote in REMOTE_LAYOUT:
        members = [name for name in queue if file_of[name] == remote]
        needs = {name: set() for name in members}
        for name in members:
            module = modules[name]
            for node in module.tree.body:
                if isinstance(node, ast.ImportFrom) and _is_package_import(node):
                    for alias in node.names:
                        found = defining_module(_resolve(module, node), alias.name)
                        if found in needs and found != name:
                            needs[name].add(found)
        while members:
            ready = [name for name in members if not (needs[name] - set(ordered[remote]))]
            if not ready:
                raise RemoteCodeError(f"Circular top-level imports between {members} (they cannot be concatenated).")
            ordered[remote].append(ready[0])
            members.remove(ready[0])

    for name in namespaces:
        if name.rpartition(".")[2] in {n for m in modules.values() for n in m.defined}:
            raise RemoteCodeError(f"{name} is imported as a module, and its name is also defined elsewhere in the package.")

    # 2. Edit each module: drop definitions, docstring, __all__, imports; rewrite nested package imports.
    hoisted: dict[str, list[str]] = {remote: [] for remote in REMOTE_LAYOUT}
    cross: dict[str, dict[str, list[str]]] = {remote: {} for remote in REMOTE_LAYOUT}
    bodies: dict[str, list[tuple[_Module, str]]] = {remote: [] for remote in REMOTE_LAYOUT}
    for name in [n for remote in REMOTE_LAYOUT for n in ordered[remote]]:
        module = modules[name]
        remote = file_of[name]
        editor = _Editor(module)
        for node in module.dropped:
            editor.replace(node)
        body = module.tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            module.docstring = body[0].value.value
            editor.replace(body[0])
        parents = _parents(module.tree)
        for node in body:
            if isinstance(node, ast.Assign) and _defined_names(node) == ["__all__"]:
                module.all_names = list(ast.literal_eval(node.value))
                editor.replace(node)
            elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
                editor.replace(node)
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and not _is_package_import(node):
                segment = "".join(module.lines[node.lineno - 1 : node.end_lineno]).strip() + "\n"
                if segment not in hoisted[remote]:
                    hoisted[remote].append(segment)
                editor.replace(node)
        for node in ast.walk(module.tree):
            if not _is_package_import(node) or _inside_dropped(module, node):
                continue
            if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)):
                raise RemoteCodeError(
                    f"{module.display}:{node.lineno}: use `from .module import name` for imports inside the package "
                    "(plain `import deepvrm...` and `*` imports cannot be turned into remote code)."
                )
            needs: dict[str, list[str]] = {}
            missing: list[str] = []
            for alias in node.names:
                if alias.asname and alias.asname != alias.name:
                    raise RemoteCodeError(
                        f"{module.display}:{node.lineno}: `import {alias.name} as {alias.asname}` from inside the package "
                        "cannot be turned into remote code; import it under its own name."
                    )
                source_file = owner(module, node, alias.name)
                if source_file is None:
                    missing.append(alias.name)
                elif source_file != remote:
                    needs.setdefault(source_file, []).append(alias.name)
            parent = parents.get(node)
            if missing and parent is module.tree:
                raise RemoteCodeError(
                    f"{module.display}:{node.lineno}: imports {missing}, which PACKAGE_ONLY leaves out of the remote code."
                )
            if missing:
                indent = module.lines[node.lineno - 1][: node.col_offset]
                message = f"This needs the deepvrm package: {', '.join(missing)} is not part of the Hub remote code."
                editor.replace(node, f"{indent}raise ImportError({message!r})\n")
                continue
            if parent is module.tree:
                for source_file, names in needs.items():
                    bucket = cross[remote].setdefault(source_file, [])
                    bucket.extend(n for n in names if n not in bucket)
                editor.replace(node)
                continue
            indent = module.lines[node.lineno - 1][: node.col_offset]
            statements = [f"{indent}from .{source_file} import {', '.join(names)}\n" for source_file, names in needs.items()]
            if not statements and len(_body_of(parent, node)) == 1:
                statements = [f"{indent}pass\n"]
            end = node.end_lineno
            if not statements and end < len(module.lines) and not module.lines[end].strip():
                statements = []  # also drop the blank line that separated the import from the code
                editor.replace(node, "", extend_to=end + 1)
            else:
                editor.replace(node, "".join(statements))
        bodies[remote].append((module, editor.apply()))

    # 3. Assemble the files.
    source_hash = _digest(modules.values())
    files: dict[str, str] = {}
    for remote, parts in bodies.items():
        source_list = ", ".join(module.display for module, _ in parts)
        header = (
            f'"""Deep-VRM remote code: {ROLES[remote]}.\n\n'
            f"Generated by deepvrm {__version__} (deepvrm.hub_upload) from {source_list}\n"
            f"(source sha256 {_digest(m for m, _ in parts)}). It imports only torch, transformers (and huggingface_hub, which\n"
            "transformers itself uses for configs) and the Python standard library, so that\n"
            "`trust_remote_code=True` works without the deepvrm package. Do not edit: re-export instead.\n"
            '"""\n\n'
            "from __future__ import annotations\n\n"
        )
        stdlib = set(sys.stdlib_module_names)

        def is_stdlib(statement: str) -> bool:
            return statement.split()[1].split(".")[0] in stdlib

        if any(module.name in namespaces for module, _ in parts) and "import types\n" not in hoisted[remote]:
            hoisted[remote].append("import types\n")
        ordered = sorted(hoisted[remote], key=lambda statement: not is_stdlib(statement))
        first_party = next((i for i, st in enumerate(ordered) if not is_stdlib(st)), len(ordered))
        text = header + "".join(ordered[:first_party]) + ("\n" if 0 < first_party < len(ordered) else "") + "".join(ordered[first_party:])
        for source_file, names in cross[remote].items():
            text += f"from .{source_file} import {', '.join(names)}\n"
        for module, body in parts:
            rule = "# " + "=" * 98 + "\n"
            text += f"\n\n{rule}# {module.display}\n{rule}"
            if module.docstring:
                doc = textwrap.dedent(module.docstring).strip("\n")
                text += "".join(f"# {line}".rstrip() + "\n" for line in doc.splitlines())
            text += "\n" + body.strip("\n") + "\n"
            if module.name in namespaces:
                short = module.name.rpartition(".")[2]
                names = "".join(f"    {n}={n},\n" for n in module.defined)
                text += (
                    f"\n\n# The package imports this module as a module (`from . import {short}`): the same names, as attributes.\n"
                    f"{short} = types.SimpleNamespace(\n{names})\n"
                )
        if remote in FOOTERS:
            text += "\n\n" + FOOTERS[remote]
        public = [n for module, _ in parts for n in module.all_names]
        if public:
            text += "\n\n__all__ = " + json.dumps(public) + "\n"
        text = re.sub(r"\n{4,}", "\n\n\n", text)
        files[f"{remote}.py"] = text
    remote_code = RemoteCode(
        files=files,
        sources={f"{remote}.py": [m.display for m, _ in parts] for remote, parts in bodies.items()},
        left_out=left_out,
        source_hash=source_hash,
    )
    check_remote_files(remote_code.files)
    return remote_code


_RELATIVE_IMPORT_RE = [
    re.compile(r"^\s*import\s+\.(\S+)\s*$", flags=re.MULTILINE),
    re.compile(r"^\s*from\s+\.(\S+)\s+import", flags=re.MULTILINE),
]


def check_remote_files(files: dict[str, str]) -> None:
    """Raise `RemoteCodeError` unless the files compile and import only what the remote side has."""
    shipped = {name[: -len(".py")] for name in files}
    stdlib = set(sys.stdlib_module_names)
    problems = []
    for name, text in files.items():
        try:
            tree = ast.parse(text, filename=name)
            compile(tree, name, "exec")
        except SyntaxError as error:
            raise RemoteCodeError(f"Generated {name} does not compile: {error}") from error
        defined = set()
        for node in tree.body:
            for n in _defined_names(node):
                if n in defined and n not in ("logger",):
                    problems.append(f"{name}:{node.lineno}: `{n}` is defined twice (two source modules define it)")
                defined.add(n)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    if node.level != 1 or node.module not in shipped:
                        problems.append(f"{name}:{node.lineno}: relative import of {node.module!r}, which is not shipped")
                    continue
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                if root == "__future__" or root in stdlib or root in ALLOWED_THIRD_PARTY:
                    continue
                problems.append(f"{name}:{node.lineno}: imports {root!r} (remote code may import only {sorted(ALLOWED_THIRD_PARTY)} and the standard library)")
        # transformers finds the files to download with these regexes (docstrings included).
        for pattern in _RELATIVE_IMPORT_RE:
            for found in pattern.findall(text):
                if found not in shipped:
                    problems.append(f"{name}: transformers would look for a relative module {found!r} that is not shipped")
    if problems:
        raise RemoteCodeError("The generated remote code is not self-contained:\n  " + "\n  ".join(problems))


# Run in a fresh interpreter where `import deepvrm` fails: import each remote file through transformers'
# own dynamic-module loader, and load the config and processor when the folder has them.
_CLEAN_CHECK = r"""
import importlib.abc, json, os, sys

class _BlockDeepVRM(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "deepvrm" or name.startswith("deepvrm."):
            raise ModuleNotFoundError("deepvrm is blocked: remote code must not need it", name=name)
        return None

sys.meta_path.insert(0, _BlockDeepVRM())
folder = sys.argv[1]
from transformers.dynamic_module_utils import get_class_from_dynamic_module
loaded = []
for ref in json.loads(sys.argv[2]):
    loaded.append(get_class_from_dynamic_module(ref, folder).__name__)
if os.path.exists(os.path.join(folder, "config.json")):
    from transformers import AutoConfig
    loaded.append(type(AutoConfig.from_pretrained(folder, trust_remote_code=True)).__name__)
if os.path.exists(os.path.join(folder, "processor_config.json")) and os.path.exists(os.path.join(folder, "tokenizer_config.json")):
    from transformers import AutoProcessor
    loaded.append(type(AutoProcessor.from_pretrained(folder, trust_remote_code=True)).__name__)
assert not any(m == "deepvrm" or m.startswith("deepvrm.") for m in sys.modules), "deepvrm was imported"
print(json.dumps(loaded))
"""


def check_in_clean_process(folder: str | os.PathLike, timeout: float = 300) -> list[str]:
    """Import the remote code of `folder` in a new Python process in which `deepvrm` cannot be imported.

    Returns the names of the classes it loaded; raises `RemoteCodeError` with the child's error otherwise.
    """
    folder = Path(folder).resolve()
    refs = sorted(set(AUTO_MAP_MODEL.values()))
    with tempfile.TemporaryDirectory(prefix="deepvrm-remote-check-") as scratch:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        env.update({"HF_MODULES_CACHE": os.path.join(scratch, "modules"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"})
        try:
            result = subprocess.run(
                [sys.executable, "-c", _CLEAN_CHECK, str(folder), json.dumps(refs)],
                cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:
            raise RemoteCodeError(f"Loading the remote code of {folder} in a clean process took over {timeout:.0f}s.") from error
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise RemoteCodeError(f"The remote code of {folder} does not load without deepvrm:\n{tail}")
    return json.loads(result.stdout.strip().splitlines()[-1])
