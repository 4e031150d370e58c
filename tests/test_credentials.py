"""deepfake.media.credentials on media signed here, with certificates made here (nothing committed or
downloaded): valid, generative-AI declared or not, tampered, untrusted signer, absent, unreadable."""

from __future__ import annotations

import datetime
import errno
import io
import json
from dataclasses import dataclass
from pathlib import Path

import av
import c2pa
import cv2
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deepfake.core.errors import ParamsError
from deepfake.media.credentials import (
    GENERATIVE_AI_SOURCE_TYPES,
    INVALID,
    NONE,
    STATES,
    UNREADABLE,
    UNTRUSTED,
    VALID,
    describe,
    read_credentials,
)

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI_GENERATED = IPTC + "trainedAlgorithmicMedia"
CAPTURED = IPTC + "digitalCapture"
GENERATOR = {"name": "deepfake-tests", "version": "1.2.3"}
CERT_LIFETIME = datetime.timedelta(days=30)
CLOCK_SKEW = datetime.timedelta(minutes=5)  # not_before in the past, so the leaf is valid at once
IMAGE_SIZE = 32
VIDEO_SIZE = 64
VIDEO_FRAMES = 16
VIDEO_FPS = 8

# media kind -> (file suffix, MIME type the Builder signs it as)
KINDS = {
    "jpeg": (".jpg", "image/jpeg"),
    "png": (".png", "image/png"),
    # Both MP4 encoders sign and validate (c2pa-rs hashes BMFF boxes, the codec is irrelevant to it):
    # H.264 (libx264, what DFDC videos use) and FFmpeg's own MPEG-4 Part 2 (present in every build).
    "mp4-h264": (".mp4", "video/mp4"),
    "mp4-mpeg4": (".mp4", "video/mp4"),
}
# where the media data starts in each kind (so tampering hits the hashed pixels, not the container)
MEDIA_DATA = {"jpeg": b"\xff\xda", "png": b"IDAT", "mp4-h264": b"mdat", "mp4-mpeg4": b"mdat"}
TAMPER_OFFSET = 16  # bytes past the marker: inside the scan / chunk / box payload
HASH_MISMATCH = {"jpeg": "assertion.dataHash.mismatch", "png": "assertion.dataHash.mismatch"}
BMFF_HASH_MISMATCH = "assertion.bmffHash.mismatch"
FLIP_STRIDE = 97  # bytes between the flips spread over a manifest store (a prime: no box alignment)


@dataclass(frozen=True)
class Pki:
    """A root CA and a leaf signing certificate it issued, PEM."""

    ca_pem: str
    chain_pem: str  # leaf first, then the root: what the signer embeds
    key_pem: str
    organisation: str
    common_name: str


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )


def _key_usage(*, signing: bool) -> x509.KeyUsage:
    """digitalSignature for a leaf, keyCertSign/cRLSign for a CA (C2PA's certificate profile)."""
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signing,
        crl_sign=not signing,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _make_pki(organisation: str) -> Pki:
    """ECDSA P-256 root + leaf. The leaf follows C2PA's profile as c2pa-rs checks it: v3, not a CA, a
    critical key usage with digitalSignature, an EKU from the default allowed list (emailProtection)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{organisation} Root CA", f"{organisation} CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(signing=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    common_name, leaf_org = f"{organisation} Signer", f"{organisation} Lab"
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, leaf_org))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signing=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return Pki(_pem(ca), _pem(leaf) + _pem(ca), key_pem, leaf_org, common_name)


@pytest.fixture(scope="module")
def pki() -> Pki:
    """The chain passed as trust anchors."""
    return _make_pki("Deepfake Test")


@pytest.fixture(scope="module")
def other_pki() -> Pki:
    """An unrelated chain, never in the trust anchors."""
    return _make_pki("Other Test")


def _image(suffix: str) -> bytes:
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    image[IMAGE_SIZE // 4 : 3 * IMAGE_SIZE // 4] = (0, 128, 255)
    ok, encoded = cv2.imencode(suffix, image)
    assert ok
    return encoded.tobytes()


def _video(codec: str) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=VIDEO_FPS)
        stream.width = stream.height = VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        for index in range(VIDEO_FRAMES):
            frame = np.full((VIDEO_SIZE, VIDEO_SIZE, 3), index * 255 // VIDEO_FRAMES, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def unsigned() -> dict[str, bytes]:
    """Each kind's media, without credentials."""
    return {
        "jpeg": _image(".jpg"),
        "png": _image(".png"),
        "mp4-h264": _video("libx264"),
        "mp4-mpeg4": _video("mpeg4"),
    }


