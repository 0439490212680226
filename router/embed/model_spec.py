"""What the ONNX backends need to know of a sentence-transformers model directory, and the recipe version.

Shared by ``router.embed.onnx`` (which runs a file) and ``router.embed.onnx_build`` (which makes one);
neither imports the other's internals, so the runtime never pulls in the build.
"""

from __future__ import annotations

import json
from pathlib import Path

RECIPE_VERSION = 3  # bump when the export / quantisation recipe changes: it is part of the file key
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_SUPPORTED_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}


class ModelSpec:
    """What the ONNX pipeline needs from a sentence-transformers model directory (read, validated)."""

    def __init__(self, model_dir: str | Path) -> None:
        self.dir = Path(model_dir)
        modules = _read_json(self.dir / "modules.json", default=None)
        if modules is None:  # a bare transformers checkpoint: sentence-transformers adds mean pooling
            modules = [{"type": "sentence_transformers.models.Transformer", "path": ""},
                       {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}]
        types = [m["type"].replace(".sentence_transformer.modules.", ".models.") for m in modules]
        unsupported = sorted(set(types) - _SUPPORTED_MODULES)
        if unsupported or not types or types[0] != "sentence_transformers.models.Transformer":
            raise ValueError(f"the ONNX backends support Transformer -> Pooling (-> Normalize) models; "
                             f"{self.dir} has modules {types}: use backend='torch'")
        self.model_normalizes = "sentence_transformers.models.Normalize" in types
        pooling_dir = next((m["path"] for m, t in zip(modules, types) if t.endswith(".Pooling")), None)
        pooling = _read_json(self.dir / pooling_dir / "config.json", default={}) if pooling_dir else {}
        modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
        if modes not in ([], ["pooling_mode_mean_tokens"]):
            raise ValueError(f"the ONNX backends implement mean pooling only; {self.dir} uses {modes}: "
                             f"use backend='torch'")
        st_config = _read_json(self.dir / "sentence_bert_config.json", default={})
        config = _read_json(self.dir / "config.json", default={})
        tok_config = _read_json(self.dir / "tokenizer_config.json", default={})
        self.max_positions = int(config.get("max_position_embeddings", 512))
        self.default_max_seq_length = int(st_config.get("max_seq_length")
                                          or min(int(tok_config.get("model_max_length", 512)), self.max_positions))
        self.do_lower_case = bool(st_config.get("do_lower_case", False))
        self.hidden_size = int(config.get("hidden_size", 0))
        self.num_heads = int(config.get("num_attention_heads", 0))
        st_meta = _read_json(self.dir / "config_sentence_transformers.json", default={})
        if st_meta.get("default_prompt_name"):
            raise ValueError(f"{self.dir} prepends the prompt {st_meta['default_prompt_name']!r} by default; "
                             f"the ONNX backends do not: use backend='torch'")
        if not (self.dir / "tokenizer.json").is_file():
            raise ValueError(f"the ONNX backends need a fast tokenizer file {self.dir / 'tokenizer.json'}: "
                             f"use backend='torch'")


def _read_json(path: Path, *, default):
    if not path.is_file():
        return default
    return json.loads(path.read_text())
