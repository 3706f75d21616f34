"""Reading training and evaluation data: the official JSON/JSONL format, CSV lists, image folders.

    read_samples(path, image_root=None) -> list[Sample]

accepts

- the official format, as the official repository ships it (`DATA/Train/Prompts/`): a JSON list
  (whatever the extension: the official `GenImageTrain.jsonl` holds one array) or JSONL, one
  object a line::

      {"messages": [{"role": "user", "content": "Is this image real or fake? ... <image>"},
                    {"role": "assistant", "content": "fake"}],
       "images": ["DATA/Train/images/sd14/fake/001.png"],    # a list, or one path as a string
       "channel": "fake"}                                      # optional: real, fake_single, ...

  Evaluation files have no assistant turn; a `label` field (0/1 or a label word) may stand in for
  it. ShareGPT spellings (`conversations` with `from`/`value`, roles `human`/`gpt`) and a single
  `image` key are read too.
- a CSV list: `filename,label` rows, with or without a header (columns named `filename`/`file`/
  `path`/`image` and `label`/`class`/`target`; without a label column the samples are unlabelled).
- image folders: `DIR/real/*` and `DIR/fake/*` (also `0_real`/`1_fake`, `nature`/`ai`, `REAL`/`FAKE`,
  `human`/`artificial`, ...), at any depth: `DIR/<generator>/{real,fake}` gives samples whose
  `subset` is `<generator>` (the folder path between `DIR` and the label folder, e.g. `sdv4/val`
  for GenImage's `sdv4/val/{ai,nature}`). A folder without label folders gives unlabelled samples
  (for detection); a folder beside label folders whose name is no label name (`DIR/real`,
  `DIR/sdxl`) is an error naming it, not a silent skip. Folders are searched by
  `deepvrm.inference.files.walk_images`, as `deepvrm detect` searches them: hidden entries and OS
  junk (`._photo.jpg`, `Thumbs.db`) are skipped, extensions match in any case (`.JPEG`).

Image paths of JSON and CSV files: absolute, or relative to the file's folder, else to the working
directory (the official files' paths are relative to the repository root, where the official
scripts run), else to `image_root` (`--image-root DIR`). Records whose image is in none of these
stop the reading with one line per record, naming it and the places tried.

The label comes from, in this order: the `label` field; the `channel` field when its words name a
class (`real`, `fake`, `real_single`, `fake_single`, ...; other channel names, ms-swift's loss
channels, are not labels and are ignored); the assistant's answer: `real`/`fake`, `natural`/
`natural image`/`AI-generated`, `yes`/`no` (what "yes" means is read from the question: "Is this
a real image?" -> yes = real; "Is this a AI-generated image?", "are there clear signs of AI
generation?" -> yes = fake; "Is this image real or fake?" says neither, so no label), or a
free-text analysis that states a verdict ("..., so it is fake."). An answer with no clear verdict
leaves `label=None`: the sample still trains (the loss is on its text) but is not counted in
metrics. A short answer that contradicts the record's `label` or `channel` is an error.

Malformed input raises `ValueError` naming the file (and the line or record) and the reason.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from deepvrm.inference.files import image_files, is_image_name, walk_images  # the folder walker of every command

# The names of the two classes, wherever data says them: folder names, `label` fields, CSV labels,
# `ClassLabel` names (compared lower-case, with "-" and " " read as "_": "REAL", "AI-generated",
# "natural image"). Hub detectors often say human/artificial; some datasets 0/1 folders.
REAL_NAMES = frozenset(
    {"real", "reals", "0_real", "nature", "natural", "natural_image", "real_image", "authentic", "genuine", "human", "0"}
)
FAKE_NAMES = frozenset(
    {"fake", "fakes", "1_fake", "ai", "ai_generated", "ai_generated_image", "aigc", "generated", "synthetic",
     "artificial", "deepfake", "1"}
)  # fmt: skip
REAL_FOLDERS, FAKE_FOLDERS = REAL_NAMES, FAKE_NAMES  # "0"/"1" count as folders only side by side

# Words of a `channel` value that name a class ("real_single", "fake_pair", ...).
_REAL_CHANNEL_WORDS = frozenset({"real", "natural", "nature", "authentic", "genuine", "human"})
_FAKE_CHANNEL_WORDS = frozenset({"fake", "ai", "aigc", "generated", "synthetic", "artificial", "deepfake"})

# Words of a free-text answer and what they mean (0 real, 1 fake).
_REAL_WORDS = ("real", "natural", "authentic", "genuine", "photograph")
_FAKE_WORDS = ("fake", "ai-generated", "ai generated", "generated", "synthetic", "artificial", "synthesized")
# What a yes/no question asks about: being fake, or being real.
_FAKE_CUES = re.compile(r"\b(?:ai|generated|generation|fake|synthetic|synthesized|artificial|manipulated|forged|tampered|deepfake)\b")
_REAL_CUES = re.compile(r"\b(?:real|natural|authentic|genuine)\b")
_NEGATION = re.compile(r"\b(?:not|no|never|without|none)\b|n't\b")
_YES_NO_OPTIONS = re.compile(r"""['"`]?\byes\b['"`]?\s*(?:or|/|,)\s*['"`]?\bno\b['"`]?""")


def label_of_name(name: str) -> int | None:
    """0 (real), 1 (fake) or None for a class name (see REAL_NAMES, FAKE_NAMES)."""
    key = re.sub(r"[\s-]+", "_", str(name).strip().lower())
    if key in REAL_NAMES:
        return 0
    if key in FAKE_NAMES:
        return 1
    return None


def _known_names() -> str:
    real = ", ".join(sorted(REAL_NAMES - {"0"}))
    fake = ", ".join(sorted(FAKE_NAMES - {"1"}))
    return f"real: {real} (or 0); fake: {fake} (or 1)"


@dataclass
class Sample:
    """One image with its (optional) label, prompt and answer."""

    image: str  # absolute path
    label: int | None = None  # 0 real, 1 fake, None unknown
    prompt: str | None = None  # user-turn text holding "<image>" (None: the model's default prompt)
    answer: str | None = None  # assistant text (None: the label word)
    dataset: str = ""  # name of the file or folder it came from
    subset: str | None = None  # generator folder of nested image folders

    def to_dict(self) -> dict:
        return asdict(self)


def read_samples(path: str | Path, image_root: str | Path | None = None) -> list[Sample]:
    """Samples of a JSON/JSONL/CSV file or an image folder (see the module docstring).

    `image_root`: a folder relative image paths of JSON and CSV files are also looked up in (last,
    after the file's folder and the working directory)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder.")
    if image_root is not None and not Path(image_root).expanduser().is_dir():
        raise ValueError(f"{image_root}: no such folder (the image root).")
    if path.is_dir():
        return _read_folder(path)
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl"):
        return _read_json(path, _ImagePaths(path, image_root))
    if suffix == ".csv":
        return _read_csv(path, _ImagePaths(path, image_root))
    if is_image_name(path):
        return [Sample(image=str(path.resolve()), dataset=path.parent.name)]
    raise ValueError(f"{path}: not a .json/.jsonl/.csv file, an image or a folder.")


# ---------------------------------------------------------------------------------------- image paths
class _ImagePaths:
    """Finds the images that a data file's records name, and collects the records whose image exists
    nowhere, to report them all at once."""

    def __init__(self, data_file: Path, image_root: str | Path | None):
        self.data_file = data_file
        places = [(data_file.parent.resolve(), "the file's folder"), (Path.cwd().resolve(), "the working directory")]
        if image_root is not None:
            places.append((Path(image_root).expanduser().resolve(), "the image root"))
        self.places: list[tuple[Path, str]] = []
        for folder, what in places:
            if all(folder != seen for seen, _ in self.places):
                self.places.append((folder, what))
        self.missing: list[str] = []
        self.count = 0

    def find(self, where: str, name: str) -> str:
        self.count += 1
        image = Path(name).expanduser()
        if image.is_absolute():
            if image.exists():
                return str(image.resolve())
            self.missing.append(f"{where}: {name} does not exist")
            return str(image)
        for folder, _ in self.places:
            candidate = folder / image
            if candidate.exists():
                return str(candidate.resolve())
        tried = ", ".join(f"{folder} ({what})" for folder, what in self.places)
        self.missing.append(f"{where}: {name} is in none of {tried}")
        return str(self.places[0][0] / image)

    def check(self) -> None:
        if not self.missing:
            return
        shown = self.missing[:10]
        more = len(self.missing) - len(shown)
        lines = [f"{self.data_file}: {len(self.missing)} of {self.count} records name an image that does not exist:"]
        lines += [f"  {line}" for line in shown]
        if more:
            lines.append(f"  ... and {more} more.")
        lines.append("Relative paths are looked up in the file's folder, then the working directory (run from the "
                     "folder they are relative to: for the official files, the repository root), then --image-root DIR.")  # fmt: skip
        raise ValueError("\n".join(lines))


# ---------------------------------------------------------------------------------------- JSON
def _read_json(path: Path, paths: _ImagePaths) -> list[Sample]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read it ({error}).") from error
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            if path.suffix.lower() == ".json" and stripped.startswith("{"):
                return _read_jsonl(path, text, paths)  # JSONL saved under .json
            raise ValueError(f"{path}: not valid JSON ({error}).") from error
        if isinstance(data, dict):
            # {"data": [...]} or a single sample
            data = data.get("data", data.get("samples", [data]))
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of samples, got {type(data).__name__}.")
        samples = [_parse_record(path, f"record {i}", record, paths) for i, record in enumerate(data)]
        paths.check()
        return samples
    return _read_jsonl(path, text, paths)


def _read_jsonl(path: Path, text: str, paths: _ImagePaths) -> list[Sample]:
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number} is not valid JSON ({error}).") from error
        samples.append(_parse_record(path, f"line {number}", record, paths))
    paths.check()
    return samples


