"""Sample field photos made on the spot (no download, no licence question), each with its true species.

Every photo is a small JPEG (288x216) of a procedurally drawn leaf whose shape, lobes, serration, veins and colour
say its species (``localrun.leaves``), with EXIF capture time, GPS and camera, drawn from a per-photo seed so that
no two photos share bytes (intake dedupes by content). A few are HEIC, a few carry an EXIF rotation, some have a
sidecar, one folder has a ``_folder.json``; a few are exact duplicates of another photo under a new name, and a few
are broken on purpose (zero bytes, not an image, a truncated JPEG) to show quarantine. The generator records the
truth of each photo by its content hash, which is the photo id intake gives it (docs/contracts.md, dedupe rule).

:func:`from_folder` builds the same kind of set from a labeled folder instead (one sub-folder per species): its
photos are uploaded as they are, and the sub-folder names are the truth.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pillow_heif
from PIL import Image

from localrun.leaves import archetype, draw_leaf

pillow_heif.register_heif_opener()

WIDTH, HEIGHT = 288, 216
SITES = ("S01-beech-wood", "S02-riverside", "S03-upland-pine")
# The EXIF tags intake reads (fieldlabel.intake.exif); Pillow writes them through Image.Exif.
_ORIENTATION, _MAKE, _MODEL, _EXIF_IFD, _GPS_IFD, _DATETIME_ORIGINAL = 0x0112, 0x010F, 0x0110, 0x8769, 0x8825, 0x9003

# How each broken file is made, and the quarantine reason intake must give it (fieldlabel.intake.media).
BROKEN_KINDS: dict[str, str] = {"empty": "empty", "text": "not_an_image", "truncated": "undecodable"}


@dataclass(frozen=True)
class SamplePhoto:
    """One file of the sample folder."""

    rel: str  # path under the sample folder, POSIX
    data: bytes
    species: str | None  # true species; None for broken files
    kind: str  # jpeg, heic, rotated, folder (as found in a labeled folder), duplicate, or a BROKEN_KINDS key

    @property
    def photo_id(self) -> str:
        """The id intake gives these bytes in ``content`` dedupe mode."""
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


@dataclass
class SampleSet:
    """The generated files, sidecars and the truth the simulated taxonomists answer from."""

    photos: list[SamplePhoto]
    sidecars: dict[str, bytes] = field(default_factory=dict)  # rel -> JSON bytes

    @property
    def truth(self) -> dict[str, str]:
        """``photo_id -> species`` of every decodable photo (duplicates map to the same id)."""
        return {p.photo_id: p.species for p in self.photos if p.species is not None}

    @property
    def expected_quarantine(self) -> Counter[str]:
        """Quarantine reason -> number of files that should get it."""
        return Counter(BROKEN_KINDS[p.kind] for p in self.photos if p.kind in BROKEN_KINDS)

    @property
    def duplicates(self) -> int:
        """Files whose bytes repeat an earlier file's."""
        return sum(1 for p in self.photos if p.kind == "duplicate")

    def files(self) -> dict[str, bytes]:
        """Every file to upload (photos and sidecars), by relative path; sidecars first so intake sees them first."""
        out = dict(self.sidecars)
        out.update({p.rel: p.data for p in self.photos})
        return out

    def write(self, folder: Path) -> None:
        """Write the files under ``folder`` (the folder the CLI would upload)."""
        for rel, data in self.files().items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def _exif(rng: random.Random, taken: datetime, site: int, orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[_MAKE], exif[_MODEL] = rng.choice((("OM Digital", "TG-7"), ("Canon", "EOS R6"), ("Apple", "iPhone 15")))
    if orientation != 1:
        exif[_ORIENTATION] = orientation
    exif.get_ifd(_EXIF_IFD)[_DATETIME_ORIGINAL] = taken.strftime("%Y:%m:%d %H:%M:%S")
    lat, lon = 51.0 + site * 0.7 + rng.random() * 0.01, 9.0 + site * 0.5 + rng.random() * 0.01
    gps: Any = exif.get_ifd(_GPS_IFD)  # Pillow types IFD values as int; GPS refs are text
    gps[1], gps[3] = "N", "E"
    gps[2] = (float(int(lat)), float(int(lat * 60 % 60)), round(lat * 3600 % 60, 2))
    gps[4] = (float(int(lon)), float(int(lon * 60 % 60)), round(lon * 3600 % 60, 2))
    return exif


def _encode(img: Image.Image, fmt: str, exif: Image.Exif, quality: int) -> bytes:
    out = io.BytesIO()
    if fmt == "HEIF":
        # x265's default preset spends most of a second per small photo; "ultrafast" makes the same kind of file.
        img.save(out, format="HEIF", quality=quality, exif=exif.tobytes(), enc_params={"preset": "ultrafast"})
    else:
        img.save(out, format="JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()


def _add_broken(photos: list[SamplePhoto], good: bytes) -> None:
    """One file of each :data:`BROKEN_KINDS` (``good`` is a decodable photo to truncate)."""
    photos.append(SamplePhoto("S02-riverside/IMG_EMPTY.jpg", b"", None, "empty"))
    photos.append(SamplePhoto("S02-riverside/notes-not-a-photo.jpg", b"field notes, typed on the phone\n", None,
                              "text"))
    photos.append(SamplePhoto("S02-riverside/IMG_CUT.jpg", good[: len(good) * 4 // 5], None, "truncated"))


def generate(
    count: int,
    species: list[str],
    *,
    seed: int = 7,
    heic: int = 3,
    rotated: int = 5,
    duplicates: int = 3,
    broken: bool = True,
) -> SampleSet:
    """Make ``count`` decodable photos (plus duplicates and broken files) spread over :data:`SITES`.

    Args:
        count: distinct decodable photos.
        species: taxonomy labels the true species are drawn from (uniformly).
        seed: makes the set reproducible.
        heic, rotated: how many of the ``count`` photos are HEIC, or JPEG with EXIF orientation 6.
        duplicates: extra files repeating an earlier photo's bytes under another name.
        broken: add one file of each :data:`BROKEN_KINDS`.
    """
    if count < 1 or not species:
        raise ValueError("need at least one photo and one species")
    rng = random.Random(seed)
    archetypes = [archetype(label, i) for i, label in enumerate(species)]
    start = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
    photos: list[SamplePhoto] = []
    for i in range(count):
        site = i % len(SITES)
        sp = rng.randrange(len(species))
        taken = start + timedelta(minutes=7 * i)
        if i < heic:
            kind, fmt, orientation, ext = "heic", "HEIF", 1, "HEIC"
        elif i < heic + rotated:
            kind, fmt, orientation, ext = "rotated", "JPEG", 6, "jpg"
        else:
            kind, fmt, orientation, ext = "jpeg", "JPEG", 1, "jpg"
        # Each photo draws from its own generator, so a photo does not change when another one's drawing does.
        photo_rng = random.Random(rng.getrandbits(64))
        img = draw_leaf(archetypes[sp], photo_rng, WIDTH, HEIGHT)
        quality = photo_rng.randint(55, 90)  # compression noise varies from camera to camera
        data = _encode(img, fmt, _exif(rng, taken, site, orientation), quality)
        photos.append(SamplePhoto(f"{SITES[site]}/IMG_{i:05d}.{ext}", data, species[sp], kind))
    for j in range(min(duplicates, count)):
        original = photos[rng.randrange(count)]
        folder = original.rel.split("/", 1)[0]
        photos.append(SamplePhoto(f"{folder}/copy-of-{j}-{original.rel.rsplit('/', 1)[1]}", original.data,
                                  original.species, "duplicate"))
    if broken:
        _add_broken(photos, photos[-1].data)

    sidecars: dict[str, bytes] = {
        f"{SITES[0]}/_folder.json": json.dumps({"site_id": "S01", "collector": "Demo Field Team",
                                                "habitat": "mixed beech wood"}).encode(),
    }
    for p in photos[:count:50]:  # every 50th photo carries a per-photo sidecar
        stem = p.rel.rsplit(".", 1)[0]
        sidecars[f"{stem}.json"] = json.dumps({"notes": "sampled at breast height", "specimen_part": "habit",
                                               "suspected_species": p.species}).encode()
    return SampleSet(photos, sidecars)


# ------------------------------------------------------------------------------------------------ labeled folder

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".tif", ".tiff", ".gif", ".bmp"})
# A sub-folder with one of these names holds photos of no species in the list: its truth is the unknown label.
UNKNOWN_FOLDER_NAMES = frozenset({"other", "unknown", "not-a-tree"})
_NOT_LABEL = re.compile(r"[^a-z0-9]+")


class FolderError(ValueError):
    """A labeled folder the demo cannot use (the message says why)."""


@dataclass(frozen=True)
class FolderSpecies:
    """One sub-folder of a labeled folder: the taxonomy label made from its name, and how many photos it holds."""

    label: str
    name: str  # the sub-folder's name, shown as the scientific name
    photos: int


def species_label(name: str) -> str:
    """A taxonomy label (lowercase letters, digits and hyphens, <= 64 characters) from a sub-folder's name."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    label = _NOT_LABEL.sub("-", folded).strip("-")[:64].strip("-")
    if not label:
        raise FolderError(f"sub-folder {name!r}: its name has no letters or digits to make a species label from")
    return label


def from_folder(folder: Path, *, unknown_label: str, seed: int = 7, limit: int | None = None,
                duplicates: int = 3, broken: bool = True) -> tuple[SampleSet, list[FolderSpecies]]:
    """The photos of a labeled folder (one sub-folder per species), uploaded as they are, with their truth.

    The photos are shuffled with ``seed`` (a folder read in order would put one species in each batch) and renamed
    ``<site>/IMG_<n>.<ext>`` so that nothing in the upload path tells the species. A sub-folder named in
    :data:`UNKNOWN_FOLDER_NAMES` or like ``unknown_label`` holds photos of no listed species; their truth is
    ``unknown_label``. Byte-identical files stay in (intake folds them): the first one's folder is the truth.

    Args:
        folder: the labeled folder.
        unknown_label: the taxonomy's "not a tree / cannot tell" label.
        seed: the shuffle.
        limit: take at most this many photos (after shuffling), e.g. for a quick run.
        duplicates, broken: as :func:`generate`, added to show dedupe and quarantine.

    Returns:
        The sample set and the species found (sorted by label; the unknown sub-folder is not among them).

    Raises:
        FolderError: no sub-folder with photos, fewer than two species, or two sub-folders with the same label.
    """
    if not folder.is_dir():
        raise FolderError(f"{folder}: not a folder")
    found: list[tuple[str, Path]] = []
    species: dict[str, FolderSpecies] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            continue
        is_unknown = sub.name.lower() in UNKNOWN_FOLDER_NAMES or species_label(sub.name) == unknown_label
        label = unknown_label if is_unknown else species_label(sub.name)
        if not is_unknown:
            if label in species:
                raise FolderError(f"sub-folders {species[label].name!r} and {sub.name!r} both make label {label!r}")
            species[label] = FolderSpecies(label, sub.name, len(files))
        found.extend((label, f) for f in files)
    if len(species) < 2:
        raise FolderError(f"{folder}: needs at least two sub-folders of photos (one per species), found "
                         f"{len(species)}")
    rng = random.Random(seed)
    rng.shuffle(found)
    if limit is not None:
        found = found[:limit]
    photos: list[SamplePhoto] = []
    first_label: dict[bytes, str] = {}
    for i, (label, path) in enumerate(found):
        data = path.read_bytes()
        digest = hashlib.sha256(data).digest()
        kind = "duplicate" if digest in first_label else "folder"
        truth = first_label.setdefault(digest, label)
        photos.append(SamplePhoto(f"{SITES[i % len(SITES)]}/IMG_{i:05d}{path.suffix.lower()}", data, truth, kind))
    count = len(photos)
    for j in range(min(duplicates, count)):
        original = photos[rng.randrange(count)]
        site, name = original.rel.split("/", 1)
        photos.append(SamplePhoto(f"{site}/copy-of-{j}-{name}", original.data, original.species, "duplicate"))
    if broken:
        # The truncated file is cut from a generated JPEG: a folder's own files may be of any format.
        leaf = draw_leaf(archetype("broken", 0), random.Random(seed), WIDTH, HEIGHT)
        _add_broken(photos, _encode(leaf, "JPEG", Image.Exif(), 80))
    return SampleSet(photos), sorted(species.values(), key=lambda s: s.label)
