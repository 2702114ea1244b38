"""pyvene behind one adapter: ``import tinylang`` stays free of it, and pyvene works on a loaded
checkpoint in whichever order the two are imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from tinylang.evaluation import pyvene_adapter
from tinylang.evaluation.batching import select_mask
from tinylang.evaluation.runtime import inference
from tinylang.models import HOOK_POINTS, ModelConfig, build_model, save_checkpoint


@pytest.mark.parametrize("pyvene_first", [False, True], ids=["tinylang-then-pyvene", "pyvene-then-tinylang"])
def test_pyvene_works_on_a_loaded_model_without_any_extra_import(tmp_path, pyvene_first):
    """tinylang never imports pyvene (it is slow), yet pyvene knows our model in either import order."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=2), 12, 16)
    save_checkpoint(tmp_path / "step0.pt", model, 0)
    script = textwrap.dedent(f"""
        import sys
        if {pyvene_first}:
            import pyvene
        import tinylang, tinylang.evaluation, tinylang.evaluation.evaluators, tinylang.stages
        from tinylang.models import load_checkpoint
        assert {pyvene_first} or "pyvene" not in sys.modules, "tinylang imported pyvene"
        model, _ = load_checkpoint({str(tmp_path / "step0.pt")!r})
        import pyvene
        pyvene.IntervenableModel({{"layer": 1, "component": "mixer_output", "unit": "pos"}}, model)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_the_adapter_names_every_hook_point_and_patching_a_run_with_itself_changes_nothing():
    import tinylang.evaluation as evaluation

    assert evaluation.intervenable_model is pyvene_adapter.intervenable_model  # lazily, through the package
    assert pyvene_adapter.COMPONENTS == tuple(HOOK_POINTS) and set(pyvene_adapter.module_mapping()) == set(HOOK_POINTS)
    torch.manual_seed(0)
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=2), 12, 16)
    ids = torch.randint(3, 12, (4, 10))
    read, where = torch.full((4,), 9), torch.tensor([2, 5, 9, 0])
    select = select_mask(ids, read)
    with inference(model, restore_grad_flags=True):
        plain = model(ids, select=select)
        own = {}
        handle = model.layers[1].mixer.register_forward_hook(lambda m, args, out: own.update(out=out))
        model(ids)
        handle.remove()
        patched = pyvene_adapter.patched_logits(pyvene_adapter.intervenable_model(model, 1, "mixer_output"), ids,
                                                select, where, own["out"][torch.arange(4), where])
    assert torch.allclose(patched, plain, atol=1e-6)
    assert all(p.requires_grad for p in model.parameters())  # pyvene switched them off; restored