def _parse_record(path: Path, where: str, record, paths: _ImagePaths) -> Sample:
    def fail(reason: str):
        return ValueError(f"{path}: {where}: {reason}")

    if not isinstance(record, dict):
        raise fail(f"expected an object, got {type(record).__name__}.")
    images = record.get("images", record.get("image"))
    if isinstance(images, str):
        images = [images]
    if not images or not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        raise fail("no image path (expected `images: [path]` or `images: path`).")
    if len(images) != 1:
        raise fail(f"{len(images)} images; Deep-VRM samples hold exactly one image.")

    prompt, answer = None, None
    messages = record.get("messages", record.get("conversations"))
    if messages is not None:
        if not isinstance(messages, list):
            raise fail("`messages` must be a list of turns.")
        for turn in messages:
            if not isinstance(turn, dict):
                raise fail("each turn must be an object with `role` and `content`.")
            role = str(turn.get("role", turn.get("from", ""))).lower()
            content = _content_text(turn.get("content", turn.get("value")))
            if content is None:
                raise fail(f"a {role or 'message'} turn has no text content.")
            if role in ("user", "human"):
                if prompt is not None:
                    raise fail("more than one user turn; Deep-VRM samples are one question and one answer.")
                prompt = content
            elif role in ("assistant", "gpt", "model"):
                if answer is not None:
                    raise fail("more than one assistant turn.")
                answer = content
            elif role != "system":
                raise fail(f"unknown role {role!r}.")
        if prompt is None:
            raise fail("no user turn.")
        if prompt.count("<image>") > 1:
            raise fail("the user turn holds more than one <image>.")

    label, stated_by = None, None
    if record.get("label") is not None:
        label, stated_by = _label_value(record["label"]), "label"
        if label is None:
            raise fail(f"unknown label {record['label']!r} ({_known_names()}).")
    elif record.get("channel") is not None:
        label = channel_label(record["channel"])
        stated_by = "channel" if label is not None else None
    if answer is not None:
        is_short, said = _short_verdict(answer, prompt)
        if label is None:
            label = said if is_short else label_from_answer(answer, prompt)
        elif is_short and said is not None and said != label:
            raise fail(f"its {stated_by} {record[stated_by]!r} says {_CLASS[label]}, its answer {answer!r} says {_CLASS[said]}.")
    subset = record.get("subset", record.get("generator"))
    return Sample(
        image=paths.find(where, images[0]),
        label=label,
        prompt=prompt,
        answer=answer,
        dataset=str(record.get("dataset") or path.stem),
        subset=None if subset is None else str(subset),
    )