def _sign(
    data: bytes,
    kind: str,
    pki: Pki,
    source_type: str,
    *,
    remote_url: str | None = None,
    extra_assertions: tuple[dict[str, object], ...] = (),
) -> bytes:
    """``data`` with a manifest declaring ``source_type`` on its c2pa.created action (and
    ``extra_assertions``), signed ES256; with ``remote_url``, the manifest is not embedded, only a
    reference to that URL."""
    manifest = {
        "claim_generator_info": [GENERATOR],
        "title": f"fixture{KINDS[kind][0]}",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": source_type}]},
            },
            *extra_assertions,
        ],
    }
    # No thumbnail (not needed, and not made for video); no verify-after-sign: the library's default
    # trust list is empty, so it would call every test certificate untrusted.
    settings = {"builder": {"thumbnail": {"enabled": False}}, "verify": {"verify_after_sign": False}}
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, pki.chain_pem.encode(), pki.key_pem.encode(), None)
    signed = io.BytesIO()
    with (
        c2pa.Context.from_dict(settings) as context,
        c2pa.Signer.from_info(info) as signer,
        c2pa.Builder(manifest, context=context) as builder,
    ):
        if remote_url is not None:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        builder.sign(signer, KINDS[kind][1], io.BytesIO(data), signed)
    return signed.getvalue()


def _write(tmp_path: Path, kind: str, data: bytes) -> Path:
    path = tmp_path / f"media{KINDS[kind][0]}"
    path.write_bytes(data)
    return path


def _tampered(data: bytes, kind: str) -> bytes:
    """``data`` with one byte of its media payload flipped."""
    at = data.rindex(MEDIA_DATA[kind]) + TAMPER_OFFSET
    changed = bytearray(data)
    changed[at] ^= 0xFF
    return bytes(changed)


def _assert_serialisable(result: dict[str, object]) -> None:
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("source_type", [AI_GENERATED, CAPTURED])
def test_valid_signer_in_trust_anchors(tmp_path, pki, unsigned, kind, source_type):
    path = _write(tmp_path, kind, _sign(unsigned[kind], kind, pki, source_type))
    result = read_credentials(path, trust_anchors=pki.ca_pem)
    assert result["state"] == VALID
    assert result["reason"] is None
    assert result["trusted"] is True
    assert result["signer"] == pki.organisation  # the library's signature_info.issuer: the leaf's O
    assert result["signer_common_name"] == pki.common_name
    assert result["claim_generator"] == "deepfake-tests/1.2.3"
    assert result["digital_source_type"] == [source_type]
    assert result["generative_ai"] is (source_type == AI_GENERATED)
    assert result["codes"] == []
    _assert_serialisable(result)
    line = describe(result)
    assert line.startswith(f"valid credentials signed by {pki.organisation} (generator deepfake-tests/1.2.3)")
    assert line.endswith("declares generative AI" if source_type == AI_GENERATED else "no generative-AI declaration")


def test_iptc_metadata_assertion_declares_generative_ai(tmp_path, pki, unsigned):
    # a captured photo edited with generative AI, declared in the IPTC metadata assertion (C2PA 1.x
    # style) with the https spelling of the IPTC namespace
    edited = "https://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
    iptc = {
        "label": "stds.iptc.photo-metadata",
        "data": {
            "@context": {"Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"},
            "Iptc4xmpExt:DigitalSourceType": edited,
        },
    }
    signed = _sign(unsigned["jpeg"], "jpeg", pki, CAPTURED, extra_assertions=(iptc,))
    result = read_credentials(_write(tmp_path, "jpeg", signed), trust_anchors=pki.ca_pem)
    assert result["state"] == VALID
    assert result["digital_source_type"] == [CAPTURED, edited]
    assert result["generative_ai"] is True


