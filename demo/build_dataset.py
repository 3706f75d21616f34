#!/usr/bin/env python3
"""Build the offline demo dataset: real photographs, AI-generated images and autoencoder fakes.

    python demo/build_dataset.py [--output demo/data] [--record demo/dataset] [--cache .cache/demo] [--seed 0]
    python demo/build_dataset.py --splits test      # only the test split, with the committed autoencoder

Everything comes from pinned packages of the package registries (PyPI through pip, Debian through
apt-get), downloaded once into the cache and checked against the SHA-256 sums below:

real     scikit-image's `skimage.data` colour photographs (CC0 / public domain, as each loader's
         docstring says), scikit-learn's sample images (CC-BY 2.0, attribution in its README), the
         photographs of Debian's `mate-backgrounds` and `palapeli-data` (GPL-2+ per each package's
         copyright file; paintings, logos, abstract art and textures left out).
fake     the still generator outputs of `comfyui-workflow-templates-media-image` (MIT): Flux, SD3.5,
         SDXL, Qwen-Image, HiDream, Z-Image, Chroma, ... thumbnails; animations, UI/infographic
         composites, vector art, audio-workflow graphics and before/after variants left out.
fake     D2-style reconstructions (as in the paper: same content, only generator traces differ) of
         every real crop through a small convolutional autoencoder that this script trains, on CPU,
         on the training split's real crops.

Every image goes through the same pipeline: decode, upright RGB, square crop, Lanczos resize to
224x224 (the `small` preset's input, so the processor does not resample again), PNG without
metadata. Crops are 1.3x to 3x the output size, for reals and fakes alike, so that no scale or
file-format shortcut separates them; an original gives about COVERAGE x (its area / a typical
crop's area) crops, overlapping at most MAX_OVERLAP (IoU); crops with almost no detail are skipped.
All crops of one original are in one split.

Splits: whole originals, in a seeded order per class: ~20% of the crops to `test`, ~12% to
`validation`, the rest to `train`. Every real crop has its autoencoder reconstruction in its split.
No image is committed to the repository: `make demo` rebuilds the test split (`--splits test`, the
committed autoencoder, every pixel checked against the committed manifest).

Output: images and sample lists in `--output` (default demo/data, not committed):

    {train,validation,test}/{real,fake}/*.png        image folders (read by `deepvrm train/evaluate`)
    train.json                                       official format; each real crop next to its
                                                     reconstruction (D2 pairs), pairs in seeded order
    {validation,test}.json                           official format, relative paths
    {validation,test}_{comfyui,autoencoder}.json     all reals of the split + one fake source

and the dataset's record in `--record` (default demo/dataset, committed; small):

    manifest.jsonl            one row per image: split, label, source, package and version, original
                              file, licence, crop box, SHA-256 of its pixels
    autoencoder.safetensors   the autoencoder that made the fakes
    NOTICE.md                 every original with its licence and attribution
    build_info.json           packages, counts per split/class/source, timings, versions

Reproducible: fixed seeds, pinned packages, a fixed thread count for the autoencoder. The same
machine rebuilds the same pixels; on another CPU the autoencoder's training may differ in float
round-off, which is why `--splits` reuses the committed autoencoder (then every pixel matches).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from deepvrm.configuration_deepvrm import DEFAULT_PROMPT

REPO = Path(__file__).resolve().parent.parent
SIZE = 224  # output side: the `small` preset's fixed pixel budget (224 x 224)
SCALE_RANGE = (1.3, 3.0)  # crop side / SIZE, log-uniform, for every source
MAX_CROPS = 48  # per original (a 2560x1600 photo gives about 40)
MAX_OVERLAP = 0.7  # IoU between two crops of one original
COVERAGE = 2.5  # crops per original: COVERAGE x its area / a typical crop's area (overlapping, at most MAX_CROPS)
LATENT_CHANNELS = 4  # the autoencoder's latent: 8x downsampled, 4 channels, as Stable Diffusion's VAE
MIN_DETAIL = 2.0  # crops with less detail (mean |Laplacian| of the grey output, 8-bit levels) are skipped
PROMPT = f"{DEFAULT_PROMPT} <image>"  # the model's own question, in the official data format
SPLITS = ("train", "validation", "test")
TEST_FRACTION, VALIDATION_FRACTION = 0.2, 0.12  # of the crops of each class, whole originals at a time


# ------------------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class Package:
    registry: str  # "pypi" or "debian"
    name: str
    version: str
    filename: str
    sha256: str


# Wheels are fetched for one fixed platform, so the same file (and hash) comes down on any host.
WHEEL_PLATFORM, WHEEL_PYTHON = "manylinux_2_28_x86_64", "3.11"
PACKAGES = {
    p.name: p
    for p in [
        Package("pypi", "scikit-image", "0.26.0",
                "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
                "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"),
        Package("pypi", "scikit-learn", "1.9.1",
                "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
                "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df"),
        Package("pypi", "comfyui-workflow-templates-media-image", "0.3.160",
                "comfyui_workflow_templates_media_image-0.3.160-py3-none-any.whl",
                "d4a5c5541c7088f6adb1c7da41f5d7c1c14a037eda6a61cd8b4b76c251faaa93"),
        Package("debian", "mate-backgrounds", "1.26.0-1", "mate-backgrounds_1.26.0-1_all.deb",
                "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04"),
        Package("debian", "palapeli-data", "4:22.12.3-1", "palapeli-data_4%3a22.12.3-1_all.deb",
                "69a15dce2ac25ed8708ac518cd0cee5f4eb0c70ed15da2fdb8899a19ac0ee058"),
    ]
}  # fmt: skip

# scikit-image colour photographs: file -> (licence, a phrase of its loader's docstring saying so).
# Left out: grey-level images, drawings and logos, the Middlebury stereo pair (no licence stated)
# and the IHC micrograph ("no known copyright restrictions" only).
SKIMAGE_PHOTOS = {
    "astronaut.png": ("Public domain (NASA)", "released into the public domain"),
    "chelsea.png": ("CC0-1.0", "CC0 by the photographer (Stefan van der Walt)"),
    "coffee.png": ("CC0-1.0", "CC0 by the photographer (Rachel Michetti)"),
    "hubble_deep_field.jpg": ("Public domain (NASA)", "may be freely used in the public domain"),
    "retina.jpg": ("CC0-1.0", "Creative Commons CC0 1.0 Universal"),
    "rocket.jpg": ("Public domain (SpaceX)", "released in the public domain"),
}
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")  # CC-BY 2.0, attribution in datasets/images/README.txt
# MATE: the nature photographs (abstract/ is paintings and renders, desktop/ logos and art).
MATE_PHOTOS = (
    "Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg",
    "LadyBird.jpg", "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg",
)  # fmt: skip
# palapeli: the puzzle collection's photographs (backgrounds/ holds synthetic textures).
PALAPELI_PHOTOS = (
    "castle-maintenon.jpg", "cincinnati-bridge.jpg", "citrus-fruits.jpg", "european-honey-bee.jpg",
    "panther-chameleon-female.jpg",
)  # fmt: skip

# ComfyUI templates: the first image (`-1`) of each template, as a still WebP. The `-2` images are
# the other half of before/after or input/output pairs (edit, upscale, control workflows), and the
# animated WebPs are video/3D previews: both left out. Of the rest, these are not single generator
# outputs (looked at one by one):
COMFY_EXCLUDE = {
    # graphics of audio workflows
    "05_audio_ace_step_1_t2a_song_subgraphed": "audio-workflow graphic",
    "api_elevenLabs_speech_to_text": "audio-workflow graphic",
    "api_elevenlabs_speech_to_speech": "audio-workflow graphic",
    "api_elevenlabs_text_to_dialogue": "audio-workflow graphic",
    "api_elevenlabs_text_to_sound_effects": "audio-workflow graphic",
    "api_elevenlabs_text_to_speech": "audio-workflow graphic",
    "api_elevenlabs_voice_isolation": "audio-workflow graphic",
    "audio_stable_audio_example": "audio-workflow graphic",
    # vector / SVG outputs
    "api_quiver_image_to_svg": "vector art",
    "api_quiver_text_to_svg": "vector art",
    "api_recraft_v4_text_to_vector": "vector art",
    # UI composites: reference images beside the result, grids, layer views, title cards
    "api_grok_imagine_image_quality_image_generation": "title card with UI text",
    "api_kling_o3_image": "composite with reference images",
    "api_krea2_style_reference": "composite with reference images",
    "api_recraft_style_reference": "composite with reference images",
    "api_reve_image_remix": "composite with reference images",
    "image_flux2_klein_9b_kv_image_edit": "composite with reference images",
    "image_flux2_klein_image_edit_4b_base": "composite with reference images",
    "image_flux2_klein_image_edit_4b_distilled": "composite with reference images",
    "image_flux2_klein_image_edit_9b_base": "composite with reference images",
    "image_qwen_image_layered": "layer view",
    "image_qwen_image_layered_control": "layer view",
    "template_contact_sheet-step_1.app": "composite with reference images",
    "template_eric_seedance_5_subject_and_outfit_combine": "composite with reference images",
    "templates-1_click_multiple_character_angles-v1.0": "grid of variants",
    "templates-1_click_multiple_scene_angles-v1.0": "grid of variants",
    "templates-product_ad-v2.0": "composite of two ads on a backdrop",
    # labelled before/after halves, line-art inputs, depth-estimation inputs
    "hidream_e1_1": "labelled before/after variant",
    "hidream_e1_full": "labelled before/after variant",
    "templates-color_illustration": "line-art input of a colouring workflow",
    "image_lotus_depth_v1_1": "input of a depth-estimation workflow",
}


@dataclass
class Original:
    """One source file: where it comes from, its licence, its split."""

    id: str  # unique, file-name safe
    source: str  # scikit-image, scikit-learn, mate-backgrounds, palapeli-data, comfyui
    label: int  # 0 real, 1 fake
    package: str
    version: str
    member: str  # path of the file inside the package
    licence: str
    copyright: str = ""
    attribution: str = ""
    note: str = ""
    data: bytes = field(default=b"", repr=False)
    split: str = ""


# ------------------------------------------------------------------------------------------ fetching
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(package: Package, downloads: Path) -> Path:
    """The package file in the cache, downloaded with pip / apt-get if missing, hash checked."""
    downloads.mkdir(parents=True, exist_ok=True)
    path = downloads / package.filename
    if not path.exists():
        log(f"downloading {package.name} {package.version} ({package.registry})")
        if package.registry == "pypi":
            command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                       "--platform", WHEEL_PLATFORM, "--python-version", WHEEL_PYTHON,
                       f"{package.name}=={package.version}", "--dest", str(downloads)]  # fmt: skip
            subprocess.run(command, check=True)
        else:
            _apt_get_download(package, downloads)
    if not path.exists():
        raise SystemExit(f"build_dataset: expected {path} after downloading {package.name} {package.version}.")
    digest = sha256_file(path)
    if digest != package.sha256:
        raise SystemExit(f"build_dataset: {path} has SHA-256 {digest}, expected {package.sha256}; delete it and rerun.")
    return path


def _apt_get_download(package: Package, downloads: Path) -> None:
    if shutil.which("apt-get") is None:
        raise SystemExit(
            f"build_dataset: {package.name} {package.version} is a Debian package and apt-get is not available here. "
            f"Put {package.filename} (SHA-256 {package.sha256}) into {downloads} and rerun."
        )
    spec = f"{package.name}={package.version}"
    command = ["apt-get", "download", "-q", spec]
    result = subprocess.run(command, cwd=downloads, capture_output=True, text=True)
    if result.returncode != 0 and os.geteuid() == 0:
        log("apt-get download failed; running apt-get update once and retrying")
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        result = subprocess.run(command, cwd=downloads, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"build_dataset: `apt-get download {spec}` failed (a Debian bookworm package; run `apt-get update` "
            f"as root first, or put {package.filename} into {downloads}):\n{result.stderr.strip()}"
        )


class Archive:
    """Files of a wheel (zip) or a Debian package (ar archive holding data.tar.*), read in memory."""

    def __init__(self, path: Path):
        self.path = path
        self.files: dict[str, bytes] = {}
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as archive:
                self.files = {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}
        elif path.suffix == ".deb":
            self.files = _deb_files(path.read_bytes())
        else:
            raise ValueError(path)

    def read(self, member: str) -> bytes:
        if member not in self.files:
            raise SystemExit(f"build_dataset: {member} is not in {self.path.name}.")
        return self.files[member]

    def names(self, pattern: str) -> list[str]:
        return sorted(n for n in self.files if fnmatch.fnmatchcase(n, pattern))


def _deb_files(blob: bytes) -> dict[str, bytes]:
    """The data files of a .deb (an `ar` archive), like `dpkg -x`, without needing dpkg."""
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package (no ar header)")
    offset, files = 8, {}
    while offset + 60 <= len(blob):
        header = blob[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = blob[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        files[member.name.removeprefix("./")] = tar.extractfile(member).read()
    if not files:
        raise ValueError("no data.tar member")
    return files


# ------------------------------------------------------------------------------------------ licences
def parse_dep5(text: str) -> list[dict[str, str]]:
    """Stanzas of a machine-readable Debian copyright file (DEP-5), continuation lines joined."""
    stanzas, current, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                current[key] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            key = key.strip()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def dep5_licence(stanzas: list[dict[str, str]], path: str) -> tuple[str, str]:
    """(licence short name, copyright) of `path` (relative to the upstream tree): last matching
    Files stanza wins, as DEP-5 specifies."""
    found = None
    for stanza in stanzas:
        patterns = stanza.get("Files", "").split()
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
            found = stanza
    if found is None:
        raise SystemExit(f"build_dataset: no Files stanza of the copyright file covers {path}.")
    licence = found.get("License", "").splitlines()[0].strip()
    copyright_ = "; ".join(part.strip() for part in found.get("Copyright", "").splitlines() if part.strip())
    return licence, copyright_


def desktop_fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and "[" not in key:
            fields.setdefault(key.strip(), value.strip())
    return fields


# ------------------------------------------------------------------------------------------ originals
def collect_originals(archives: dict[str, Archive]) -> list[Original]:
    originals: list[Original] = []

    skimage, pkg = archives["scikit-image"], PACKAGES["scikit-image"]
    fetchers = skimage.read("skimage/data/_fetchers.py").decode()
    for name, (licence, phrase) in SKIMAGE_PHOTOS.items():
        if phrase not in fetchers:  # the licence statement must still be in this release
            raise SystemExit(f"build_dataset: scikit-image {pkg.version} no longer says {phrase!r} about {name}.")
        member = f"skimage/data/{name}"
        originals.append(Original(
            id=f"skimage-{Path(name).stem}", source="scikit-image", label=0, package=pkg.name, version=pkg.version,
            member=member, licence=licence, note=f"skimage.data docstring: {phrase!r}", data=skimage.read(member),
        ))  # fmt: skip

    sklearn, pkg = archives["scikit-learn"], PACKAGES["scikit-learn"]
    readme = sklearn.read("sklearn/datasets/images/README.txt").decode()
    for name in SKLEARN_PHOTOS:
        block = readme.split(f"Image: {name}", 1)[1].split("Image:", 1)[0].strip()
        if "creativecommons.org/licenses/by/2.0" not in block:
            raise SystemExit(f"build_dataset: scikit-learn {pkg.version}'s README no longer gives CC-BY 2.0 for {name}.")
        member = f"sklearn/datasets/images/{name}"
        originals.append(Original(
            id=f"sklearn-{Path(name).stem}", source="scikit-learn", label=0, package=pkg.name, version=pkg.version,
            member=member, licence="CC-BY-2.0", attribution=" ".join(block.split()), data=sklearn.read(member),
        ))  # fmt: skip

    mate, pkg = archives["mate-backgrounds"], PACKAGES["mate-backgrounds"]
    stanzas = parse_dep5(mate.read("usr/share/doc/mate-backgrounds/copyright").decode())
    for name in MATE_PHOTOS:
        member = f"usr/share/backgrounds/mate/nature/{name}"
        licence, copyright_ = dep5_licence(stanzas, f"nature/{name}")
        originals.append(Original(
            id=f"mate-{Path(name).stem}", source="mate-backgrounds", label=0, package=pkg.name, version=pkg.version,
            member=member, licence=licence, copyright=copyright_,
            note="licence from /usr/share/doc/mate-backgrounds/copyright", data=mate.read(member),
        ))  # fmt: skip

    palapeli, pkg = archives["palapeli-data"], PACKAGES["palapeli-data"]
    stanzas = parse_dep5(palapeli.read("usr/share/doc/palapeli-data/copyright").decode())
    for name in PALAPELI_PHOTOS:
        member = f"usr/share/palapeli/collection/{name}"
        licence, copyright_ = dep5_licence(stanzas, f"collection/{name}")
        desktop = desktop_fields(palapeli.read(member.rsplit(".", 1)[0] + ".desktop").decode())
        upstream = (f"upstream .desktop: author {desktop.get('X-KDE-PluginInfo-Author', '?')}, licence "
                    f"{desktop.get('X-KDE-PluginInfo-License', '?')}, {desktop.get('X-KDE-PluginInfo-Website', '')}")  # fmt: skip
        originals.append(Original(
            id=f"palapeli-{Path(name).stem}", source="palapeli-data", label=0, package=pkg.name, version=pkg.version,
            member=member, licence=licence, copyright=copyright_,
            note="licence from /usr/share/doc/palapeli-data/copyright; " + upstream, data=palapeli.read(member),
        ))  # fmt: skip

    comfy, pkg = archives["comfyui-workflow-templates-media-image"], PACKAGES["comfyui-workflow-templates-media-image"]
    metadata = comfy.read(f"comfyui_workflow_templates_media_image-{pkg.version}.dist-info/METADATA").decode()
    licence = re.search(r"^License-Expression: (.+)$", metadata, re.M).group(1).strip()
    seen_excluded = set()
    for member in comfy.names("comfyui_workflow_templates_media_image/templates/*-1.webp"):
        template = Path(member).name.removesuffix("-1.webp")
        if template in COMFY_EXCLUDE:
            seen_excluded.add(template)
            continue
        data = comfy.read(member)
        with Image.open(io.BytesIO(data)) as image:
            if getattr(image, "n_frames", 1) > 1:
                continue  # an animation (video / 3D preview)
        originals.append(Original(
            id=f"comfyui-{_safe(template)}", source="comfyui", label=1, package=pkg.name, version=pkg.version,
            member=member, licence=licence, note=f"ComfyUI workflow template {template!r}", data=data,
        ))  # fmt: skip
    stale = sorted(set(COMFY_EXCLUDE) - seen_excluded)
    if stale:
        raise SystemExit(f"build_dataset: excluded templates not found in {pkg.name} {pkg.version}: {stale}")
    return originals


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_splits(originals: list[Original], crop_counts: dict[str, int], seed: int) -> None:
    """Whole originals to splits, so that all crops of one original share a split: reals and ComfyUI
    templates each in a seeded order, the first ones to `test` until it holds TEST_FRACTION of that
    kind's crops, the next to `validation` (VALIDATION_FRACTION), the rest to `train`."""
    for kind in (0, 1):
        members = sorted((o for o in originals if o.label == kind), key=lambda o: _rank(seed, o.id))
        total = sum(crop_counts[o.id] for o in members)
        taken = {"test": 0, "validation": 0}
        for original in members:
            if taken["test"] < TEST_FRACTION * total:
                original.split = "test"
            elif taken["validation"] < VALIDATION_FRACTION * total:
                original.split = "validation"
            else:
                original.split = "train"
            if original.split in taken:
                taken[original.split] += crop_counts[original.id]


