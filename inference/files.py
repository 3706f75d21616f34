"""Finding image files in folders: the one walker of every command (detect, evaluate, train, probe,
attribute), so that all of them take the same files from the same folder.

    image_files(folder)   -> paths of the images below `folder` (recursive, in a stable order)
    walk_images(folder)   -> (folder, sub-folders, image files) per folder visited, top-down
    is_image_name(name)   -> the name has an image extension, in any case (`.JPEG`, `.Png`)
    is_os_junk(name)      -> a file an operating system wrote beside the pictures (`Thumbs.db`, `._x.jpg`)
    is_skipped(name)      -> a walk never takes this file or folder (OS junk, hidden entries)

What a walk skips: hidden entries (names starting with "."; this covers `.git`, `.DS_Store` and
macOS's `._photo.jpg` resource forks) and the other files operating systems leave beside pictures
(`Thumbs.db`, `desktop.ini`, ...), plus every file without an image extension. A file named
explicitly on a command line is not walked: the commands take it as given.

Order: a folder's images (sorted by name) come before its sub-folders' (sorted by name), as
`os.walk` visits them. Links to folders are followed, each real folder once (a link loop ends).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Extensions searched for when a folder is given (a file named explicitly is tried whatever its name).
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".bmp", ".dib", ".gif",
        ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".j2k", ".avif",
        ".heic", ".heif",
    }
)  # fmt: skip

# Files that operating systems and file managers write beside pictures (compared lower-case), and
# macOS's AppleDouble prefix ("._photo.jpg" holds photo.jpg's resource fork, not a picture).
OS_JUNK_FILES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r"})
APPLE_DOUBLE_PREFIX = "._"


def is_image_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_os_junk(name: str) -> bool:
    """A file an operating system or file manager wrote (`Thumbs.db`, `._photo.jpg`, ...), whatever
    its extension: never an image."""
    return name.lower() in OS_JUNK_FILES or name.startswith(APPLE_DOUBLE_PREFIX)


def is_skipped(name: str) -> bool:
    """What a folder walk never takes: OS junk and hidden entries (`.git`, `.cache`, ...)."""
    return name.startswith(".") or is_os_junk(name)


def walk_images(root: str | os.PathLike) -> Iterator[tuple[str, list[str], list[str]]]:
    """`(folder, sub-folders, image files)` for `root` and every folder below it that a walk enters
    (see the module docstring); the paths are joined onto `root` as given. As with `os.walk`,
    removing names from the sub-folder list keeps the walk out of them."""
    visited: set[str] = set()
    for folder, dirnames, filenames in os.walk(os.fspath(root), followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a symbolic link loop, or two links to one folder
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if not is_skipped(d))
        images = [os.path.join(folder, name) for name in sorted(filenames) if is_image_name(name) and not is_skipped(name)]
        yield folder, dirnames, images


def image_files(root: str | os.PathLike) -> list[str]:
    """Every image file below `root` (see the module docstring)."""
    return [path for _, _, images in walk_images(root) for path in images]


__all__ = ["IMAGE_EXTENSIONS", "OS_JUNK_FILES", "image_files", "is_image_name", "is_os_junk", "is_skipped", "walk_images"]