@pytest.mark.parametrize("kind", ["jpeg", "mp4-h264"])
def test_without_trust_anchors_trust_is_not_evaluated(tmp_path, pki, unsigned, kind):
    # the library says signingCredential.untrusted (nothing to chain to) but validation_state "Valid"
    path = _write(tmp_path, kind, _sign(unsigned[kind], kind, pki, AI_GENERATED))
    result = read_credentials(path)
    assert result["state"] == VALID
    assert result["trusted"] is None
    assert result["codes"] == ["signingCredential.untrusted"]
    assert result["generative_ai"] is True
    assert "signer not checked (no trust list)" in describe(result)


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_media_is_invalid(tmp_path, pki, unsigned, kind):
    signed = _sign(unsigned[kind], kind, pki, AI_GENERATED)
    path = _write(tmp_path, kind, _tampered(signed, kind))
    result = read_credentials(path, trust_anchors=pki.ca_pem)
    mismatch = HASH_MISMATCH.get(kind, BMFF_HASH_MISMATCH)
    assert result["state"] == INVALID
    assert result["codes"] == [mismatch]
    assert result["reason"].startswith(f"{mismatch}: ")
    # what the failed manifest claims is still reported, and the signer itself was trusted
    assert result["trusted"] is True
    assert result["signer"] == pki.organisation
    assert result["generative_ai"] is True
    assert describe(result).startswith(f"INVALID credentials: {mismatch}: ")
    _assert_serialisable(result)


@pytest.mark.parametrize("kind", KINDS)
def test_signer_outside_trust_anchors_is_untrusted(tmp_path, pki, other_pki, unsigned, kind):
    path = _write(tmp_path, kind, _sign(unsigned[kind], kind, other_pki, CAPTURED))
    result = read_credentials(path, trust_anchors=pki.ca_pem)
    assert result["state"] == UNTRUSTED
    assert result["trusted"] is False
    assert result["codes"] == ["signingCredential.untrusted"]
    assert result["reason"] == "signingCredential.untrusted: signing certificate untrusted"
    assert result["signer"] == other_pki.organisation
    assert result["generative_ai"] is False
    assert describe(result).startswith(f"UNTRUSTED credentials: signed by {other_pki.organisation}")


@pytest.mark.parametrize("kind", KINDS)
def test_unsigned_media_has_no_credentials(tmp_path, pki, unsigned, kind):
    result = read_credentials(_write(tmp_path, kind, unsigned[kind]), trust_anchors=pki.ca_pem)
    assert result == {
        "state": NONE,
        "reason": None,
        "trusted": None,
        "signer": None,
        "signer_common_name": None,
        "claim_generator": None,
        "generative_ai": None,
        "digital_source_type": None,
        "codes": [],
    }
    assert describe(result) == "no content credentials"