_CLASS = {0: "real", 1: "fake"}


def _content_text(content) -> str | None:
    """A turn's text: a string, or the text items of a content list ({"type": "image"} -> "<image>")."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for item in content:
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, dict) and (item.get("type") == "image" or "image" in item):
                parts.append("<image>")
            elif isinstance(item, dict) and "text" in item:
                parts.append(str(item["text"]))
        return " ".join(parts)
    return None


def _label_value(value) -> int | None:
    """0/1 for a label value: 0, 1, true/false (true = fake) or a class name; None if unknown."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value) if value in (0, 1) else None
    if isinstance(value, str):
        return label_of_name(value)
    return None


def channel_label(channel) -> int | None:
    """The class a `channel` value names ("real", "fake_single", ...), None if it names none."""
    if not isinstance(channel, str):
        return None
    whole = label_of_name(channel)
    if whole is not None and channel.strip() not in ("0", "1"):
        return whole
    words = set(re.split(r"[^a-z0-9]+", channel.lower()))
    real, fake = bool(words & _REAL_CHANNEL_WORDS), bool(words & _FAKE_CHANNEL_WORDS)
    if real != fake:
        return 0 if real else 1
    return None


def label_from_answer(answer: str, prompt: str | None = None) -> int | None:
    """0 (real), 1 (fake) or None (no clear verdict) for an assistant answer to a prompt."""
    is_short, label = _short_verdict(answer, prompt)
    if is_short:
        return label
    text = answer.strip().lower()
    # A free-text analysis: the verdict is the last "is/looks/appears ... real|fake" it states.
    verdicts = re.findall(
        r"\b(?:is|be|looks|appears|seems|likely|image|photo|photograph)\s+(?:to be\s+)?(?:an?\s+|likely\s+|most likely\s+)?"
        r"(not\s+)?(real|fake|natural|authentic|genuine|ai-generated|ai generated|synthetic|generated)\b",
        text,
    )
    if verdicts:
        negated, word = verdicts[-1]
        value = 0 if word in _REAL_WORDS else 1
        return 1 - value if negated else value
    has_fake = any(re.search(rf"\b{re.escape(w)}\b", text) for w in _FAKE_WORDS)
    has_real = any(re.search(rf"\b{re.escape(w)}\b", text) for w in ("real", "authentic", "genuine"))
    if has_fake != has_real:
        return 1 if has_fake else 0
    return None


