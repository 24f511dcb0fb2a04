"""The Parti-like autoregressive family: LlamaGen's VQ tokenizer and GPT, and a KV-cached ``generate()``.

* :mod:`baselines.parti.tokenizer` — ``VQModel`` (LlamaGen naming, L2-normalised 8-d codes), presets
  ``VQ_8``/``VQ_16``, :func:`codebook_usage`;
* :mod:`baselines.parti.models` — the GPT ``Transformer`` with a static KV cache, presets
  ``GPT_B``/``GPT_L``/``GPT_XL``;
* :mod:`baselines.parti.sampling` — :func:`generate` (guidance → temperature → top-k → top-p, per-sample
  generators);
* :mod:`baselines.parti.checkpoints` — strict loading of the released LlamaGen files.

The tokenizer's config class is re-exported as ``VQModelArgs`` (both official modules call theirs
``ModelArgs``; here ``ModelArgs`` is the GPT's).
"""

from .models import GPT_B, GPT_L, GPT_XL, GPT_XXL, GPT_models, ModelArgs, Transformer
from .sampling import generate, logits_to_probs, top_k_top_p_filtering
from .tokenizer import VQ_8, VQ_16, VQ_models, VQModel, codebook_usage
from .tokenizer import ModelArgs as VQModelArgs

__all__ = [
    "ModelArgs", "Transformer", "GPT_B", "GPT_L", "GPT_XL", "GPT_XXL", "GPT_models",
    "VQModelArgs", "VQModel", "VQ_8", "VQ_16", "VQ_models", "codebook_usage",
    "generate", "logits_to_probs", "top_k_top_p_filtering",
]
