"""A local vision-language model through transformers (Gemma, Qwen-VL, Llava … or the demo's tiny Llava).

Every answer is decoded under the stage's JSON schema, so it is valid by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from synthlora.backends.base import load_pretrained, resolve_device, resolve_dtype


class TransformersVLM:
    """Loads once, answers many schema-constrained questions about images."""

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto",
                 max_string_tokens: int = 48, max_items: int = 8, temperature: float = 0.0):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from synthlora.backends.constrained import DecodeLimits, Vocabulary

        self.device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, self.device, half="bfloat16")
        self.processor = load_pretrained(AutoProcessor, model, "analyze.model / caption.model")
        self.model = AutoModelForImageTextToText.from_pretrained(model, dtype=torch_dtype).to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        self.vocab = Vocabulary(self.tokenizer, vocab_size)
        self.limits = DecodeLimits(max_string_tokens=max_string_tokens, max_items=max_items)
        self.temperature = temperature
        self.model_name = model

    def ask_json(self, image: Image.Image, prompt: str, schema: dict, attempt: int = 0) -> str:
        """Return the model's answer to ``prompt`` about ``image`` as JSON text valid under ``schema``."""
        import torch
        from transformers import LogitsProcessorList

        from synthlora.backends.constrained import SchemaLogitsProcessor, SchemaWalker, max_tokens_bound

        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(images=[image.convert("RGB")], text=text, return_tensors="pt").to(self.device)
        walker = SchemaWalker(self.vocab, schema, self.limits)
        eos = self.tokenizer.eos_token_id
        processor = SchemaLogitsProcessor(walker, eos)
        # A retry samples, so it can leave the greedy path that failed validation.
        sample = self.temperature > 0 or attempt > 0
        with torch.no_grad():
            self.model.generate(
                **inputs,
                logits_processor=LogitsProcessorList([processor]),
                max_new_tokens=max_tokens_bound(schema, self.limits),
                do_sample=sample,
                temperature=max(self.temperature, 0.7) if sample else None,
                top_p=None, top_k=None,
                eos_token_id=eos,
                pad_token_id=self.tokenizer.pad_token_id or eos,
            )
        return walker.result()


class TransformersAnalyzer:
    """``analyze`` backend: reference image + description + instruction → features JSON text."""

    def __init__(self, model: str, **options):
        self.vlm = TransformersVLM(model, **options)

    def analyze(self, reference: Path, description: str, instruction: str, schema: dict, attempt: int = 0) -> str:
        prompt = f"{instruction}\n\nSupplementary description:\n{description}\n\nAnswer with JSON only."
        with Image.open(reference) as im:
            return self.vlm.ask_json(im, prompt, schema, attempt)


class TransformersCaptioner:
    """``caption`` backend: one tag per category, each constrained to that category's vocabulary."""

    def __init__(self, model: str, **options):
        self.vlm = TransformersVLM(model, **options)

    def tag(self, image: Image.Image, vocabulary: dict[str, list[str]], instruction: str) -> dict[str, str]:
        schema = {
            "type": "object",
            "properties": {cat: {"type": "string", "enum": tags} for cat, tags in vocabulary.items()},
            "required": list(vocabulary),
            "additionalProperties": False,
        }
        return json.loads(self.vlm.ask_json(image, instruction, schema))
