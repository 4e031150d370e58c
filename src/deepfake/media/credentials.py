"""Read a media file's C2PA content credentials (Content Authenticity Initiative's ``c2pa-python``).

A content credential is a signed manifest embedded in the file: who signed it, with what software, what
the producer declares about the media (e.g. "made with generative AI"), and hashes binding it to the
bytes. ``read_credentials`` validates it and returns one JSON-serialisable dict (keys below);
``describe`` turns that dict into one line a person can read.

States (``STATES``):

- ``"none"``: no C2PA manifest in the file. Most media carry none (platforms strip it), so this says
  nothing about authenticity.
- ``"valid"``: the signature and every hash check out, and, when ``trust_anchors`` are given, the signing
  certificate chains to one of them (``trusted: True``).
- ``"untrusted"``: it validates, but the signer does not chain to the given ``trust_anchors``
  (``trusted: False``); anyone can sign with a certificate of their own making.
- ``"invalid"``: the manifest fails validation (the media bytes changed after signing, a broken signature,
  a mismatching assertion...). ``reason`` names the library's failure codes.
- ``"unreadable"``: the file is not in a format the library reads, is truncated, or its manifest store is
  malformed, or the manifest is stored remotely (never fetched: see below).

Trust without a trust list: with ``trust_anchors=None`` no certificate authority is configured, so the
library cannot chain the signer to anything and always reports ``signingCredential.untrusted`` (its
``validation_state`` stays ``"Valid"``). Calling every such file "untrusted" would make the state
meaningless, so a file that validates is ``"valid"`` with ``trusted: None`` (trust not evaluated); the
library's ``signingCredential.untrusted`` code is kept in ``codes``, and ``describe`` says the signer was
not checked. A reviewer should read ``"valid"`` with ``trusted: None`` as "intact, signed by whoever the
certificate names, unverified identity". Pass ``trust_anchors`` (e.g. the C2PA trust list) to decide it.

Keys of the returned dict:

- ``state``: one of ``STATES``.
- ``reason``: ``None`` for "none" and "valid"; otherwise why (``"code: explanation; ..."`` from the
  library's failure entries, or the library's error message for "unreadable").
- ``trusted``: ``True``/``False`` whether the signer chains to ``trust_anchors``; ``None`` when no
  trust anchors were given or there is no readable manifest.
- ``signer``: the signing certificate's organisation as the library reports it (``signature_info.issuer``,
  the "issued by" of Content Credentials viewers), else its common name; ``None`` without a manifest.
- ``signer_common_name``: the signing certificate's common name, or ``None``.
- ``claim_generator``: the software that made the manifest, ``"name/version"``, or ``None``.
- ``generative_ai``: ``True`` when the active manifest declares a generative-AI IPTC digital source
  type (``GENERATIVE_AI_SOURCE_TYPES``), ``False`` when a manifest declares none, ``None`` without a
  manifest. For "invalid" these are what the (failed) manifest claims, not facts.
- ``digital_source_type``: the declared IPTC digital source type URIs (list, possibly empty), ``None``
  without a manifest.
- ``codes``: the failure codes the library reported (active manifest and ingredients), e.g.
  ``assertion.dataHash.mismatch``; empty when none.

Failures: bad input (no manifest, unsupported format, corrupted file or manifest) is a state, never an
exception. An ``OSError`` reading the file (missing, permission denied, I/O error) is raised, as is a
malformed ``trust_anchors`` (``ValueError``: the caller's configuration) and anything unexpected (a bug).

Bounded work: settings are per call (a ``c2pa.Context``, no process-global state, so threads and worker
processes with different trust lists do not interfere); remote manifests and OCSP are never fetched (no
network from a reader); the library reads the file through a stream (this module never loads it into
memory); the manifest store's JSON is refused above ``MAX_MANIFEST_JSON_CHARS``.

``c2pa`` (a 23 MB native library) is imported inside the functions that need it: worker processes import
this module and must start fast.
"""

from __future__ import annotations