@pytest.mark.parametrize(
    "content, words",
    [
        (b"not a video at all\n" * 8, "invalid BMFF structure"),  # the library parsed it as the suffix says
        (b"", "failed to fill whole buffer"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00\xff\xff", "failed to fill whole buffer"),  # a cut header
    ],
)
def test_garbage_with_a_video_suffix_is_unreadable(tmp_path, pki, content, words):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    result = read_credentials(path, trust_anchors=pki.ca_pem)
    assert result["state"] == UNREADABLE
    assert words in result["reason"]
    assert result["generative_ai"] is None
    assert result["codes"] == []
    assert describe(result) == f"unreadable content credentials: {result['reason']}"


@pytest.mark.parametrize("name", ["notes.txt", "no_suffix"])
def test_unsupported_format_is_unreadable(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"plain text, no media here\n")
    result = read_credentials(path)
    assert result["state"] == UNREADABLE
    assert "unsupported" in result["reason"]


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_signed_file_is_unreadable(tmp_path, pki, unsigned, kind):
    signed = _sign(unsigned[kind], kind, pki, AI_GENERATED)
    result = read_credentials(_write(tmp_path, kind, signed[: len(signed) // 2]), trust_anchors=pki.ca_pem)
    assert result["state"] == UNREADABLE
    assert "could not be parsed" in result["reason"]
    assert result["signer"] is None


def test_corrupted_manifest_store_never_raises(tmp_path, pki, unsigned):
    signed = _sign(unsigned["jpeg"], "jpeg", pki, AI_GENERATED)
    start = signed.index(b"jumb")
    seen = set()
    for offset in range(0, len(signed) - start, FLIP_STRIDE):
        changed = bytearray(signed)
        changed[start + offset] ^= 0xFF
        result = read_credentials(_write(tmp_path, "jpeg", bytes(changed)), trust_anchors=pki.ca_pem)
        # VALID too: the signature box carries unsigned padding (reserved space), by design not covered
        assert result["state"] in STATES
        assert (result["reason"] is None) == (result["state"] in (NONE, VALID))
        seen.add(result["state"])
    assert UNREADABLE in seen  # a malformed store is refused, not an exception


def test_remote_manifest_is_never_fetched(tmp_path, pki, unsigned):
    url = "http://127.0.0.1:9/manifest.c2pa"  # port 9 (discard): nothing would answer anyway
    signed = _sign(unsigned["jpeg"], "jpeg", pki, CAPTURED, remote_url=url)
    result = read_credentials(_write(tmp_path, "jpeg", signed), trust_anchors=pki.ca_pem)
    assert result["state"] == UNREADABLE
    assert url in result["reason"]  # the library's "must fetch remote manifests from url ..."


def test_missing_file_and_folder_raise(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_credentials(tmp_path / "missing.mp4")
    with pytest.raises(IsADirectoryError):
        read_credentials(tmp_path)


class _FailingFile(io.BufferedReader):
    """A file whose reads fail like a dying disk."""

    def readinto(self, buffer: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    def read(self, size: int | None = -1) -> bytes:
        raise OSError(errno.EIO, "Input/output error")


def test_read_error_raises_not_unreadable(tmp_path, monkeypatch, unsigned):
    path = _write(tmp_path, "mp4-h264", unsigned["mp4-h264"])
    content, real_open = path.read_bytes(), Path.open

    def failing_open(self: Path, *args: object, **kwargs: object) -> object:
        return _FailingFile(io.BytesIO(content)) if self == path else real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", failing_open)
    with pytest.raises(OSError) as raised:
        read_credentials(path)
    assert raised.value.errno == errno.EIO
    # it went through the library (which saw only a failed read) and came back as the OSError itself
    assert isinstance(raised.value.__cause__, c2pa.C2paError)


@pytest.mark.parametrize("anchors", ["", "hello", "-----BEGIN CERTIFICATE-----\nZZZZ\n-----END CERTIFICATE-----\n"])
def test_malformed_trust_anchors_raise(tmp_path, unsigned, anchors):
    path = _write(tmp_path, "jpeg", unsigned["jpeg"])
    with pytest.raises(ValueError, match="trust_anchors"):
        read_credentials(path, trust_anchors=anchors)


def test_vocabulary():
    assert STATES == (NONE, VALID, UNTRUSTED, INVALID, UNREADABLE)
    assert AI_GENERATED in GENERATIVE_AI_SOURCE_TYPES
    assert IPTC + "compositeWithTrainedAlgorithmicMedia" in GENERATIVE_AI_SOURCE_TYPES
    assert IPTC + "algorithmicMedia" not in GENERATIVE_AI_SOURCE_TYPES  # not trained on samples: not gen-AI
    assert CAPTURED not in GENERATIVE_AI_SOURCE_TYPES


def test_predict_records_the_credentials_beside_the_verdict_never_in_it(tmp_path, pki, unsigned):
    """``deepfake predict`` (and the service, which prepares uploads the same way) reads each file's credentials
    with the trust anchors of ``predict.trust_anchors``: a signed AI-declared clip says so in its record, with
    no score made from it (this clip shows no face: no probability at all), and an unsigned one says none."""
    from deepfake.apps import predict as infer
    from deepfake.media.face_input import FaceInput
    from tests.conftest import as_params, tiny_params

    anchors = tmp_path / "anchors.pem"
    anchors.write_text(pki.ca_pem)
    raw = tiny_params(tmp_path, predict__workers=0)
    raw["predict"]["trust_anchors"] = str(anchors)  # an optional key: absent from params.yaml
    config = infer.PredictConfig.from_params(as_params(raw))
    assert config.credentials and config.trust_anchors == pki.ca_pem
    signed = _write(tmp_path, "mp4-h264", _sign(unsigned["mp4-h264"], "mp4-h264", pki, AI_GENERATED))
    prepared = infer.prepare_video(signed, config, FaceInput(32, 0.3333))
    credentials = prepared.record["credentials"]
    assert credentials["state"] == VALID and credentials["trusted"] is True and credentials["generative_ai"] is True
    assert "declares generative AI" in credentials["summary"]
    assert prepared.record["probability"] is None and not len(prepared.crops)  # the credentials made no score
    plain = tmp_path / "plain.mp4"
    plain.write_bytes(unsigned["mp4-h264"])
    record = infer.prepare_video(plain, config, FaceInput(32, 0.3333)).record
    assert record["credentials"]["state"] == NONE and record["credentials"]["summary"] == "no content credentials"
    missing = tmp_path / "no-such.pem"
    raw["predict"]["trust_anchors"] = str(missing)
    with pytest.raises(ParamsError, match=r"predict\.trust_anchors: cannot read"):
        infer.PredictConfig.from_params(as_params(raw))
    off = infer.PredictConfig.from_params(as_params(tiny_params(tmp_path, predict__credentials=False)))
    assert infer.prepare_video(plain, off, FaceInput(32, 0.3333)).record["credentials"] is None
