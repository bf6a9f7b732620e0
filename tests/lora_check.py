"""One check of a trained LoRA file in diffusers, shared by the workflow test and the interop test."""

from __future__ import annotations

import torch


def assert_lora_changes_output(pipe, state: dict, prompt: str, adapter: str, expected: list, boost: float) -> None:
    """Load ``state`` (a kohya-format LoRA) into ``pipe``: every key must match a module
    (``expected``: (model, number of target modules) pairs; unmatched keys load silently), the
    output must change, and adapter weight 0 must give back the base output. The lora_up weights
    are multiplied by ``boost`` first: a few demo training steps from near-zero up-weights change
    the output too little to see."""
    def render():
        return pipe(prompt, num_inference_steps=2, width=64, height=64, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images[0]

    base = render()
    pipe.load_lora_weights({k: (v * boost if "lora_up" in k else v) for k, v in state.items()}, adapter_name=adapter)
    for model, n in expected:
        loaded = [name for name, m in model.named_modules() if hasattr(m, "lora_A") and adapter in m.lora_A]
        assert len(loaded) == n > 0, "every key matched a module (unmatched keys load silently)"
    assert abs(render() - base).max() > 1e-3
    pipe.set_adapters([adapter], adapter_weights=[0.0])
    assert abs(render() - base).max() < 1e-5