def _short_verdict(answer: str, prompt: str | None) -> tuple[bool, int | None]:
    """(True, label) when the answer is a one-word or one-phrase verdict ("fake", "natural image",
    "AI-generated", "yes"; alone or followed by punctuation and more text), label None when a yes/no
    question does not say what "yes" means; (False, None) for any other answer."""
    text = answer.strip().lower()
    whole = text.strip(" \t\n\"'`.!")
    first = re.match(r"([a-z][\w-]*(?: generated)?(?: image| photo)?)\s*[.!,;:\n]", text)
    for candidate, strict in ((whole, False), (first.group(1) if first else None, True)):
        if candidate is None:
            continue
        if candidate in ("yes", "no"):
            positive = _yes_means(prompt)
            return True, None if positive is None else (positive if candidate == "yes" else 1 - positive)
        if candidate in ("0", "1") or (strict and candidate in ("ai", "generated")):
            continue
        value = label_of_name(candidate)
        if value is not None:
            return True, value
    return False, None


def _yes_means(prompt: str | None) -> int | None:
    """The label a "yes" answer means for this question (1 fake, 0 real), None if unclear: a question
    about both ("Is this image real or fake?") or a negated one."""
    if not prompt:
        return None
    text = _YES_NO_OPTIONS.sub(" ", prompt.lower().replace("<image>", " "))
    questions = re.findall(r"[^.?!]*\?", text)
    question = " ".join(questions) if questions else text
    if _NEGATION.search(question):
        return None
    fake, real = bool(_FAKE_CUES.search(question)), bool(_REAL_CUES.search(question))
    if fake != real:
        return 1 if fake else 0
    return None


# ---------------------------------------------------------------------------------------- CSV
_PATH_COLUMNS = ("filename", "file_name", "file", "filepath", "file_path", "path", "image", "image_path", "img", "image_name")
_LABEL_COLUMNS = ("label", "labels", "class", "target")


