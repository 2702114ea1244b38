"""Interchange interventions: corruption, exact restoration, output layout."""

from __future__ import annotations

import pytest
import torch

from tinylang.evaluation import corrupt, run_interventions
from tinylang.evaluation.behaviour import answer_scores, query_logits
from tinylang.languages import load_tensors, parse_language_config, read_meta, write_language
from tinylang.models import HOOK_POINTS, ModelConfig, build_model

ITEMS = ("query_item_orig", "target_item_orig")


@pytest.fixture(scope="module")
def language(tmp_path_factory):
    out = tmp_path_factory.mktemp("ar")
    config = {"type": "ar", "num_kv": 24, "min_pairs": 2, "max_pairs": 5, "seed": 1,
              "splits": {"train": 8, "test": 12}}
    write_language(parse_language_config(config), out)
    meta = read_meta(out)
    return load_tensors(out, "test"), meta["token_classes"], len(meta["vocabulary"])


def make_model(vocab: int, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(**{"mixer": "attention", "d_model": 16, "n_layers": 2, **options})
    model = build_model(config, vocab, 32).eval()
    with torch.no_grad():  # louder mixers: at init the residual stream barely hears the context
        for block in model.layers:
            block.mixer.out_proj.weight.mul_(20)
    return model


def wide(df):
    """Patch rows with the example's reference metrics as columns."""
    ref = df[df.layer == -1].pivot(index=["example", "corrupted"], columns="metric", values="value")
    patch = df[df.layer >= 0].pivot(index=["example", "corrupted", "layer", "component", "position"],
                                    columns="metric", values="value")
    return patch.reset_index().merge(ref.reset_index(), on=["example", "corrupted"])


@pytest.mark.parametrize("item", ITEMS)
def test_corrupt(language, item):
    tensors, classes, _ = language
    out = corrupt(tensors, item, classes, seed=3)
    assert torch.equal(out, corrupt(tensors, item, classes, seed=3))
    assert not torch.equal(out, corrupt(tensors, item, classes, seed=4))
    rows, pos = torch.arange(len(tensors)), tensors.positions[item]
    changed = out != tensors.input_ids
    assert changed.sum(1).eq(1).all() and changed[rows, pos].all()
    old, new = tensors.input_ids[rows, pos], out[rows, pos]
    for start, stop in classes.values():
        in_class = (old >= start) & (old < stop)
        assert ((new[in_class] >= start) & (new[in_class] < stop)).all()
    assert not (tensors.input_ids == new[:, None]).any()  # a token new to the example


def test_corrupt_rejects_unclassed_token(language):
    tensors, classes, _ = language
    with pytest.raises(ValueError, match="no class"):
        corrupt(tensors, "bos", classes, seed=0)


@pytest.mark.parametrize("options", [{}, {"mixer": "mamba", "mixer_args": {"d_state": 4}}],
                         ids=["attention", "mamba"])
def test_patching_restores_exactly(language, options):
    tensors, classes, vocab = language
    model = make_model(vocab, **options)
    df = wide(run_interventions(model, tensors, classes, batch_size=5))
    assert (df.p_clean - df.p_corrupted).abs().max() > 1e-4  # the corruption matters
    last = df[(df.layer == 1) & (df.component == "block_output")]
    at_query = last[last.position == "query_item"]
    assert (at_query.p_patched - at_query.p_clean).abs().max() < 1e-5
    assert (at_query.logit_patched - at_query.logit_clean).abs().max() < 1e-4
    after = df[df.position == "target_item"]  # after the readout position: no effect anywhere
    assert (after.p_patched - after.p_corrupted).abs().max() < 1e-5
    assert after.p_diff.abs().max() < 1e-5
    first = df[(df.layer == 0) & (df.component == "block_input") & (df.position == df.corrupted)]
    assert len(first) == len(tensors) * len(ITEMS)
    assert (first.p_patched - first.p_clean).abs().max() < 1e-5
    assert torch.allclose(torch.tensor(df.p_diff.values), torch.tensor((df.p_patched - df.p_corrupted).values))


def manual_patch(model, clean, base, query, answer, layer, component, pos):
    """Reference interchange intervention with plain torch hooks, one position per row."""
    path, kind = HOOK_POINTS[component]
    module = model.get_submodule((path % layer).replace("[", ".").replace("]", ""))
    rows, saved = torch.arange(len(clean)), {}

    def grab(x):
        saved["x"] = x[rows, pos].clone()

    def put(x):
        x[rows, pos] = saved["x"]

    for fn, ids in ((grab, clean), (put, base)):
        handle = (module.register_forward_pre_hook(lambda m, a: fn(a[0])) if kind == "input"
                  else module.register_forward_hook(lambda m, a, o: fn(o)))
        with torch.no_grad():
            logits = query_logits(model, ids, query)
        handle.remove()
    return answer_scores(logits, answer)[0].exp()


def test_matches_manual_patching(language):
    tensors, classes, vocab = language
    model = make_model(vocab)
    df = run_interventions(model, tensors, classes, corrupt_items=["target_item_orig"],
                           positions=["target_item_orig", "query_item"], batch_size=4, seed=7)
    base = corrupt(tensors, "target_item_orig", classes, seed=7)
    query, answer = tensors.positions["query_item"], tensors.answer
    for layer, component, position in [(0, "mixer_output", "target_item_orig"), (1, "mlp_input", "query_item"),
                                       (0, "mixer_input", "query_item"), (1, "block_input", "target_item_orig")]:
        expected = manual_patch(model, tensors.input_ids, base, query, answer, layer, component,
                                tensors.positions[position])
        got = df[(df.metric == "p_patched") & (df.layer == layer) & (df.component == component)
                 & (df.position == position)].sort_values("example").value
        assert torch.allclose(torch.tensor(got.values), expected, atol=1e-5)


def test_output_layout(language):
    tensors, classes, vocab = language
    model = make_model(vocab)
    model.train()
    df = run_interventions(model, tensors, classes, batch_size=8)
    assert list(df.columns) == ["example", "query_type", "corrupted", "layer", "component", "position",
                                "metric", "value"]
    n, positions = len(tensors), list(tensors.positions)
    patch = df[df.layer >= 0]
    assert set(patch.metric) == {"p_patched", "logit_patched", "p_diff", "logit_diff"}
    sizes = patch.groupby(["corrupted", "layer", "component", "position", "metric"]).size()
    assert len(sizes) == 2 * 2 * 6 * len(positions) * 4 and (sizes == n).all()
    ref = df[df.layer == -1]
    assert set(ref.component) == {"none"} and set(ref.position) == {"none"}
    assert (ref.groupby(["corrupted", "metric"]).size() == n).all() and len(ref) == 2 * 4 * n
    assert set(df.query_type) == {"KEY"}
    assert not df.value.isna().any()
    assert model.training and all(p.requires_grad for p in model.parameters())  # state restored


def test_model_without_mlp(language):
    tensors, classes, vocab = language
    model = make_model(vocab, state_mixer="none")
    assert not any(c.startswith("mlp_") for c in model.components)
    df = run_interventions(model, tensors.subset(torch.arange(4)), classes, positions=["query_item"])
    assert set(df[df.layer >= 0].component) == {"block_input", "block_output", "mixer_input", "mixer_output"}
    with pytest.raises(ValueError, match="mlp_output"):
        run_interventions(model, tensors, classes, components=["mlp_output"])