# ------------------------------------------------------------------------------------------ cropping
def decode(data: bytes) -> Image.Image:
    """Upright 8-bit RGB (first frame; transparency composited on white)."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return image.convert("RGB")


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def detail(pixels: np.ndarray) -> float:
    """Mean absolute 4-neighbour Laplacian of the grey-level image: ~0 for clear sky or bokeh."""
    grey = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    laplacian = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(np.abs(laplacian).mean())


def crop_original(image: Image.Image, seed: int, key: str) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Seeded square crops of one original, each resized to SIZE x SIZE: [(box, uint8 HxWx3)]."""
    width, height = image.size
    short = min(width, height)
    low, high = min(short, round(SCALE_RANGE[0] * SIZE)), min(short, round(SCALE_RANGE[1] * SIZE))
    typical = math.sqrt(low * high)
    wanted = max(1, min(MAX_CROPS, round(COVERAGE * width * height / typical**2)))
    rng = random.Random(_rank(seed, "crop:" + key))
    crops: list = []
    for _ in range(60 * wanted):
        if len(crops) == wanted:
            break
        side = round(math.exp(rng.uniform(math.log(low), math.log(high)))) if high > low else low
        x, y = rng.randint(0, width - side), rng.randint(0, height - side)
        box = (x, y, x + side, y + side)
        if any(_iou(box, other) > MAX_OVERLAP for other, _ in crops):
            continue
        pixels = np.asarray(image.crop(box).resize((SIZE, SIZE), Image.Resampling.LANCZOS, reducing_gap=None))
        if detail(pixels) < MIN_DETAIL:
            continue
        crops.append((box, pixels))
    return crops


