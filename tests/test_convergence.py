"""Convergence metrics: neutral streaks, ΔW distances between LoRA adapters, centroid distance, distinct-n."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from rlxf.selfplay.convergence import (
    centroid_distance,
    delta_distance,
    distinct_n,
    embed_texts,
    lora_delta_weights,
    neutral_streak,
    pca_2d,
    snapshot_distances,
)

# ------------------------------------------------------------------------------------------------ neutral_streak


def test_neutral_streak_finds_first_completion_and_longest_run():
    ratings = [50, 60, 45, 55, 50, 10, 47, 48, 49, 50, 51]
    result = neutral_streak(ratings, low=45, high=55, n=3)
    assert result["neutral"] == [True, False, True, True, True, False, True, True, True, True, True]
    assert result["first_complete"] == 4  # 45, 55, 50: the bounds are inclusive
    assert result["longest"] == 5


def test_neutral_streak_edge_cases():
    assert neutral_streak([]) == {"longest": 0, "first_complete": None, "neutral": []}
    assert neutral_streak([44.99, 55.01, 100, 1], n=1)["first_complete"] is None
    assert neutral_streak([70, 50], n=1)["first_complete"] == 1
    four = neutral_streak([50, 50, 50, 50], n=5)
    assert four["first_complete"] is None and four["longest"] == 4
    assert neutral_streak([50] * 5, n=5)["first_complete"] == 4
    assert neutral_streak(np.array([50.0, 52.0]), n=2)["first_complete"] == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"ratings": [50], "n": 0}, "n must be >= 1"),
    ({"ratings": [50], "low": 60, "high": 40}, "must not exceed"),
    ({"ratings": [50, float("nan")]}, r"ratings\[1\] is not finite"),
    ({"ratings": [50, "high"]}, r"ratings\[1\] is not a number"),
])
def test_neutral_streak_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        neutral_streak(**kwargs)


# ------------------------------------------------------------------------------------------------ ΔW


class TwoLayers(nn.Module):
    """A tiny network with an embedding and two Linear layers, enough for LoRA on both kinds of layer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.up = nn.Linear(6, 8)
        self.down = nn.Linear(8, 5)

    def forward(self, input_ids):
        return self.down(torch.relu(self.up(self.embed(input_ids))))


def two_adapter_model(seed: int = 0):
    """A PeftModel with adapters "dem" and "rep" (random, non-zero A and B) on the same base."""
    torch.manual_seed(seed)
    config = LoraConfig(r=3, lora_alpha=6, target_modules=["embed", "up", "down"], init_lora_weights=False)
    model = get_peft_model(TwoLayers(), config, adapter_name="dem")
    model.add_adapter("rep", LoraConfig(r=3, lora_alpha=6, target_modules=["embed", "up", "down"],
                                        init_lora_weights=False))
    return model


def raw_factors(model, adapter: str) -> torch.Tensor:
    """All LoRA A and B entries of one adapter as one vector (layers in a fixed order)."""
    parts = []
    for layer in ("embed", "up", "down"):
        module = lora_module(model, layer)
        if layer == "embed":
            parts += [module.lora_embedding_A[adapter], module.lora_embedding_B[adapter]]
        else:
            parts += [module.lora_A[adapter].weight, module.lora_B[adapter].weight]
    return torch.cat([p.detach().flatten() for p in parts])


def lora_module(model, layer: str):
    return dict(model.named_modules())[f"base_model.model.{layer}"]


def test_lora_delta_weights_match_peft_and_the_base_shapes():
    model = two_adapter_model()
    deltas = lora_delta_weights(model, "dem")
    assert set(deltas) == {"embed", "up", "down"}
    for layer, delta in deltas.items():
        module = lora_module(model, layer)
        assert delta.shape == module.base_layer.weight.shape
        torch.testing.assert_close(delta, module.get_delta_weight("dem").float())
    up = lora_module(model, "up")
    manual = up.scaling["dem"] * up.lora_B["dem"].weight @ up.lora_A["dem"].weight
    torch.testing.assert_close(deltas["up"], manual)
    assert up.scaling["dem"] == 2.0  # alpha / r


def test_lora_delta_weights_rejects_an_unknown_adapter():
    with pytest.raises(ValueError, match=r"adapter 'gop' adapts no LoRA layer.*\['dem', 'rep'\]"):
        lora_delta_weights(two_adapter_model(), "gop")


