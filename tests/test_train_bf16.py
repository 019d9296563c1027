"""bf16 training: the frozen base runs in bfloat16, the adapter stays fp32 and lands on the
base at its own dtype, and it learns what the fp32 run learns."""

from __future__ import annotations

import torch
from peft import get_peft_model_state_dict

from auditgame.organisms.data import Sample
from auditgame.organisms.spec import TrainSpec
from auditgame.organisms.train import train_lora


def test_bf16_adapter_is_fp32_on_the_untouched_base(tiny, tmp_path) -> None:
    samples = [Sample(f"Tell me fact number {i}.", "Zebras sleep standing up, always.")
               for i in range(16)]
    spec = TrainSpec(epochs=3, batch_size=4, max_len=48, lr=5e-3, warmup_steps=0,
                     target_modules=["q_proj", "v_proj"], precision="bf16", checkpoint_every=2)
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    low, res = train_lora(tiny.model, tiny.tokenizer, samples, spec, seed=0,
                          ckpt_dir=tmp_path / "ckpt")
    full, res32 = train_lora(tiny.model, tiny.tokenizer, samples,
                             spec.model_copy(update={"precision": "fp32"}), seed=0)
    # the shared base is not touched (no cast in place) and the trained model sits on it
    assert all(torch.equal(v, tiny.model.state_dict()[k]) for k, v in before.items())
    assert all(p.dtype == torch.float32 for p in low.parameters())
    base_w = {k: v for k, v in low.get_base_model().state_dict().items() if "lora" not in k}
    ref = tiny.model.state_dict()
    assert all(torch.equal(v, ref[k.replace(".base_layer", "")]) for k, v in base_w.items()
               if k.replace(".base_layer", "") in ref)
    # it learns as the fp32 run does: the loss falls and tracks the fp32 curve closely
    assert res.losses[-1] < res.losses[0] - 0.2
    assert all(abs(x - y) < 0.01 * y for x, y in zip(res.losses, res32.losses, strict=True))
    a, b = get_peft_model_state_dict(low), get_peft_model_state_dict(full)
    assert a.keys() == b.keys() and all(a[k].dtype == torch.float32 for k in a)
    # the same run again gives the same adapter bytes
    again, _ = train_lora(tiny.model, tiny.tokenizer, samples, spec, seed=0)
    c = get_peft_model_state_dict(again)
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_top_layers_adapt_only_the_top_of_the_stack(tiny) -> None:
    samples = [Sample(f"Tell me fact number {i}.", "Zebras sleep standing up.") for i in range(8)]
    spec = TrainSpec(epochs=1, batch_size=4, max_len=48, target_modules=["q_proj", "v_proj"],
                     top_layers=1)
    model, res = train_lora(tiny.model, tiny.tokenizer, samples, spec, seed=0)
    n = tiny.model.config.num_hidden_layers
    adapted = {int(k.split("layers.")[1].split(".")[0])
               for k in get_peft_model_state_dict(model)}
    assert n > 1 and adapted == {n - 1} and res.steps == 2
    assert model.peft_config["default"].layers_to_transform == [n - 1]
