"""Scene-boundary BiLSTM: targets, training, and the selector that loads its checkpoint."""

from pathlib import Path

import pytest
import torch

from models.scene import SceneBoundaryModel, SceneBoundarySelector
from trainer.loading import LoadError, TrainedSelector
from trainer.__main__ import main
from trainer.scene import SceneBoundaryModule, boundary_targets

CONFIG = Path(__file__).parents[1] / "configs" / "scene_boundary.yaml"


def test_targets_mark_frames_near_event_starts_and_ends():
    t = torch.arange(0.0, 6.0, 0.5)  # 0.0, 0.5, ..., 5.5
    events = [{"start": 1.0, "end": 2.2, "caption": "a"}, {"start": 4.9, "end": 5.0, "caption": "b"}]
    got = boundary_targets(t, events, tolerance=0.5)
    # within 0.5 s of 1.0 -> 0.5, 1.0, 1.5; of 2.2 -> 2.0, 2.5; of 4.9/5.0 -> 4.5, 5.0, 5.5
    expected = torch.zeros(12)
    expected[[1, 2, 3, 4, 5, 9, 10, 11]] = 1.0
    assert torch.equal(got, expected)
    assert torch.equal(boundary_targets(t, events, tolerance=0.0), (t == 1.0).float() + (t == 5.0).float())
    assert torch.equal(boundary_targets(t, [], tolerance=0.5), torch.zeros(12))


def _cut_video(seed: int, length: int = 24, cuts=(8, 16)):
    """Flat-colour shots with hard cuts; the events start/end at the cuts."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.empty(length, 3, 16, 16, dtype=torch.uint8)
    edges = [0, *cuts, length]
    for a, b in zip(edges[:-1], edges[1:]):
        frames[a:b] = torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.uint8)
    t = torch.arange(length) * 0.5
    events = [{"start": float(t[a]), "end": float(t[b - 1]), "caption": "x"} for a, b in zip(edges[:-1], edges[1:])]
    return frames, t, events


def test_model_shapes_and_batched_forward_matches_single():
    torch.manual_seed(0)
    model = SceneBoundaryModel(hidden=8, thumb=4)
    videos = [_cut_video(0, 24)[0], _cut_video(1, 10, cuts=(5,))[0]]
    batched = model(videos)
    assert [x.shape for x in batched] == [(24,), (10,)]
    for frames, logits in zip(videos, batched):
        torch.testing.assert_close(logits, model(frames), rtol=1e-5, atol=1e-6)
    assert torch.equal(model.features(videos[0])[0, 3 * 16 :], torch.zeros(3 * 16))  # no change at frame 0


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    module = SceneBoundaryModule(SceneBoundaryModel(hidden=16), tolerance=0.25)
    videos = [_cut_video(s) for s in range(4)]
    batch = {"frames": [v[0] for v in videos], "timestamps": [v[1] for v in videos], "events": [v[2] for v in videos]}
    opt = torch.optim.AdamW(module.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss, _, _ = module.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def _fit_args(tmp_path, synthetic, *extra):
    _, paths, _ = synthetic
    return [
        "fit", "--config", str(CONFIG),
        "--model.init_args.model.init_args.hidden", "16",
        "--data.train_file", str(paths["train"]),
        "--data.val_file", str(paths["val"]),
        "--data.test_file", str(paths["test"]),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--trainer.enable_progress_bar", "false",
        "--checkpoint.dirpath", str(tmp_path / "ckpt"),
        "--predictions.output", str(tmp_path / "pred.json"),
        *extra,
    ]  # fmt: skip


def test_trained_selector_loads_the_fit_checkpoint_and_reproduces_its_scores(tmp_path, synthetic):
    cli = main(_fit_args(tmp_path, synthetic, "--trainer.max_steps", "3"))
    assert cli.trainer.global_step == 3
    last = tmp_path / "ckpt" / "last.ckpt"
    hp = torch.load(last, weights_only=True)["hyper_parameters"]
    assert hp["model"]["init_args"]["hidden"] == 16 and hp["tolerance"] == 0.5

    selector = TrainedSelector(str(last))  # model rebuilt from the checkpoint's hparams
    assert isinstance(selector.inner, SceneBoundarySelector) and selector.inner.model.hidden == 16
    assert not any(p.requires_grad for p in selector.parameters())
    selector.train()
    assert not selector.inner.model.training  # frozen stays in eval under Lightning's train()

    trained = cli.model.model.eval()
    dataset = cli.datamodule.datasets["train"]
    for i in range(2):
        item = dataset[i]
        with torch.no_grad():
            expected = torch.sigmoid(trained(item["frames"]))
        scores = selector.scores(item["frames"], item["timestamps"])
        assert scores.shape == (len(item["timestamps"]),)
        assert torch.equal(scores, expected)
        chosen = selector.select(item["frames"], item["timestamps"], 4)
        assert chosen.tolist() == sorted(expected.topk(4).indices.tolist())


def test_bad_checkpoints_raise_clear_errors(tmp_path, synthetic):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        TrainedSelector(str(tmp_path / "nope.ckpt"))
    with pytest.raises(LoadError, match="not an export"):
        TrainedSelector(str(tmp_path))
    torch.save({"state_dict": {"vlm.lora_A": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(LoadError, match="no _class_path"):
        TrainedSelector(str(tmp_path / "other.ckpt"))
    module = SceneBoundaryModule(SceneBoundaryModel(hidden=16))
    spec = {"class_path": "models.scene.SceneBoundaryModel", "init_args": {"hidden": 32}}
    hparams = {"_class_path": "trainer.scene.SceneBoundaryModule", "model": spec}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams}, tmp_path / "small.ckpt")
    with pytest.raises(RuntimeError, match="size mismatch"):  # strict: weights that do not fit are an error
        TrainedSelector(str(tmp_path / "small.ckpt"))
    # One trust rule: only this project's classes, and no remote code.
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "os.system"}}, tmp_path / "evil.ckpt")
    with pytest.raises(LoadError, match=r"refusing hyper_parameters\._class_path = 'os\.system'"):
        TrainedSelector(str(tmp_path / "evil.ckpt"))
    remote = {**hparams, "model": {**spec, "init_args": {"trust_remote_code": True}}}
    torch.save({"state_dict": {}, "hyper_parameters": remote}, tmp_path / "remote.ckpt")
    with pytest.raises(LoadError, match="trust_remote_code"):
        TrainedSelector(str(tmp_path / "remote.ckpt"))