import io
import json
import mimetypes
import re
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NONE = "none"
VALID = "valid"
UNTRUSTED = "untrusted"
INVALID = "invalid"
UNREADABLE = "unreadable"
STATES = (NONE, VALID, UNTRUSTED, INVALID, UNREADABLE)

IPTC_DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# The IPTC terms that mean generative AI made or changed the media (IPTC NewsCodes, 2024 definitions):
# trainedAlgorithmicMedia "created using generative AI" (a model trained on sampled content) and
# compositeWithTrainedAlgorithmicMedia "edited using generative AI" (e.g. inpainting). Not counted:
# algorithmicMedia ("created purely by an algorithm not based on any sampled training data", e.g.
# procedural graphics), algorithmicallyEnhanced (non-generative corrections), compositeSynthetic (CGI
# or other synthetic elements, not necessarily AI), dataDrivenMedia; they stay visible in
# ``digital_source_type``.
GENERATIVE_AI_SOURCE_TYPES = frozenset(
    IPTC_DIGITAL_SOURCE_TYPE + term for term in ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")
)
# Producers write the IPTC namespace with either scheme; compare on the term after it.
_IPTC_URI = re.compile(r"^https?://cv\.iptc\.org/newscodes/digitalsourcetype/([A-Za-z]+)$")

# A manifest store's JSON is kilobytes (thumbnails and other binary resources are not in it); one this
# large is hostile or broken, and parsing it would only cost memory.
MAX_MANIFEST_JSON_CHARS = 16 * 1024 * 1024

# c2pa's validation_state values (c2pa-rs ValidationState)
_LIB_TRUSTED = "Trusted"
_LIB_VALID = "Valid"
_LIB_INVALID = "Invalid"
_TRUSTED_CODE = "signingCredential.trusted"
# Assertions that carry a digital source type: the actions (C2PA 2.x: c2pa.actions.v2, 1.x: c2pa.actions)
# and the IPTC photo/video metadata assertion of C2PA 1.x.
_ACTIONS_LABEL = re.compile(r"^c2pa\.actions(\.v\d+)?$")
_IPTC_LABELS = ("stds.iptc", "stds.iptc.photo-metadata")
_IPTC_SOURCE_KEY = "Iptc4xmpExt:DigitalSourceType"


def read_credentials(path: Path, trust_anchors: str | None = None) -> dict[str, Any]:
    """Validate the C2PA content credentials of the media file at ``path`` (see the module docstring).

    ``trust_anchors``: PEM text of the certificate authorities whose signatures count as trusted (they
    replace the library's own list); ``None``: no trust list, trust is not evaluated.
    """
    import c2pa

    settings = _settings(trust_anchors)
    path = Path(path)
    # Opened here, not by the library: its own open turns a missing file into a C2paError, and an
    # OSError is the caller's or the machine's fault, not a property of the media.
    with path.open("rb") as raw, c2pa.Context.from_dict(settings) as context:
        stream = _RecordingStream(raw)
        try:
            reader = c2pa.Reader.try_create(_format_of(path), stream, context=context)
            if reader is None:  # the library's "no JUMBF data": the file carries no manifest
                return _result(NONE)
            with reader:
                store_json = reader.json()
        except c2pa.C2paError as err:
            if stream.error is not None:  # the library saw a failed read: report the OSError itself
                raise stream.error from err
            return _result(UNREADABLE, reason=_library_message(err))
    if len(store_json) > MAX_MANIFEST_JSON_CHARS:
        return _result(UNREADABLE, reason=f"manifest store too large ({len(store_json)} characters of JSON)")
    store = json.loads(store_json)
    if not isinstance(store, dict):
        raise TypeError(f"c2pa returned a manifest store that is not an object: {type(store).__name__}")
    return _from_store(store, trust_configured=trust_anchors is not None)


