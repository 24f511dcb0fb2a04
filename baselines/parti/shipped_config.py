"""The shipped-format configuration of a Parti-like model: networks from a config dict, and back."""

from __future__ import annotations

from dataclasses import asdict

from baselines.common.text_encoders import ShapesWordEncoder, ShapesWordEncoderConfig
from baselines.parti.models import ModelArgs, Transformer
from baselines.parti.tokenizer import ModelArgs as VQModelArgs
from baselines.parti.tokenizer import VQModel

__all__ = ["build_parti_networks", "config_dict"]


def build_parti_networks(config: dict) -> tuple[VQModel, Transformer, ShapesWordEncoder | None]:
    """The networks of a shipped-format configuration (randomly initialised)."""
    vq = VQModel(VQModelArgs(**config["vq"]))
    gpt = Transformer(ModelArgs(**config["gpt"]))
    text = ShapesWordEncoder(ShapesWordEncoderConfig(**config["text_encoder"])) if config.get("text_encoder") else None
    return vq, gpt, text


def config_dict(vq: VQModel, gpt: Transformer, text: ShapesWordEncoder | None, resolution: int,
                defaults: dict) -> dict:
    """The shipped-format configuration of networks (inverse of :func:`build_parti_networks`)."""
    return {"model": "parti", "kind": gpt.model_type, "resolution": int(resolution), "vq": asdict(vq.config),
            "gpt": asdict(gpt.config), "text_encoder": text.config.to_dict() if text is not None else None,
            "defaults": dict(defaults)}
