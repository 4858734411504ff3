"""Bundled and user weights: SHA-256-checked, loaded with torch.load(weights_only=True).

Weights files hold {"state_dict": fp16 tensors, "meta": {...}}: half precision halves the file
(a width-16 attention U-Net is 11 MB) and loses nothing measurable once cast back to fp32.
manifest.json beside the bundled files pins each file's SHA-256; a mismatch is refused.
"""
import json
from pathlib import Path

import torch

from gado_bids import atomic, hashing
from gado_bids.errors import ExitCode, GadoError
from gado_bids.model.networks import build_model

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = BUNDLED_DIR / "manifest.json"


def bundled_manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}


def training_role(weights_sha256: str, dataset_name: str, subject: str) -> str:
    """'training', 'validation' or 'unseen': was this subject used to make these weights?

    Only bundled weights say what they were trained on (the manifest lists the subjects and the
    dataset's Name); a subject label alone is not enough - sub-003 of another dataset is unseen.
    """
    for entry in bundled_manifest().values():
        if entry.get("sha256") != weights_sha256 or entry.get("training_dataset") != dataset_name:
            continue
        if subject in entry.get("validation_subjects", []):
            return "validation"
        if subject in entry.get("train_subjects", []):
            return "training"
    return "unseen"


def bundled_weights_path(model_name: str) -> Path:
    manifest = bundled_manifest()
    if model_name not in manifest:
        raise GadoError(f"no bundled weights for '{model_name}' in this gadosynth version "
                        f"(bundled: {sorted(manifest) or 'none'}); train some with "
                        "gadosynth-train and pass --weights FILE", ExitCode.FAILURE)
    return BUNDLED_DIR / manifest[model_name]["file"]


def save_weights(model, path: Path, meta: dict) -> str:
    """Write fp16 weights atomically; returns their SHA-256."""
    state = {k: v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    with atomic.atomic_path(path) as temporary:
        torch.save({"state_dict": state, "meta": meta}, temporary)
    return hashing.sha256_of(path)


def load_weights(path: Path, expected_sha256: str = None, device="cpu"):
    """(model in eval mode on device, meta, sha256)."""
    path = Path(path)
    if not path.is_file():
        raise GadoError(f"weights file '{path}' not found", ExitCode.USAGE)
    digest = hashing.sha256_of(path)
    if expected_sha256 and digest != expected_sha256:
        raise GadoError(f"weights file '{path}' has SHA-256 {digest}, but the manifest expects "
                        f"{expected_sha256}: the file is damaged or was replaced. Reinstall "
                        "gadosynth (or use the container image)", ExitCode.FAILURE)
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
        meta = content["meta"]
        model = build_model(meta["model"], meta["width"], meta.get("formulation", "direct"),
                            meta.get("curve_top_floor", 0.0))
        model.load_state_dict({k: v.float() for k, v in content["state_dict"].items()})
    except GadoError:
        raise
    except Exception as error:
        raise GadoError(f"'{path}' is not a gadosynth weights file ({type(error).__name__}: "
                        f"{error})", ExitCode.USAGE) from error
    return model.to(device).eval(), meta, digest


def load_bundled(model_name: str, device="cpu"):
    manifest = bundled_manifest()
    return load_weights(bundled_weights_path(model_name), manifest[model_name]["sha256"], device)