def describe(credentials: dict[str, Any]) -> str:
    """One line a person can read for a ``read_credentials`` result."""
    state = credentials["state"]
    if state == NONE:
        return "no content credentials"
    if state == UNREADABLE:
        return f"unreadable content credentials: {credentials['reason']}"
    who = credentials.get("signer") or "an unnamed signer"
    generator = credentials.get("claim_generator")
    signed = f"signed by {who}" + (f" (generator {generator})" if generator else "")
    if credentials.get("generative_ai"):
        claims = "; declares generative AI"
    elif credentials.get("generative_ai") is False:
        claims = "; no generative-AI declaration"
    else:
        claims = ""
    if state == INVALID:
        return f"INVALID credentials: {credentials['reason']} (claims to be {signed}{claims})"
    if state == UNTRUSTED:
        return f"UNTRUSTED credentials: {signed}, not issued by a trusted authority{claims}"
    if state == VALID and credentials.get("trusted") is None:
        return f"valid credentials {signed}, signer not checked (no trust list){claims}"
    if state == VALID:
        return f"valid credentials {signed}{claims}"
    raise ValueError(f"unknown credentials state {state!r}; expected one of {STATES}")


def _settings(trust_anchors: str | None) -> dict[str, Any]:
    """The per-call c2pa settings: validate on read, never touch the network, the caller's trust list."""
    settings: dict[str, Any] = {
        "verify": {
            "verify_after_reading": True,
            "verify_trust": True,
            # A reader must not fetch what a file points at: unbounded, and a way to make us call out.
            "remote_manifest_fetch": False,
            "ocsp_fetch": False,
        }
    }
    if trust_anchors is not None:
        _check_trust_anchors(trust_anchors)
        # trust_anchors replaces the library's list (user_anchors would add to it): exactly the caller's CAs
        settings["trust"] = {"trust_anchors": trust_anchors}
    return settings


def _check_trust_anchors(pem: str) -> None:
    """Refuse trust anchors that are not PEM certificates: the library silently skips a block it cannot
    decode, which would turn a configuration mistake into "untrusted" for every file."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as err:
        raise ValueError(f"trust_anchors is not PEM certificates: {err}") from err


def _format_of(path: Path) -> str | None:
    """The MIME type the suffix suggests (the library checks it against the bytes), or None to let the
    library detect the format."""
    return mimetypes.guess_type(path.name)[0]


def _library_message(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class _RecordingStream:
    """The file as the library reads it, keeping the first OSError: the library's stream callback turns
    any exception into a generic read error, and an OSError must reach the caller as itself."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self._raw = raw
        self.error: OSError | None = None

    def _recorded(self, err: OSError) -> OSError:
        if self.error is None:
            self.error = err
        return err

    def read(self, size: int = -1) -> bytes:
        try:
            return self._raw.read(size)
        except OSError as err:
            raise self._recorded(err) from None

    def readinto(self, buffer: Any) -> int | None:
        try:
            return self._raw.readinto(buffer)
        except OSError as err:
            raise self._recorded(err) from None

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._raw.seek(offset, whence)
        except OSError as err:
            raise self._recorded(err) from None

    def tell(self) -> int:
        try:
            return self._raw.tell()
        except OSError as err:
            raise self._recorded(err) from None

    def write(self, data: bytes) -> int:
        raise OSError("content credentials are read only")  # the reader never writes

    def flush(self) -> None:
        """Nothing to flush: the file is only read."""


def _result(state: str, *, reason: str | None = None) -> dict[str, Any]:
    """A result without a readable manifest."""
    return {
        "state": state,
        "reason": reason,
        "trusted": None,
        "signer": None,
        "signer_common_name": None,
        "claim_generator": None,
        "generative_ai": None,
        "digital_source_type": None,
        "codes": [],
    }


