"""Sample field photos made on the spot (no download, no licence question), each with its true species.

Every photo is a small JPEG (160x120) with EXIF capture time, GPS and camera, drawn from a per-photo seed so that
no two photos share bytes (intake dedupes by content). A few are HEIC, a few carry an EXIF rotation, some have a
sidecar, one folder has a ``_folder.json``; a few are exact duplicates of another photo under a new name, and a few
are broken on purpose (zero bytes, not an image, a truncated JPEG) to show quarantine. The generator records the
truth of each photo by its content hash, which is the photo id intake gives it (docs/contracts.md, dedupe rule).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pillow_heif
from PIL import Image, ImageDraw

pillow_heif.register_heif_opener()

WIDTH, HEIGHT = 160, 120
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
    kind: str  # jpeg, heic, rotated, duplicate, or a BROKEN_KINDS key

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


def _draw(rng: random.Random, species_index: int, n_species: int) -> Image.Image:
    """A crude tree: trunk and crown whose hue says the species (a taxonomist could tell; the demo never needs to)."""
    img = Image.new("RGB", (WIDTH, HEIGHT), (rng.randint(150, 200), rng.randint(190, 230), 255))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 95, WIDTH, HEIGHT), fill=(60 + rng.randint(0, 40), 110, 40))
    cx = rng.randint(50, 110)
    d.rectangle((cx - 5, 60, cx + 5, 100), fill=(90, 60, 30))
    hue = int(255 * species_index / max(n_species, 1))
    crown = (hue, 200 - hue // 2, (hue * 7) % 255)
    r = rng.randint(22, 38)
    d.ellipse((cx - r, 60 - r, cx + r, 60 + r // 2), fill=crown)
    for _ in range(12):  # per-photo speckle, so every photo has its own bytes
        x, y = rng.randrange(WIDTH), rng.randrange(HEIGHT)
        d.point((x, y), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return img


def _encode(img: Image.Image, fmt: str, exif: Image.Exif) -> bytes:
    out = io.BytesIO()
    if fmt == "HEIF":
        img.save(out, format="HEIF", quality=50, exif=exif.tobytes())
    else:
        img.save(out, format="JPEG", quality=70, exif=exif.tobytes())
    return out.getvalue()


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
        data = _encode(_draw(rng, sp, len(species)), fmt, _exif(rng, taken, site, orientation))
        photos.append(SamplePhoto(f"{SITES[site]}/IMG_{i:05d}.{ext}", data, species[sp], kind))
    for j in range(min(duplicates, count)):
        original = photos[rng.randrange(count)]
        folder = original.rel.split("/", 1)[0]
        photos.append(SamplePhoto(f"{folder}/copy-of-{j}-{original.rel.rsplit('/', 1)[1]}", original.data,
                                  original.species, "duplicate"))
    if broken:
        good = photos[-1].data
        photos.append(SamplePhoto("S02-riverside/IMG_EMPTY.jpg", b"", None, "empty"))
        photos.append(SamplePhoto("S02-riverside/notes-not-a-photo.jpg", b"field notes, typed on the phone\n", None,
                                  "text"))
        photos.append(SamplePhoto("S02-riverside/IMG_CUT.jpg", good[: len(good) * 4 // 5], None, "truncated"))

    sidecars: dict[str, bytes] = {
        f"{SITES[0]}/_folder.json": json.dumps({"site_id": "S01", "collector": "Demo Field Team",
                                                "habitat": "mixed beech wood"}).encode(),
    }
    for p in photos[:count:50]:  # every 50th photo carries a per-photo sidecar
        stem = p.rel.rsplit(".", 1)[0]
        sidecars[f"{stem}.json"] = json.dumps({"notes": "sampled at breast height", "specimen_part": "habit",
                                               "suspected_species": p.species}).encode()
    return SampleSet(photos, sidecars)