def test_delta_distance_is_invariant_to_reparameterising_the_factors():
    model = two_adapter_model()
    before = delta_distance(lora_delta_weights(model, "dem"), lora_delta_weights(model, "rep"))
    raw_before = (raw_factors(model, "dem") - raw_factors(model, "rep")).norm()
    # B' = B M^-1 and A' = M A for a random invertible M: the same ΔW, other factors.
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in ("embed", "up", "down"):
            module = lora_module(model, layer)
            if layer == "embed":
                lora_a, lora_b = module.lora_embedding_A["dem"], module.lora_embedding_B["dem"]
            else:
                lora_a, lora_b = module.lora_A["dem"].weight, module.lora_B["dem"].weight
            m = torch.randn(3, 3) + 3 * torch.eye(3)
            lora_a.copy_(m @ lora_a)
            lora_b.copy_(lora_b @ torch.linalg.inv(m))
    raw_after = (raw_factors(model, "dem") - raw_factors(model, "rep")).norm()
    after = delta_distance(lora_delta_weights(model, "dem"), lora_delta_weights(model, "rep"))
    assert abs(raw_after - raw_before) > 0.1 * raw_before  # a distance on raw factors moves...
    numeric = ["norm_a", "norm_b", "frobenius", "relative", "cosine"]
    # ...ΔW and every distance on it do not.
    np.testing.assert_allclose(after[numeric].to_numpy(), before[numeric].to_numpy(), rtol=1e-4, atol=1e-6)


def test_delta_distance_zero_for_identical_and_symmetric():
    model = two_adapter_model()
    deltas_a, deltas_b = lora_delta_weights(model, "dem"), lora_delta_weights(model, "rep")
    same = delta_distance(deltas_a, {k: v.clone() for k, v in deltas_a.items()})
    assert list(same["layer"]) == ["down", "embed", "up", "total"]
    np.testing.assert_allclose(same["frobenius"], 0.0, atol=1e-6)
    np.testing.assert_allclose(same["relative"], 0.0, atol=1e-6)
    np.testing.assert_allclose(same["cosine"], 1.0, atol=1e-5)
    ab, ba = delta_distance(deltas_a, deltas_b), delta_distance(deltas_b, deltas_a)
    for column in ("frobenius", "relative", "cosine"):
        np.testing.assert_allclose(ab[column], ba[column], rtol=1e-6)
    np.testing.assert_allclose(ab["norm_a"], ba["norm_b"], rtol=1e-6)
    assert (ab["frobenius"] > 0).all()


def test_delta_distance_total_row_and_formulas():
    a = {"x": torch.tensor([[3.0, 0.0]]), "y": torch.tensor([[0.0, 4.0]])}
    b = {"x": torch.tensor([[0.0, 3.0]]), "y": torch.tensor([[0.0, 4.0]])}
    table = delta_distance(a, b).set_index("layer")
    assert table.loc["x", "frobenius"] == pytest.approx(math.sqrt(18))
    assert table.loc["x", "relative"] == pytest.approx(math.sqrt(18) / 3)  # orthogonal, equal norms: sqrt(2)
    assert table.loc["x", "cosine"] == pytest.approx(0.0)
    assert table.loc["y", "frobenius"] == pytest.approx(0.0)
    assert table.loc["total", "norm_a"] == pytest.approx(5.0)
    assert table.loc["total", "frobenius"] == pytest.approx(math.sqrt(18))
    assert table.loc["total", "cosine"] == pytest.approx(16 / 25)


def test_delta_distance_zero_norms():
    zero, one = {"x": torch.zeros(2, 2)}, {"x": torch.ones(2, 2)}
    both_zero = delta_distance(zero, zero).set_index("layer").loc["x"]
    assert both_zero["relative"] == 0.0 and math.isnan(both_zero["cosine"])
    one_zero = delta_distance(one, zero).set_index("layer").loc["x"]
    assert one_zero["relative"] == pytest.approx(2.0) and math.isnan(one_zero["cosine"])


def test_new_lora_adapters_have_zero_delta():
    model = get_peft_model(TwoLayers(), LoraConfig(r=2, target_modules=["up"]), adapter_name="fresh")
    deltas = lora_delta_weights(model, "fresh")
    assert float(deltas["up"].abs().max()) == 0.0  # peft initialises B to zero


def test_delta_distance_rejects_mismatched_layers_and_shapes():
    with pytest.raises(ValueError, match=r"only in a: \['x'\]"):
        delta_distance({"x": torch.ones(1)}, {"y": torch.ones(1)})
    with pytest.raises(ValueError, match="layer x: ΔW shapes differ"):
        delta_distance({"x": torch.ones(2, 2)}, {"x": torch.ones(2, 3)})


# ------------------------------------------------------------------------------------------------ texts