def _from_store(store: dict[str, Any], *, trust_configured: bool) -> dict[str, Any]:
    """The result for a manifest store the library read and validated."""
    manifests = store.get("manifests")
    manifest = manifests.get(store.get("active_manifest")) if isinstance(manifests, dict) else None
    if not isinstance(manifest, dict):
        return _result(UNREADABLE, reason="the manifest store has no active manifest")
    failures = _failures(store)
    codes = list(dict.fromkeys(entry["code"] for entry in failures))
    lib_state = store.get("validation_state")
    trusted: bool | None = None
    if trust_configured:
        trusted = lib_state == _LIB_TRUSTED or _TRUSTED_CODE in _success_codes(store)
    if lib_state == _LIB_INVALID:
        state = INVALID
    elif lib_state in (_LIB_TRUSTED, _LIB_VALID):
        state = UNTRUSTED if trust_configured and not trusted else VALID
    else:  # the library always sets it when verifying on read: another value is a version we do not know
        raise ValueError(f"c2pa reported an unknown validation_state {lib_state!r}")
    reason = None
    if state in (INVALID, UNTRUSTED):
        reason = "; ".join(_entry_text(entry) for entry in failures) or f"c2pa validation_state {lib_state}"
    sources = _digital_source_types(manifest)
    signature = manifest.get("signature_info")
    signature = signature if isinstance(signature, dict) else {}
    return {
        "state": state,
        "reason": reason,
        "trusted": trusted,
        "signer": _text(signature.get("issuer")) or _text(signature.get("common_name")),
        "signer_common_name": _text(signature.get("common_name")),
        "claim_generator": _claim_generator(manifest),
        "generative_ai": any(uri in GENERATIVE_AI_SOURCE_TYPES for uri in map(_normalised_iptc, sources)),
        "digital_source_type": sources,
        "codes": codes,
    }


def _failures(store: dict[str, Any]) -> list[dict[str, Any]]:
    """The failure entries (code, explanation) for the active manifest and its ingredients; the older
    ``validation_status`` list when the library gives no ``validation_results``."""
    results = store.get("validation_results")
    if not isinstance(results, dict):
        return _entries(store.get("validation_status"))
    failures = _entries((results.get("activeManifest") or {}).get("failure"))
    for delta in results.get("ingredientDeltas") or []:
        failures += _entries(((delta or {}).get("validationDeltas") or {}).get("failure"))
    return failures


def _success_codes(store: dict[str, Any]) -> set[str]:
    results = store.get("validation_results") or {}
    return {entry["code"] for entry in _entries((results.get("activeManifest") or {}).get("success"))}


def _entries(value: object) -> list[dict[str, Any]]:
    """The status entries of a library list (each has a ``code``); anything else is skipped."""
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, dict) and isinstance(entry.get("code"), str)]


def _entry_text(entry: dict[str, Any]) -> str:
    explanation = _text(entry.get("explanation"))
    return f"{entry['code']}: {explanation}" if explanation else entry["code"]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    """``name/version`` of the first claim generator (C2PA 2.x ``claim_generator_info``), else the
    C2PA 1.x ``claim_generator`` string."""
    for info in manifest.get("claim_generator_info") or []:
        name = _text(info.get("name")) if isinstance(info, dict) else None
        if name:
            version = _text(info.get("version"))
            return f"{name}/{version}" if version else name
    return _text(manifest.get("claim_generator"))


def _digital_source_types(manifest: dict[str, Any]) -> list[str]:
    """The IPTC digital source types the manifest's own assertions declare, in order, once each."""
    found: list[str] = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, dict):
            continue
        label, data = assertion.get("label"), assertion.get("data")
        if not isinstance(label, str) or not isinstance(data, dict):
            continue
        if _ACTIONS_LABEL.match(label):
            found += _strings(
                action.get("digitalSourceType") for action in data.get("actions") or [] if isinstance(action, dict)
            )
        elif label in _IPTC_LABELS:
            found += _strings([data.get(_IPTC_SOURCE_KEY)])
    return list(dict.fromkeys(found))


def _strings(values: Iterable[object]) -> list[str]:
    return [value for value in values if isinstance(value, str) and value]


def _normalised_iptc(uri: str) -> str:
    """An IPTC digital source type URI with the ``http`` scheme the vocabulary lists; others unchanged."""
    match = _IPTC_URI.match(uri.strip())
    return IPTC_DIGITAL_SOURCE_TYPE + match.group(1) if match else uri