def save_png(pixels: np.ndarray, path: Path) -> str:
    """The one encoding every image gets: 8-bit RGB PNG, no metadata. Returns the pixels' SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, format="PNG", optimize=False, compress_level=9)
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------ autoencoder
def build_autoencoder():
    """A small convolutional autoencoder with Stable Diffusion's VAE's latent shape: 8x downsampled,
    4 channels (48x fewer numbers than pixels); the decoder upsamples by nearest neighbour +
    convolution. Pixels in [-1, 1]."""
    from torch import nn

    encoder = nn.Sequential(
        nn.Conv2d(3, 32, 4, stride=2, padding=1), nn.SiLU(),
        nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.SiLU(),
        nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.SiLU(),
        nn.Conv2d(64, LATENT_CHANNELS, 1),
    )  # fmt: skip
    decoder = nn.Sequential(
        nn.Conv2d(LATENT_CHANNELS, 64, 3, padding=1), nn.SiLU(),
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(),
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(64, 32, 3, padding=1), nn.SiLU(),
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(32, 32, 3, padding=1), nn.SiLU(),
        nn.Conv2d(32, 3, 3, padding=1),
    )  # fmt: skip
    return nn.Sequential(encoder, decoder)


def train_autoencoder(crops: list[np.ndarray], seed: int, steps: int, batch: int = 16, patch: int = 64, lr: float = 5e-3):
    """L1 reconstruction of random 64x64 patches of the crops (Adam, 20-step warm-up, cosine decay)."""
    import torch

    torch.manual_seed(seed)
    model = build_autoencoder()
    data = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for step in range(steps):
        index = torch.randint(len(data), (batch,), generator=generator).tolist()
        ys = torch.randint(SIZE - patch + 1, (batch,), generator=generator).tolist()
        xs = torch.randint(SIZE - patch + 1, (batch,), generator=generator).tolist()
        x = torch.stack([data[i, :, y : y + patch, x_ : x_ + patch] for i, y, x_ in zip(index, ys, xs)])
        loss = (model(x) - x).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % max(1, steps // 5) == 0:
            log(f"  autoencoder step {step + 1}/{steps}: L1 {loss.item() / 2:.4f} ({time.perf_counter() - started:.0f}s)")
    return model.eval()


def reconstruct(model, crops: list[np.ndarray]) -> tuple[list[np.ndarray], list[float]]:
    """(uint8 reconstructions, PSNR of each in dB)."""
    import torch

    outputs, psnrs = [], []
    with torch.no_grad():
        for start in range(0, len(crops), 16):
            x = torch.from_numpy(np.stack(crops[start : start + 16])).permute(0, 3, 1, 2).float().div(127.5).sub(1)
            y = model(x).add(1).mul(127.5).clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for original, out in zip(crops[start : start + 16], y):
                mse = np.mean((original.astype(np.float64) - out.astype(np.float64)) ** 2)
                psnrs.append(float(10 * np.log10(255**2 / max(mse, 1e-10))))
                outputs.append(np.ascontiguousarray(out))
    return outputs, psnrs


def save_autoencoder(model, path: Path, info: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={k: str(v) for k, v in info.items()})


def load_autoencoder(path: Path):
    from safetensors.torch import load_file

    model = build_autoencoder()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


# ------------------------------------------------------------------------------------------ writing
def sample(path: str, label: int) -> dict:
    return {
        "messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": "fake" if label else "real"}],
        "images": [path],
    }


def write_json(path: Path, rows: list[dict]) -> None:
    records = [sample(r["path"], r["label"]) for r in sorted(rows, key=lambda r: r["path"])]
    path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")


def write_paired_json(path: Path, rows: list[dict], seed: int) -> None:
    """The training file: units of two samples in a seeded random order, each real crop next to its
    autoencoder reconstruction (a D2 pair) and the ComfyUI images two by two. Read in this order
    (the demo recipes' `train_sampling_strategy: sequential`, even batch sizes), every batch holds
    whole pairs, so the content of a pair cancels out of its gradient and only the traces remain."""
    by_path = {r["path"]: r for r in rows}
    units = [[by_path[r["reconstruction_of"]], r] for r in rows if r["source"] == "autoencoder"]
    paired = {r["path"] for unit in units for r in unit}
    rest = sorted((r for r in rows if r["path"] not in paired), key=lambda r: _rank(seed, "order:" + r["path"]))
    units += [rest[i : i + 2] for i in range(0, len(rest), 2)]
    # Seeded order; a lone unit (an odd number of ComfyUI images) goes last so it shifts no pair.
    units.sort(key=lambda unit: (len(unit) == 1, _rank(seed, "pair:" + unit[0]["path"])))
    records = [sample(r["path"], r["label"]) for unit in units for r in unit]
    path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")


def write_notice(output: Path, rows: list[dict]) -> None:
    by_original: dict[str, dict] = {}
    for row in rows:
        if row["source"] != "autoencoder":
            by_original.setdefault(row["original"], row)
    lines = [
        "# Licences of the demo dataset's images",
        "",
        "Generated by `demo/build_dataset.py`; `manifest.jsonl` gives every image's source package, version,",
        "original file, licence and crop box. The images are never committed to the repository: they are",
        "rebuilt locally from the pinned packages (`make demo-data` for every split, `make demo` for the",
        "test split). `examples/` holds a few of them (CC0 and MIT only), listed in `examples/NOTICE.md`.",
        "",
        "The `autoencoder` fakes are reconstructions of the real crops next to them, made by this",
        "project's autoencoder: they carry the licence of the photograph they reconstruct.",
        "",
        "| original | package | licence | copyright / attribution | splits |",
        "|---|---|---|---|---|",
    ]
    splits: dict[str, set] = {}
    for row in rows:
        if row["source"] != "autoencoder":
            splits.setdefault(row["original"], set()).add(row["split"])
    for original, row in sorted(by_original.items(), key=lambda kv: (kv[1]["source"], kv[0])):
        who = row.get("attribution") or row.get("copyright") or ""
        lines.append(
            f"| `{original}` | {row['package']} {row['version']} | {row['licence']} | {who.replace('|', '/')} | "
            f"{', '.join(sorted(splits[original]))} |"
        )
    lines += ["", "CC-BY 2.0: https://creativecommons.org/licenses/by/2.0/ — the two scikit-learn photographs",
              "were cropped and resized. MIT: the ComfyUI workflow templates' media package",
              "(`comfyui-workflow-templates-media-image`, Comfy Org), images cropped and resized.", ""]  # fmt: skip
    (output / "NOTICE.md").write_text("\n".join(lines), encoding="utf-8")


# A handful of test-split images for examples/ (public-domain or MIT originals only): name -> path.
EXAMPLES = {
    "astronaut.png": "test/real/skimage-astronaut-0.png",
    "rocket.png": "test/real/skimage-rocket-0.png",
    "rocket-autoencoder.png": "test/fake/autoencoder-skimage-rocket-0.png",
    "flux1-krea-dev.png": "test/fake/comfyui-flux1_krea_dev-0.png",
    "qwen-image.png": "test/fake/comfyui-image_qwen_image-0.png",
    "hidream-i1-fast.png": "test/fake/comfyui-hidream_i1_fast-0.png",
}


def write_examples(output: Path, rows: list[dict], examples: Path) -> None:
    """Copy EXAMPLES into `examples` with a NOTICE.md giving each one's origin and licence."""
    by_path = {r["path"]: r for r in rows}
    examples.mkdir(parents=True, exist_ok=True)
    lines = ["# Example images", "",
             "Crops from the demo dataset's test split (`demo/build_dataset.py`; the demo model never trained on",
             "them), 224x224 PNG. Which are real and which are fake:", "",
             "| file | class | source | original | licence |", "|---|---|---|---|---|"]  # fmt: skip
    for name, rel in EXAMPLES.items():
        row = by_path[rel]
        shutil.copyfile(output / rel, examples / name)
        kind = {"autoencoder": "fake (autoencoder reconstruction of the real crop)", "comfyui": "fake (AI-generated)"}
        who = row.get("copyright") or row.get("attribution") or ""
        licence = row["licence"] + (f", {who}" if who and who not in row["licence"] else "")
        lines.append(f"| `{name}` | {kind.get(row['source'], 'real photograph')} | {row['package']} {row['version']} | "
                     f"`{row['original']}` | {licence} |")  # fmt: skip
    lines += ["", "The ComfyUI images come from `comfyui-workflow-templates-media-image` (MIT, Comfy Org). The",
              "photographs are public domain (scikit-image's `skimage.data`); the autoencoder reconstruction",
              "is derived from one of them by this project's autoencoder.", ""]  # fmt: skip
    (examples / "NOTICE.md").write_text("\n".join(lines), encoding="utf-8")


def log(message: str) -> None:
    print(f"[build_dataset] {message}", flush=True)


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(REPO / "demo" / "data"), help="dataset folder (default demo/data)")
    parser.add_argument("--cache", default=str(REPO / ".cache" / "demo"), help="download cache (default .cache/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", default=str(REPO / "demo" / "dataset"),
                        help="where a full build writes manifest.jsonl, NOTICE.md, build_info.json and "
                             "autoencoder.safetensors, the small files the repository commits (default demo/dataset)")
    parser.add_argument("--examples", default=str(REPO / "examples"),
                        help="full builds copy a few public-domain / MIT test images here, with their NOTICE.md "
                             "(default examples/; empty: skip)")
    parser.add_argument("--autoencoder", help="use this autoencoder (safetensors) instead of training one "
                        "(default for --splits: RECORD/autoencoder.safetensors)")
    parser.add_argument("--autoencoder-steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (fixed, so that a rebuild gives the same autoencoder; default 1)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                        help="write only these splits (needs --autoencoder); their pixels are checked against "
                             "the existing manifest.jsonl, which is left as it is")  # fmt: skip
    parser.add_argument("--download-only", action="store_true", help="fetch the packages into the cache and stop")
    args = parser.parse_args(argv)
    partial = set(args.splits) != set(SPLITS)
    record = Path(args.record).resolve()
    if partial and not args.autoencoder:
        args.autoencoder = str(record / "autoencoder.safetensors")
        if not Path(args.autoencoder).exists():
            parser.error(f"--splits needs the autoencoder that made the full build's fakes: {args.autoencoder} is missing")

    import torch

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    output, cache = Path(args.output).resolve(), Path(args.cache).resolve()
    timings: dict[str, float] = {}
    started = time.perf_counter()

    archives = {name: fetch(package, cache / "downloads") for name, package in PACKAGES.items()}
    timings["download_s"] = time.perf_counter() - started
    if args.download_only:
        log(f"packages cached in {cache / 'downloads'}")
        return 0
    t = time.perf_counter()
    archives = {name: Archive(path) for name, path in archives.items()}
    originals = collect_originals(archives)
    log(f"{len(originals)} originals: " + ", ".join(
        f"{s} {sum(o.source == s for o in originals)}" for s in dict.fromkeys(o.source for o in originals)))  # fmt: skip
    crops = []  # (original, index, box, pixels, original size)
    for original in originals:
        image = decode(original.data)
        for index, (box, pixels) in enumerate(crop_original(image, args.seed, original.id)):
            crops.append((original, index, box, pixels, image.size))
    crop_counts = {o.id: sum(c[0] is o for c in crops) for o in originals}
    assign_splits(originals, crop_counts, args.seed)
    timings["crop_s"] = time.perf_counter() - t
    log(f"{len(crops)} crops in {timings['crop_s']:.0f}s")

    t = time.perf_counter()
    reals = [c for c in crops if c[0].label == 0]
    if args.autoencoder:
        autoencoder = load_autoencoder(Path(args.autoencoder))
        log(f"autoencoder loaded from {args.autoencoder}")
    else:
        train_reals = [c[3] for c in reals if c[0].split == "train"]
        log(f"training the autoencoder on {len(train_reals)} training real crops ({args.autoencoder_steps} steps)")
        autoencoder = train_autoencoder(train_reals, args.seed, args.autoencoder_steps)
    # Every real crop, in the full build's batches, even when only some splits are written: a
    # convolution's float round-off depends on the batch it runs in, and one level of difference
    # would make a partial build's pixels differ from the manifest's.
    reconstructions, psnrs = reconstruct(autoencoder, [c[3] for c in reals])
    wanted = [i for i, c in enumerate(reals) if c[0].split in args.splits]
    wanted_reals = [reals[i] for i in wanted]
    reconstructions, psnrs = [reconstructions[i] for i in wanted], [psnrs[i] for i in wanted]
    timings["autoencoder_s"] = time.perf_counter() - t
    log(f"autoencoder fakes: PSNR {np.mean(psnrs):.1f} dB mean ({min(psnrs):.1f}..{max(psnrs):.1f}) in {timings['autoencoder_s']:.0f}s")

    t = time.perf_counter()
    for split in args.splits:
        shutil.rmtree(output / split, ignore_errors=True)
    output.mkdir(parents=True, exist_ok=True)
    rows = []

    def add(pixels, split, label, source, name, original: Original, box, size, **extra):
        rel = f"{split}/{'fake' if label else 'real'}/{name}.png"
        digest = save_png(pixels, output / rel)
        rows.append({
            "path": rel, "split": split, "label": label, "source": source, "package": original.package,
            "version": original.version, "original": original.member, "licence": original.licence,
            **({"copyright": original.copyright} if original.copyright else {}),
            **({"attribution": original.attribution} if original.attribution else {}),
            **({"note": original.note} if original.note else {}),
            "original_size": list(size), "crop_box": list(box), "pixels_sha256": digest, **extra,
        })  # fmt: skip

    for original, index, box, pixels, size in crops:
        if original.split in args.splits:
            add(pixels, original.split, original.label, original.source, f"{original.id}-{index}", original, box, size)
    for (original, index, box, _, size), pixels, psnr in zip(wanted_reals, reconstructions, psnrs):
        add(pixels, original.split, 1, "autoencoder", f"autoencoder-{original.id}-{index}", original, box, size,
            reconstruction_of=f"{original.split}/real/{original.id}-{index}.png", psnr_db=round(psnr, 2))  # fmt: skip
    rows.sort(key=lambda r: r["path"])

    for split in args.splits:
        part = [r for r in rows if r["split"] == split]
        if split == "train":
            write_paired_json(output / "train.json", part, args.seed)
        else:
            write_json(output / f"{split}.json", part)
        if split != "train":
            for source in ("comfyui", "autoencoder"):
                write_json(output / f"{split}_{source}.json", [r for r in part if r["label"] == 0 or r["source"] == source])
    timings["write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started
    if partial:
        return check_against_manifest(output, record, rows, timings["total_s"])

    record.mkdir(parents=True, exist_ok=True)
    with open(record / "manifest.jsonl", "w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_notice(record, rows)
    if args.examples:
        write_examples(output, rows, Path(args.examples).resolve())
    if not args.autoencoder:
        save_autoencoder(autoencoder, record / "autoencoder.safetensors",
                         {"seed": args.seed, "steps": args.autoencoder_steps, "trained_on": "train split real crops"})  # fmt: skip
    counts: dict = {}
    for row in rows:
        key = f"{row['split']}/{'fake' if row['label'] else 'real'}/{row['source']}"
        counts[key] = counts.get(key, 0) + 1
    info = {
        "seed": args.seed,
        "size": SIZE,
        "packages": {name: asdict(p) for name, p in PACKAGES.items()},
        "autoencoder": args.autoencoder or f"trained here ({args.autoencoder_steps} steps, {args.threads} thread(s))",
        "autoencoder_psnr_db_mean": round(float(np.mean(psnrs)), 2),
        "counts": dict(sorted(counts.items())),
        "images": len(rows),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "pillow": Image.__version__, "torch": torch.__version__},
    }
    (record / "build_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    for key, n in info["counts"].items():
        log(f"  {key:<32} {n}")
    log(f"{len(rows)} images written to {output} in {timings['total_s']:.0f}s")
    return 0


def check_against_manifest(output: Path, record: Path, rows: list[dict], seconds: float) -> int:
    """After a partial build: every image written must be in manifest.jsonl with the same pixels."""
    manifest_path = record / "manifest.jsonl"
    if not manifest_path.exists():
        log(f"{len(rows)} images written in {seconds:.0f}s (no manifest.jsonl to check them against)")
        return 0
    manifest = {}
    for line in manifest_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            manifest[row["path"]] = row
    wanted = {p for p, r in manifest.items() if r["split"] in {r2["split"] for r2 in rows}}
    missing = sorted(wanted - {r["path"] for r in rows})
    extra = sorted(r["path"] for r in rows if r["path"] not in manifest)
    differ = sorted(r["path"] for r in rows if r["path"] in manifest and manifest[r["path"]]["pixels_sha256"] != r["pixels_sha256"])
    log(f"{len(rows)} images written to {output} in {seconds:.0f}s")
    if missing or extra:
        log(f"ERROR: the rebuilt images differ from manifest.jsonl: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(extra)} unexpected (e.g. {extra[:2]})")  # fmt: skip
        return 1
    if differ:
        log(f"warning: {len(differ)} of {len(rows)} images have other pixels than the manifest records (e.g. {differ[0]}): "
            "image decoders or the CPU's float arithmetic differ from the machine that built it; metrics may move slightly")  # fmt: skip
    else:
        log("every image matches manifest.jsonl pixel for pixel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