def test_centroid_distance():
    emb_a = np.array([[0.0, 0.0], [2.0, 0.0]])
    emb_b = torch.tensor([[1.0, 3.0], [1.0, 5.0]])
    assert centroid_distance(emb_a, emb_b) == pytest.approx(4.0)
    assert centroid_distance(emb_a, emb_a) == 0.0
    assert centroid_distance([[1.0, 0.0]], [[0.0, 2.0]], metric="cosine") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in dimension"):
        centroid_distance(emb_a, np.ones((2, 3)))
    with pytest.raises(ValueError, match="emb_b must be a non-empty 2-D array"):
        centroid_distance(emb_a, np.ones(2))
    with pytest.raises(ValueError, match="metric must be"):
        centroid_distance(emb_a, emb_a, metric="manhattan")


def test_distinct_n_flags_repetition():
    assert distinct_n(["a a a a"], 1) == pytest.approx(1 / 4)
    assert distinct_n(["a a a a"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["The cat sat", "the dog ran"], 1) == pytest.approx(5 / 6)
    assert distinct_n(["one two", "three"], 3) == 0.0  # no trigram at all
    assert distinct_n(["we agree " * 20], 2) < 0.1 < distinct_n(["taxes should be cut for small firms"], 2)
    with pytest.raises(ValueError, match="texts must be a list"):
        distinct_n("a b c", 1)
    with pytest.raises(ValueError, match="n must be >= 1"):
        distinct_n(["a"], 0)


# ------------------------------------------------------------------------------------------------ over a run


def test_snapshot_distances_track_a_run(tmp_path):
    from rlxf.lm.adapters import save_adapter

    model = two_adapter_model()
    save_adapter(model, "dem", tmp_path / "round-0" / "dem")
    save_adapter(model, "rep", tmp_path / "round-0" / "rep")
    start = delta_distance(lora_delta_weights(model, "dem"), lora_delta_weights(model, "rep"))
    with torch.no_grad():  # round 1: dem becomes a copy of rep, rep stays
        params = dict(model.named_parameters())
        for name, param in params.items():
            parts = name.split(".")
            if "dem" in parts:  # e.g. lora_A.dem.weight, lora_embedding_A.dem
                param.copy_(params[".".join("rep" if part == "dem" else part for part in parts)])
    save_adapter(model, "dem", tmp_path / "round-1" / "dem")
    save_adapter(model, "rep", tmp_path / "round-1" / "rep")
    table = snapshot_distances(model, {1: tmp_path / "round-1", 0: tmp_path / "round-0"}, ["dem", "rep"])
    total = table[table["layer"] == "total"].set_index("round")
    assert list(total.index) == [0, 1] and set(table["layer"]) == {"embed", "up", "down", "total"}
    assert total.loc[0, "frobenius"] == pytest.approx(float(start.set_index("layer").loc["total", "frobenius"]))
    assert total.loc[1, "frobenius"] == pytest.approx(0.0, abs=1e-6) and total.loc[1, "cosine"] == pytest.approx(1.0)
    assert total.loc[0, "moved_a"] == 0.0 and total.loc[1, "moved_b"] == pytest.approx(0.0, abs=1e-6)
    assert total.loc[1, "moved_a"] == pytest.approx(total.loc[0, "frobenius"], rel=1e-5)  # dem moved onto rep
    assert table[table["layer"] != "total"]["moved_a"].isna().all()
    with pytest.raises(ValueError, match="no snapshots"):
        snapshot_distances(model, {}, ["dem", "rep"])


def test_embed_texts_mean_pools_and_normalises():
    from rlxf.lm.models import load_classifier

    encoder, tokenizer = load_classifier("tiny-bert")
    texts = ["taxes should be cut", "healthcare for all", "taxes should be cut"]
    embeddings = embed_texts(encoder, tokenizer, texts, batch_size=2)
    assert embeddings.shape[0] == 3 and np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embeddings[0], embeddings[2], atol=1e-5)  # batching and padding do not matter
    with torch.no_grad():  # by hand: the mean over the tokens of one unpadded text
        batch = tokenizer([texts[1]], return_tensors="pt")
        hidden = encoder.base_model(**batch).last_hidden_state[0].mean(0)
    np.testing.assert_allclose(embeddings[1], (hidden / hidden.norm()).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="list of strings"):
        embed_texts(encoder, tokenizer, "one text")


def test_pca_2d_keeps_the_main_direction():
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.1, 0.0], [2.0, -0.1, 0.0], [3.0, 0.0, 0.0]])
    projected = pca_2d(points)
    assert projected.shape == (4, 2)
    assert np.allclose(np.abs(np.diff(projected[:, 0])), 1.0, atol=0.02)  # the x axis is the first component
    same, explained = pca_2d(points, explained=True)
    np.testing.assert_array_equal(same, projected)
    assert explained[0] > 0.99 and explained[0] + explained[1] <= 1.0 + 1e-9  # nearly all variance is along x
    _, flat = pca_2d(np.ones((3, 4)), explained=True)
    assert list(flat) == [0.0, 0.0]