def _read_csv(path: Path, paths: _ImagePaths) -> list[Sample]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = [(number, row) for number, row in enumerate(csv.reader(file), 1) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: cannot read it as CSV ({error}).") from error
    if not rows:
        raise ValueError(f"{path}: no rows.")
    header = [cell.strip().lower() for cell in rows[0][1]]
    path_column, label_column = 0, 1
    if any(name in _PATH_COLUMNS for name in header):
        path_column = next(header.index(name) for name in _PATH_COLUMNS if name in header)
        label_column = next((header.index(name) for name in _LABEL_COLUMNS if name in header), None)
        if label_column is None and len(header) > 1:
            raise ValueError(f"{path}: no label column among {rows[0][1]} (expected one named {', '.join(_LABEL_COLUMNS)}).")
        rows = rows[1:]
    samples = []
    for number, row in rows:
        where = f"line {number}"
        if len(row) <= path_column or not row[path_column].strip():
            raise ValueError(f"{path}: {where}: no file name.")
        label = None
        if label_column is not None and len(row) > label_column and row[label_column].strip():
            text = row[label_column].strip()
            label = _label_value(int(text) if text in ("0", "1") else text)
            if label is None:
                raise ValueError(f"{path}: {where}: unknown label {text!r} ({_known_names()}).")
        samples.append(Sample(image=paths.find(where, row[path_column].strip()), label=label, dataset=path.stem))
    paths.check()
    return samples


# ---------------------------------------------------------------------------------------- folders
def _folder_label(name: str) -> int | None:
    return label_of_name(name)


def _images_under(folder: Path) -> list[Path]:
    return [Path(p) for p in image_files(folder)]


def _read_folder(root: Path) -> list[Sample]:
    root = root.resolve()
    own = _folder_label(root.name)
    if own is not None and root.name not in ("0", "1"):
        # The label folder itself (e.g. DIR/fake) was given.
        return [Sample(image=str(p), label=own, dataset=root.parent.name) for p in _images_under(root)]
    label_dirs: list[tuple[Path, int]] = []
    for folder, subfolders, _ in walk_images(root):
        labelled, unlabelled = [], []
        for name in subfolders:
            label = _folder_label(name)
            # "0"/"1" count as label folders only next to each other.
            if name in ("0", "1") and ("1" if name == "0" else "0") not in subfolders:
                label = None
            if label is not None:
                labelled.append((Path(folder) / name, label))
            else:
                unlabelled.append(name)
        if labelled:
            check_no_stray_folders(Path(folder), [p.name for p, _ in labelled], unlabelled)
        label_dirs += labelled
        subfolders[:] = unlabelled  # a label folder's images are its own, whatever folders it holds
    label_dirs.sort(key=lambda item: item[0].relative_to(root).parts)  # depth-first, by name

    if not label_dirs:
        images = _images_under(root)
        if not images:
            raise ValueError(f"{root}: no images and no real/fake folders in it.")
        return [Sample(image=str(p), dataset=root.name) for p in images]
    samples = []
    for folder, label in label_dirs:
        parent = folder.parent.relative_to(root)
        subset = None if parent == Path(".") else parent.as_posix()
        samples += [Sample(image=str(p), label=label, dataset=root.name, subset=subset) for p in _images_under(folder)]
    if not samples:
        raise ValueError(f"{root}: its real/fake folders hold no images.")
    return samples


def check_no_stray_folders(folder: Path, label_folders: list[str], others: list[str]) -> None:
    """Beside label folders (`real`, `1_fake`, ...), a folder holding images whose name is no class
    name is an error: its images would otherwise be dropped or mislabelled without a word."""
    for name in others:
        if image_files(folder / name):
            raise ValueError(
                f"{folder}: folder {name!r} holds images but its name is no label, beside "
                f"{', '.join(repr(n) for n in sorted(label_folders))}. Known names: {_known_names()}. "
                "Rename it, or give the folders one by one."
            )


# ---------------------------------------------------------------------------------------- datasets
# Training and evaluation datasets hold, per sample: `image` (datasets' undecoded Image feature,
# {"path", "bytes"}: decoded lazily, in the collator), `label` (0, 1 or None), `prompt`, `answer`,
# `dataset`, `subset`.
def _features():
    from datasets import Features, Image, Value

    return Features(
        {
            "image": Image(decode=False),
            "label": Value("int64"),
            "prompt": Value("string"),
            "answer": Value("string"),
            "dataset": Value("string"),
            "subset": Value("string"),
        }
    )


def samples_to_dataset(samples: list[Sample]):
    """A `datasets.Dataset` of samples (images stay files until the collator reads them)."""
    from datasets import Dataset

    rows = [{**s.to_dict(), "image": {"path": s.image, "bytes": None}} for s in samples]
    return Dataset.from_list(rows, features=_features())


def from_hf_dataset(dataset, image_column: str = "image", label_column: str | None = "label", name: str | None = None):
    """Any `datasets.Dataset` with an image column (Image feature, path strings or PIL images) and a
    label column (0/1, a `ClassLabel` whose names say real/fake, or label words) in our schema."""
    from datasets import ClassLabel, Image

    if image_column not in dataset.column_names:
        raise ValueError(f"{name or 'dataset'}: no image column {image_column!r} (columns: {dataset.column_names}).")
    if label_column is not None and label_column not in dataset.column_names:
        raise ValueError(f"{name or 'dataset'}: no label column {label_column!r} (columns: {dataset.column_names}).")
    name = name or (dataset.info.dataset_name if dataset.info and dataset.info.dataset_name else "dataset")
    feature = dataset.features[image_column]
    if isinstance(feature, Image):
        dataset = dataset.cast_column(image_column, Image(decode=False))
    label_map = None
    if label_column is not None and isinstance(dataset.features[label_column], ClassLabel):
        names = dataset.features[label_column].names
        label_map = {}
        for index, label_name in enumerate(names):
            value = _label_value(label_name)
            if value is None:
                raise ValueError(f"{name}: cannot tell whether class {label_name!r} is real or fake (classes: {names}).")
            label_map[index] = value
    has = set(dataset.column_names)

    def convert(batch):
        n = len(batch[image_column])
        images = []
        for value in batch[image_column]:
            if isinstance(value, str):
                images.append({"path": value, "bytes": None})
            elif isinstance(value, dict):
                images.append({"path": value.get("path"), "bytes": value.get("bytes")})
            else:  # a PIL image in a plain column: store it encoded
                import io

                buffer = io.BytesIO()
                value.save(buffer, format="PNG")
                images.append({"path": getattr(value, "filename", None) or None, "bytes": buffer.getvalue()})
        labels = [None] * n
        if label_column is not None:
            labels = []
            for value in batch[label_column]:
                label = label_map[value] if label_map is not None and value is not None else (
                    None if value is None else _label_value(value)
                )
                if value is not None and label is None:
                    raise ValueError(f"{name}: unknown label {value!r} ({_known_names()}).")
                labels.append(label)
        return {
            "image": images,
            "label": labels,
            "prompt": batch["prompt"] if "prompt" in has else [None] * n,
            "answer": batch["answer"] if "answer" in has else [None] * n,
            "dataset": [name] * n,
            "subset": batch["subset"] if "subset" in has else [None] * n,
        }

    return dataset.map(convert, batched=True, remove_columns=dataset.column_names, features=_features())


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists())


