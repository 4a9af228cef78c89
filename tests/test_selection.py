"""SelectorModule and its objectives: policy gradient, ranking, teacher distillation, joint LoRA, checkpoints, configs."""

import csv
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from helpers import CONFIGS, fit_args, vlm_with_a_trained_adapter, written_config

from models.encoders import FrameEncoder
from models.importance import FrameImportanceModel, subset_log_prob
from models.decoders import TopKDecoder
from trainer.__main__ import main
from trainer.callbacks import ValidationBaselines
from trainer.checkpointing import restore_trainable_state
from trainer.lru import LRUCache
from trainer.objectives import (
    CaptionScorer,
    TeacherScores,
    distillation_loss,
    policy_gradient_loss,
    ranking_loss,
    subset_rewards,
)
from trainer.selector_module import BATCHES_KEY, ObjectiveSettings, SelectorModule



def _batch(t=10, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    stamps = torch.arange(t, dtype=torch.float64) * 0.5
    return {
        "video_id": [f"v{i}" for i in range(n)],
        "video": [f"v{i}.mp4" for i in range(n)],
        "frames": [torch.randint(0, 256, (t, 3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(n)],
        "timestamps": [stamps.clone() for _ in range(n)],
        "duration": [t * 0.5] * n,
        "events": [[{"start": 1.0, "end": 1.6, "caption": "a red circle moves left"},
                    {"start": 3.5, "end": 3.9, "caption": "a blue square moves up"}]] * n,
        "query": [None] * n,
        "extra": [{}] * n,
    }  # fmt: skip


@pytest.fixture()
def trainer_module(tiny_model_dir):
    torch.manual_seed(0)
    encoder = FrameEncoder(str(tiny_model_dir))
    model = FrameImportanceModel(feature_dim=32, d_model=32, layers=1, heads=2, dropout=0.0)
    objective = ObjectiveSettings(group_size=16, entropy_weight=0.0, temperature_start=1.0, temperature_end=1.0)
    return SelectorModule(model, encoder, num_frames=2, objective=objective)


def _subset_prob(module, batch, subset):
    with torch.no_grad():
        logits, _, _ = module.importance_logits(batch)
    return subset_log_prob(logits[0], torch.tensor(subset)).exp().item()


def test_policy_gradient_moves_probability_to_the_rewarded_subset(trainer_module):
    batch = _batch()
    good = [2, 7]

    def reward(subsets):  # 1 for exactly the subset {2, 7}, 0 otherwise
        return (subsets.sort(-1).values == torch.tensor(good)).all(-1).float()

    before = _subset_prob(trainer_module, batch, good)
    # A small step size: a too-large one overshoots into a deterministic policy that never
    # samples the good subset again (zero advantage everywhere), which is not what is tested here.
    opt = torch.optim.Adam(trainer_module.importance.parameters(), lr=0.01)
    torch.manual_seed(1)
    for _ in range(30):
        logits, _, mask = trainer_module.importance_logits(batch)
        loss, info = policy_gradient_loss(logits, mask, 2, reward, group_size=16, temperature=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _subset_prob(trainer_module, batch, good)
    assert before == pytest.approx(1 / 45, rel=1e-4)  # untrained policy: uniform over C(10, 2) subsets
    assert after > 5 * before


def test_coverage_reward_is_event_recall(trainer_module):
    batch = _batch()
    subsets = torch.tensor([[[2, 7], [0, 1]], [[3, 2], [9, 8]]])  # frame i is at i * 0.5 s
    reward = subset_rewards(batch, subsets, coverage=1.0)
    assert reward.tolist() == [[1.0, 0.0], [0.5, 0.0]]
    assert (subset_rewards(batch, subsets, coverage=2.0) == 2 * reward).all()
    nll = torch.tensor([[1.0, 3.0], [2.0, 0.5]])
    with_likelihood = subset_rewards(batch, subsets, coverage=1.0, likelihood=0.5, caption_nll=lambda b, s: nll)
    assert torch.equal(with_likelihood, reward - 0.5 * nll)


def test_teacher_loss_pulls_scores_toward_the_teacher(trainer_module):
    batch = _batch()
    teacher = torch.linspace(-1, 1, 10).float()
    opt = torch.optim.Adam(trainer_module.importance.parameters(), lr=0.02)

    def agreement():
        with torch.no_grad():
            logits, _, _ = trainer_module.importance_logits(batch)
        return torch.corrcoef(torch.stack([logits[0], teacher]))[0, 1].item()

    losses = []
    for _ in range(40):
        logits, _, mask = trainer_module.importance_logits(batch)
        loss = distillation_loss(logits, mask, [teacher, teacher], temperature=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    assert agreement() > 0.9


def test_teacher_loss_is_finite_on_a_one_frame_video(trainer_module):
    batch = _batch(t=1, n=2)
    batch["timestamps"] = [torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]
    logits, _, mask = trainer_module.importance_logits(batch)
    loss = distillation_loss(logits, mask, trainer_module.teacher_scores(batch), temperature=0.5)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in trainer_module.importance.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_likelihood_rewards_do_not_depend_on_lora_dropout(tiny_model_dir):
    """Two reward calls on the same subsets agree exactly while the VLM trains with dropout."""
    vlm = vlm_with_a_trained_adapter(tiny_model_dir, dropout=0.5)
    scorer = CaptionScorer(vlm, batch_size=4)
    vlm.train()
    batch = _batch(n=2)
    subsets = torch.tensor([[[2, 7], [0, 1], [4, 5]], [[3, 2], [9, 8], [1, 6]]])

    def rewards():
        return subset_rewards(batch, subsets, coverage=0.0, likelihood=1.0, caption_nll=scorer.nll)

    first, second = rewards(), rewards()
    assert torch.equal(first, second) and first.std() > 0
    assert torch.equal(first, -scorer.nll(batch, subsets))
    assert vlm.model.training  # still training afterwards


def test_schedules_anneal():
    objective = ObjectiveSettings(temperature_start=2.0, temperature_end=0.5, temperature_steps=100,
                                  teacher_weight=1.0, teacher_anneal_steps=50)  # fmt: skip
    for batches, temp, weight in ((0, 2.0, 1.0), (25, None, 0.5), (50, 1.25, 0.0), (100, 0.5, 0.0), (500, 0.5, 0.0)):
        if temp is not None:
            assert objective.temperature(batches) == pytest.approx(temp)
        assert objective.teacher_weight_at(batches) == pytest.approx(weight)
    with pytest.raises(ValueError, match="group_size"):
        ObjectiveSettings(group_size=1)
    with pytest.raises(ValueError, match="nothing to train"):
        ObjectiveSettings(train_selector=False, train_lora=False)


def test_lora_joins_after_lora_start_batches():
    """"Teacher, then joint": the selector trains alone until ``lora_start``, then both sides do."""
    objective = ObjectiveSettings(train_lora=True, teacher_weight=1.0, teacher_anneal_steps=3, lora_start=3)
    assert [objective.sides(batch) for batch in range(5)] == [(True, False)] * 3 + [(True, True)] * 2
    objective = ObjectiveSettings(train_lora=True, lora_start=2, alternate_every=1)
    assert objective.sides(1) == (True, False)  # before the start: no LoRA turn either
    assert objective.sides(3) == (False, True)
    with pytest.raises(ValueError, match="lora_start"):
        ObjectiveSettings(lora_start=-1)


def test_teacher_scores_and_baseline_recalls_keep_a_bounded_number_of_videos(trainer_module):
    cache, computed = LRUCache(2), []
    for key in ("a", "b", "a", "c", "b"):
        assert cache.get(key, lambda: computed.append(key) or key.upper()) == key.upper()
    # "a" was used after "b", so "c" evicts "b"; "b" then comes back and evicts "a".
    assert computed == ["a", "b", "c", "b"] and len(cache) == 2 and "a" not in cache
    nothing = LRUCache(0)
    assert nothing.get("a", lambda: 1) == 1 and len(nothing) == 0

    batch = _batch(n=3)
    scored = []
    teacher = SimpleNamespace(scores=lambda frames, stamps: scored.append(1) or stamps.float())
    for cap, calls in ((3, 3), (2, 6)):  # the third video evicts the first, which evicts the second, ...
        scored.clear()
        scores = TeacherScores(teacher, cache_videos=cap)
        assert all(torch.equal(s, t.float()) for s, t in zip(scores(batch), batch["timestamps"]))
        scores(batch)
        assert len(scored) == calls and len(scores.cache) == cap
    assert isinstance(trainer_module.teacher_scores, TeacherScores)

    logged = {}
    module = SimpleNamespace(log=lambda name, value, **kwargs: logged.setdefault(name, []).append(value))
    baselines = ValidationBaselines([2, 4], TopKDecoder(), num_frames=2, cache_videos=1)
    baselines.log_baselines(module, batch, "val")
    first = {name: list(values) for name, values in logged.items()}
    assert sorted(first) == sorted(f"val_baseline/{n}_recall@{k}" for n in ("uniform", "pixel_l1", "xcorr") for k in (2, 4))
    assert all(len(values) == 3 for values in first.values())  # one value per video
    assert len(baselines.recalls) == 1
    logged.clear()
    baselines.log_baselines(module, batch, "val")  # recomputed past the cap: the same numbers
    assert logged == first


def test_validation_baselines_are_a_callback_the_module_adds_unless_told_not_to(tiny_model_dir):
    def module(**kwargs):
        return SelectorModule(FrameImportanceModel(feature_dim=32), FrameEncoder(str(tiny_model_dir)), num_frames=2,
                               eval_budgets=[2, 4], **kwargs)  # fmt: skip

    (callback,) = module().configure_callbacks()
    assert isinstance(callback, ValidationBaselines) and callback.budgets == [2, 4] and callback.captions is None
    assert module(validation_baselines=False).configure_callbacks() == []


def test_objectives_that_need_a_vlm_refuse_to_run_without_one(tiny_model_dir):
    encoder = FrameEncoder(str(tiny_model_dir))
    with pytest.raises(ValueError, match="vlm is not set"):
        SelectorModule(FrameImportanceModel(), encoder, objective=ObjectiveSettings(caption_weight=1.0))


def test_ranking_loss_prefers_the_subset_the_vlm_likes(tiny_model_dir):
    torch.manual_seed(0)
    module = SelectorModule(FrameImportanceModel(feature_dim=32, d_model=32, layers=1, heads=2, dropout=0.0),
                             FrameEncoder(str(tiny_model_dir)), num_frames=2)  # fmt: skip
    batch = _batch(n=1)

    def caption_nll(subsets):  # a VLM whose caption loss is low exactly when frame 5 is shown
        return 3.0 - 2.0 * (subsets == 5).any(-1).float()

    opt = torch.optim.Adam(module.importance.parameters(), lr=0.05)
    for _ in range(25):
        logits, _, _ = module.importance_logits(batch)
        loss = ranking_loss(logits, 2, caption_nll, candidates=8, temperature=1.0, rank_temperature=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits, _, _ = module.importance_logits(batch)
    assert logits[0].argmax().item() == 5


def _tiny_args(tmp_path, tiny_model_dir, synthetic, config):
    return fit_args(config, tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "2",
                    "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1",
                    "--model.init_args.eval_budgets", "[2, 4]")  # fmt: skip


@pytest.mark.parametrize("config", ["smoke_rl.yaml", "smoke_budget.yaml", "smoke_ranking.yaml", "smoke_joint.yaml"])
def test_selector_configs_train_cache_features_and_resume(config, tmp_path, tiny_model_dir, synthetic):
    cli = main(["fit", *_tiny_args(tmp_path, tiny_model_dir, synthetic, config)])
    module = cli.model
    assert cli.trainer.global_step == 2
    metrics = cli.trainer.callback_metrics
    for k in (2, 4):
        assert 0.0 <= metrics[f"val/recall@{k}"].item() <= 1.0
        assert f"val_baseline/xcorr_recall@{k}" in metrics and f"val_baseline/uniform_recall@{k}" in metrics
    # Every validation video has >= 4 frames here, so the mean over videos of each video's mean
    # over budgets equals the mean of the per-budget recalls.
    expected = (metrics["val/recall@2"] + metrics["val/recall@4"]) / 2
    assert metrics["val/recall_mean"].item() == pytest.approx(expected.item(), abs=1e-6)
    if module.vlm is not None:
        assert torch.isfinite(metrics["val/caption_loss"]) and torch.isfinite(metrics["val_baseline/uniform_caption_loss"])
    # Features were computed once per video and then read back from the on-disk cache (by the
    # dataset, which reads in the DataLoader worker's place here); the VLM's image embeddings too.
    encodings = cli.datamodule.encodings
    seen = len(cli.datamodule.datasets["train"]) + len(cli.datamodule.datasets["val"])
    stats = encodings.store.stats()
    expected = {"features", "image_embeds"} if module.vlm is not None else {"features"}
    teacher = module.objective.teacher_weight > 0 or module.importance.score_inputs > 0
    baselines = {"baseline_scores_pixel_l1", "baseline_scores_xcorr"}  # scored on validation videos only
    assert set(stats) == expected | baselines | ({"teacher_scores"} if teacher else set())
    for name in expected:
        assert stats[name]["entries"] == seen and stats[name]["hits"] > 0
    for name in baselines:
        assert stats[name]["entries"] == len(cli.datamodule.datasets["val"])
    if teacher:  # the teacher's scores, cached for the training videos a step distilled from
        assert 0 < stats["teacher_scores"]["entries"] <= len(cli.datamodule.datasets["train"])
    frames = sum(len(item["timestamps"]) for split in ("train", "val") for item in cli.datamodule.datasets[split])
    assert encodings.passes["features"] == frames  # each candidate frame went through the tower once
    # The checkpoint holds only what trains; a fresh module restores the same importance model.
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    # last.ckpt is the final state even though training stopped on max_steps after the last
    # top-k save (trainer.checkpointing.FinalCheckpoint).
    assert ckpt["global_step"] == cli.trainer.global_step == 2
    # global_step counts batches, also when the selector and LoRA both train; the schedules'
    # clock is checkpointed for resume.
    assert ckpt[BATCHES_KEY] == module.batches_done == 2
    assert ckpt["state_dict"] and all(k.startswith("importance.") or "lora_" in k for k in ckpt["state_dict"])
    # A validation batch as a step gets it (read from the caches, its encoder outputs attached).
    batch = cli.datamodule.on_after_batch_transfer(next(iter(cli.datamodule.val_dataloader())), 0)
    module.eval()
    with torch.no_grad():
        expected, _, _ = module.importance_logits(batch)
    fresh = main(_tiny_args(tmp_path, tiny_model_dir, synthetic, config), run=False)
    restore_trainable_state(fresh.model, ckpt)
    fresh.model.on_load_checkpoint(ckpt)
    assert fresh.model.batches_done == module.batches_done
    fresh.model.eval()
    with torch.no_grad():
        got, _, _ = fresh.model.importance_logits(batch)
    assert torch.allclose(got, expected, atol=1e-6)
    rows = list(csv.DictReader(open(Path(cli.trainer.logger.log_dir) / "metrics.csv")))
    assert any(r.get("train/loss") for r in rows)


class _Batches(pl.Callback):
    """Counts training batches."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1


@pytest.mark.parametrize("alternate", [0, 1], ids=["both-sides", "alternating"])
def test_max_steps_counts_training_batches_whichever_sides_train(alternate, tmp_path, tiny_model_dir, synthetic):
    """``trainer.max_steps: 3`` is 3 batches, with the selector and LoRA stepping on each or taking turns."""
    args = fit_args("smoke_joint.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "3",
                    "--trainer.max_epochs", "100", "--trainer.limit_val_batches", "0", "--data.batch_size", "1",
                    "--model.init_args.objective.group_size", "2",
                    "--model.init_args.objective.alternate_every", str(alternate))  # fmt: skip
    cli = main(args, run=False)
    probe = _Batches()
    cli.trainer.callbacks.append(probe)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert probe.batches == cli.trainer.global_step == cli.model.batches_done == 3
    steps = {}
    for side, opt in zip(cli.model._optimizer_sides, cli.trainer.optimizers):
        steps[side] = max(int(state["step"]) for state in opt.state.values())  # AdamW's own count
    assert steps == ({"selector": 3, "lora": 3} if not alternate else {"selector": 2, "lora": 1})
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_text_queries_reach_the_policy(tiny_model_dir):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    torch.manual_seed(0)
    model = FrameImportanceModel(feature_dim=32, d_model=32, layers=1, heads=2, dropout=0.0, query_vocab_size=vocab)
    torch.nn.init.normal_(model.head.weight)  # the untrained head is zero: make logits depend on the input
    module = SelectorModule(model, FrameEncoder(str(tiny_model_dir)), num_frames=2)
    module.eval()
    batch = _batch(n=2)
    batch["query"] = ["a red circle moves left", "a blue square moves up"]
    with torch.no_grad():
        with_queries, _, _ = module.importance_logits(batch)
        batch["query"] = [None, None]
        without, _, _ = module.importance_logits(batch)
    # Same frames in both rows' place would give the same logits; the queries change them.
    assert not torch.allclose(with_queries, without)
    small = SelectorModule(FrameImportanceModel(feature_dim=32, query_vocab_size=10),
                            FrameEncoder(str(tiny_model_dir)), num_frames=2)  # fmt: skip
    batch["query"] = ["a red circle", None]
    with pytest.raises(ValueError, match="query_vocab_size=10"):
        small.importance_logits(batch)


def test_synthetic_joint_and_uniform_configs_differ_only_in_the_selector():
    """trainer/evaluation/RESULTS.md compares these runs' caption losses: everything but the frame choice must match."""
    joint = written_config(CONFIGS / "synthetic_joint.yaml")  # bases and own keys, merged
    uniform = written_config(CONFIGS / "synthetic_uniform.yaml")
    assert joint["data"] == uniform["data"] and joint["seed_everything"] == uniform["seed_everything"]
    for key in ("max_epochs", "check_val_every_n_epoch", "accelerator"):
        assert joint["trainer"][key] == uniform["trainer"][key], key
    j, u = joint["model"]["init_args"], uniform["model"]["init_args"]
    assert j["num_frames"] == u["num_frames"] and j["vlm"] == u["vlm"]
    assert j["lora_optimizer"] == u["optimizer"]
    assert j["objective"]["caption_weight"] == 1.0 and j["objective"]["train_lora"]
    assert u["selector"]["class_path"] == "models.selectors.UniformSelector"


def _budget_module(tiny_model_dir, **kwargs):
    torch.manual_seed(0)
    model = FrameImportanceModel(feature_dim=32, d_model=32, layers=1, heads=2, dropout=0.0, max_budget=16)
    objective = ObjectiveSettings(group_size=16, entropy_weight=0.0, temperature_start=1.0, temperature_end=1.0)
    return SelectorModule(model, FrameEncoder(str(tiny_model_dir)), objective=objective, **kwargs)


def test_budget_range_draws_every_budget_log_uniformly_and_fits_the_batch(tiny_model_dir):
    module = _budget_module(tiny_model_dir, num_frames=2, budget_range=[2, 8], eval_budgets=[2, 4, 8])
    torch.manual_seed(0)
    draws = [module.training_budget(_batch(t=10)) for _ in range(4000)]
    counts = {k: draws.count(k) / len(draws) for k in range(2, 9)}
    assert set(draws) == set(range(2, 9))
    # Log-uniform over [2, 9): P(K=k) = log((k+1)/k) / log(9/2).
    for k, share in counts.items():
        assert share == pytest.approx(torch.tensor((k + 1) / k).log().item() / torch.tensor(4.5).log().item(), abs=0.02)
    short = _batch(t=5)
    assert max(module.training_budget(short) for _ in range(200)) == 5  # never more frames than the shortest video


def test_budget_range_needs_a_budget_aware_selector_that_covers_it(tiny_model_dir):
    encoder = FrameEncoder(str(tiny_model_dir))
    with pytest.raises(ValueError, match="budget-aware"):
        SelectorModule(FrameImportanceModel(feature_dim=32), encoder, budget_range=[2, 8])
    with pytest.raises(ValueError, match="max_budget=8"):
        SelectorModule(FrameImportanceModel(feature_dim=32, max_budget=8), encoder, budget_range=[2, 16])
    with pytest.raises(ValueError, match="max_budget=8"):
        SelectorModule(FrameImportanceModel(feature_dim=32, max_budget=8), encoder, eval_budgets=[4, 32])
    with pytest.raises(ValueError, match="low <= high"):
        SelectorModule(FrameImportanceModel(feature_dim=32, max_budget=8), encoder, budget_range=[6, 2])


def test_one_budget_aware_mask_learns_different_frames_for_different_budgets(tiny_model_dir):
    """The best 2 frames are not a subset of the best 4: a K-agnostic ranking cannot learn both."""
    module = _budget_module(tiny_model_dir, num_frames=2, budget_range=[2, 4], eval_budgets=[2, 4])
    batch = _batch(n=1)
    best = {2: [4, 5], 4: [0, 1, 8, 9]}

    def reward(_, subsets):  # fraction of the budget's best frames drawn
        k = subsets.shape[-1]
        hits = torch.isin(subsets, torch.tensor(best.get(k, []))).float().sum(-1)
        return hits / k

    opt = torch.optim.Adam(module.importance.parameters(), lr=0.01)
    torch.manual_seed(1)
    for step in range(300):
        k = (2, 4)[step % 2]
        logits, _, mask = module.importance_logits(batch, k)
        loss, _ = policy_gradient_loss(logits, mask, k, lambda s: reward(batch, s), group_size=16, temperature=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        for k, frames in best.items():
            logits, _, _ = module.importance_logits(batch, k)
            assert sorted(logits[0].topk(k).indices.tolist()) == frames, k


def test_a_selector_with_score_inputs_reads_the_teachers_scores(tiny_model_dir):
    torch.manual_seed(0)
    model = FrameImportanceModel(feature_dim=32, d_model=32, layers=1, heads=2, dropout=0.0, score_inputs=1)
    torch.nn.init.normal_(model.head.weight)
    module = SelectorModule(model, FrameEncoder(str(tiny_model_dir)), num_frames=2).eval()
    batch = _batch(t=10)
    batch["frames"][1] = batch["frames"][1][:7]  # a shorter video: padded teacher scores
    batch["timestamps"][1] = batch["timestamps"][1][:7]
    with torch.no_grad():
        logits, _, _ = module.importance_logits(batch)
        for i, frames in enumerate(batch["frames"]):
            stamps = batch["timestamps"][i]
            alone = model(module.encoder(frames)[None], stamps[None].float(),
                          frame_scores=module.teacher.scores(frames, stamps)[None])  # fmt: skip
            assert torch.allclose(logits[i, : len(stamps)], alone[0], atol=1e-5)
    cache = module.teacher_scores.cache  # computed once per video, shared with the teacher loss
    assert len(cache) == 2 and "v0" in cache and "v1" in cache
    selector = module.inference_selector()  # what `evaluate --selectors learned` and exports score with: the same teacher scores
    assert selector.teacher is module.teacher
    frames, stamps = batch["frames"][0], batch["timestamps"][0]
    assert torch.allclose(selector.scores(frames, stamps, 2), logits[0], atol=1e-5)
