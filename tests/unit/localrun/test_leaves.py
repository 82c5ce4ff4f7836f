"""The demo's generated leaf photos: deterministic, every family drawable, and learnable by species.

The learnability test embeds a few dozen generated leaves with the project's real embedder (the ONNX model intake
uses, ``fieldlabel.embedding``) and checks that a nearest-centroid head on those features names the species of
held-out leaves far above chance: what the engine in the demo relies on.
"""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from localrun.leaves import FAMILIES, KNOWN, archetype, draw_leaf, with_family
from localrun.samples import generate

DEV_SPECIES = list(KNOWN)  # the dev taxonomy's nine species (cdk.json)


def test_leaves_are_deterministic_and_differ_per_photo() -> None:
    a = archetype("quercus-robur", 0)
    first = np.asarray(draw_leaf(a, random.Random(5), 96, 72))
    again = np.asarray(draw_leaf(a, random.Random(5), 96, 72))
    other = np.asarray(draw_leaf(a, random.Random(6), 96, 72))
    assert first.shape == (72, 96, 3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_draws_a_leaf_that_covers_part_of_the_frame(family: str) -> None:
    # A leaf differs from its background: draw the same photo with the leaf and with the leaf made invisible
    # (the background's own colour range), and check that a real share of the pixels changed.
    a = with_family(archetype("sp-x", 3), family)
    img = np.asarray(draw_leaf(a, random.Random(11), 160, 120), dtype=np.float32)
    assert img.std() > 5  # not a flat image
    leafless = np.asarray(draw_leaf(a, random.Random(11), 160, 120, leaves=False), dtype=np.float32)
    changed = (np.abs(img - leafless).max(axis=2) > 25).mean()
    assert 0.02 < changed < 0.9


def test_derived_archetypes_differ_between_neighbouring_species() -> None:
    labels = [f"species-{i}" for i in range(24)]
    arch = [archetype(label, i) for i, label in enumerate(labels)]
    assert all(arch[i].family != arch[i + 1].family for i in range(len(arch) - 1))
    assert len({(a.family, a.hue) for a in arch}) == len(arch)
    assert archetype("species-3", 3) == arch[3]  # a pure function of the label and its place


@pytest.mark.slow
def test_a_linear_head_on_the_real_embeddings_learns_the_species() -> None:
    from fieldlabel.embedding import EMBEDDING_DIM, load_embedder

    # Given 6 photos per dev species (54), made by the demo's own generator (JPEG, per-photo variation); it draws
    # species at random, so it makes more and the first 6 of each are taken
    per_species = 6
    samples = generate(120, DEV_SPECIES, seed=21, heic=0, rotated=0, duplicates=0, broken=False)
    by_species: dict[str, list[Image.Image]] = {s: [] for s in DEV_SPECIES}
    for p in samples.photos:
        if len(by_species[p.species or ""]) < per_species:
            by_species[p.species or ""].append(Image.open(io.BytesIO(p.data)).convert("RGB"))
    assert all(len(v) == per_species for v in by_species.values())

    # When they are embedded by the real embedder and a nearest-centroid head is fitted on the first half of each
    # species' photos
    embedder = load_embedder()
    train_x, train_y, test_x, test_y = [], [], [], []
    for k, species in enumerate(DEV_SPECIES):
        photos = by_species[species]
        x = embedder.embed_images(photos)
        assert x.shape == (len(photos), EMBEDDING_DIM)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        half = len(photos) // 2
        train_x.append(x[:half])
        train_y += [k] * half
        test_x.append(x[half:])
        test_y += [k] * (len(photos) - half)
    xtr, xte = np.concatenate(train_x), np.concatenate(test_x)
    ytr, yte = np.array(train_y), np.array(test_y)
    centroids = np.stack([xtr[ytr == k].mean(axis=0) for k in range(len(DEV_SPECIES))])
    accuracy = float((np.argmax(xte @ centroids.T, axis=1) == yte).mean())

    # Then held-out leaves are named far above chance (1/9): the photos carry their species
    chance = 1 / len(DEV_SPECIES)
    assert accuracy >= max(0.6, 5 * chance), accuracy