def load_dataset_source(source, image_column: str = "image", label_column: str = "label", split: str = "train",
                        image_root: str | Path | None = None):  # fmt: skip
    """A dataset in our schema from a path (JSON/JSONL/CSV, image folder, `save_to_disk` folder) or a
    `datasets.Dataset`/`DatasetDict` (its `split`). `image_root`: see `read_samples`."""
    import datasets

    if isinstance(source, datasets.DatasetDict):
        source = source[split]
    if isinstance(source, datasets.Dataset):
        return from_hf_dataset(source, image_column, label_column)
    path = Path(source).expanduser()
    if _is_saved_dataset(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            loaded = loaded[split]
        return from_hf_dataset(loaded, image_column, label_column, name=path.name)
    return samples_to_dataset(read_samples(path, image_root=image_root))


def load_image(entry, index: int | None = None):
    """Decode one dataset image entry ({"path", "bytes"}, a path or a PIL image) to an RGB PIL image,
    as `deepvrm detect` opens images (upright, any mode to RGB, extreme aspect ratios padded).

    Raises `ImageReadError` naming the file (or the sample) and the reason.
    """
    import io

    from PIL import Image

    from deepvrm.inference.images import ImageError, fit_aspect_ratio, open_image, to_rgb

    if isinstance(entry, (str, Path)):
        entry = {"path": str(entry), "bytes": None}
    try:
        if isinstance(entry, Image.Image):
            image = to_rgb(entry)
        elif entry.get("bytes"):
            where = entry.get("path") or f"sample {index}"
            try:
                with Image.open(io.BytesIO(entry["bytes"])) as raw:
                    raw.load()
                    image = to_rgb(raw)
            except Exception as error:  # noqa: BLE001 - any decoder failure is this sample's error
                raise ImageError(where, f"cannot decode the image bytes ({type(error).__name__}: {error})") from None
        else:
            image = open_image(entry["path"])
        return fit_aspect_ratio(image)
    except ImageError as error:
        raise ImageReadError(str(error)) from None


class ImageReadError(ValueError):
    """An image that cannot be decoded; the message is "<file>: <reason>"."""


__all__ = [
    "Sample",
    "read_samples",
    "label_from_answer",
    "label_of_name",
    "channel_label",
    "check_no_stray_folders",
    "REAL_NAMES",
    "FAKE_NAMES",
    "samples_to_dataset",
    "from_hf_dataset",
    "load_dataset_source",
    "load_image",
    "ImageReadError",
]
