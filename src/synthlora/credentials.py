"""Content Credentials (C2PA) that generated images carry: who signed them, with what, and whether
the signature validates, read with the official ``c2pa-python`` bindings.

OpenAI's image models embed a C2PA manifest in every file they return. The pipeline re-encodes
each picture (as RGB PNG), which drops the manifest, so it is read from the bytes the API sent,
before decoding, into the image's provenance record; the model card sums it up. Reading needs no
network (no trust list, no OCSP): ``valid`` says the manifest is intact and its signature checks
out against the certificate it carries; ``trusted`` needs a trust list and is reported as given.
"""

from __future__ import annotations

import io
import json
from typing import Any

# validation_state values of c2pa-rs: Invalid < Valid (intact, signature checks) < Trusted (and its
# certificate chains to a configured trust anchor)
VALID_STATES = ("Valid", "Trusted")


def read_credentials(raw: bytes, mime: str) -> dict[str, Any]:
    """The C2PA manifest of one image file as a small record: ``present`` False when the file carries
    none; else issuer, common_name, claim_generator, digital_source_type, validation_state, valid,
    trusted and the failure codes. Never raises: a file the reader cannot parse says so."""
    try:
        import c2pa
    except ImportError as exc:  # an install without the bindings still generates; provenance says why
        return {"present": None, "error": f"c2pa-python is not installed ({exc})"}
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(raw))
    except Exception as exc:  # C2paError subclasses: a damaged or unsupported manifest
        return {"present": True, "valid": False, "trusted": False,
                "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    if reader is None:
        return {"present": False}
    with reader:
        store = json.loads(reader.json())
    active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    sig = active.get("signature_info") or {}
    generators = active.get("claim_generator_info") or []
    generator = active.get("claim_generator") or "; ".join(
        " ".join(str(g[k]) for k in ("name", "version") if g.get(k)) for g in generators if isinstance(g, dict))
    state = store.get("validation_state") or ("Invalid" if _failures(store) else "Valid")
    return {
        "present": True,
        "issuer": sig.get("issuer"),
        "common_name": sig.get("common_name"),
        "signed": sig.get("time"),
        "alg": sig.get("alg"),
        "claim_generator": generator or None,
        "digital_source_type": _source_type(active),
        "validation_state": state,
        "valid": state in VALID_STATES,
        "trusted": state == "Trusted",
        "failures": _failures(store),
    }


def _failures(store: dict) -> list[str]:
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    return sorted({f.get("code", "") for f in results.get("failure", [])} - {""})


def _source_type(manifest: dict) -> str | None:
    for assertion in manifest.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions", []):
                if action.get("digitalSourceType"):
                    return action["digitalSourceType"].rsplit("/", 1)[-1]
    return None


def credentials_summary(records: list[dict | None]) -> dict[str, Any]:
    """What the model card says about the training images' Content Credentials: how many carry a
    manifest, how many validate, and by whom they were signed and with what."""
    present = [r for r in records if r and r.get("present")]
    return {
        "images": len(records),
        "with_credentials": len(present),
        "valid": sum(1 for r in present if r.get("valid")),
        "trusted": sum(1 for r in present if r.get("trusted")),
        "issuers": sorted({r["issuer"] for r in present if r.get("issuer")}),
        "claim_generators": sorted({r["claim_generator"] for r in present if r.get("claim_generator")}),
        "failures": sorted({code for r in present for code in r.get("failures", [])}),
    }
