"""What a StyleGAN2 file claims about its architecture must agree with its weights
(ganprior_core/checkpoints/stylegan2_layout.py), and the weights must be usable."""
from __future__ import annotations

import torch

from tests.checkpoint_builders import load_refused as refused
from tests.stylegan2_builders import (
    KWARGS,
    MAPPING,
    W,
    generator_kwargs,
    nvidia_state,
    rosinality_converted,
    rosinality_state,
    sg2ada_snapshot,
    tf_generator,
    tf_pickle,
    write,
)


def test_claims_that_disagree_with_the_weights_and_bad_weights_are_refused(tmp_path):
    state = nvidia_state(30)
    wrong_plan = generator_kwargs(**{**KWARGS, "channel_base": 256})
    refused(write(tmp_path / "plan.pkl", sg2ada_snapshot(state, None, wrong_plan)),
            "plan channels", "channel_base 256")
    wrong_z = {**generator_kwargs(**KWARGS), "z_dim": 9}
    refused(write(tmp_path / "z.pkl", sg2ada_snapshot(state, None, wrong_z)), "z_dim = 9")
    refused(tf_pickle(tmp_path / "tf_resolution.pkl", tf_generator(state, 32)),
            "static_kwargs claim resolution = 32 but its weights have 16")
    refused(tf_pickle(tmp_path / "tf_plan.pkl", tf_generator(state, 16, fmap_base=256)),
            "plan channels [16, 16, 16] (fmap_base 256, fmap_max 16)", "have [16, 16, 8]")
    refused(tf_pickle(tmp_path / "tf_dlatent.pkl", tf_generator(state, 16, dlatent_size="8")),
            "dlatent_size = '8'")
    missing = dict(state)
    del missing["synthesis.b8.conv1.noise_const"]
    refused(write(tmp_path / "missing.pkl", sg2ada_snapshot(missing, None,
                                                            generator_kwargs(**KWARGS))),
            "synthesis.b8.conv1.noise_const", "missing")
    ros = rosinality_state(16, [16, 8, 8], W, MAPPING, seed=31)
    ros["convs.1.conv.weight"][0, 0, 0, 0, 0] = float("nan")
    refused(rosinality_converted(tmp_path / "nan.pt", ros, torch.zeros(W)), "NaN")
    ros = rosinality_state(16, [16, 8, 8], W, MAPPING, seed=31)
    ros["convs.0.conv.blur.kernel"] = torch.ones(4, 4) / 16
    refused(rosinality_converted(tmp_path / "blur.pt", ros, torch.zeros(W)), "blur kernel")
    refused(rosinality_converted(tmp_path / "avg.pt", rosinality_state(
        16, [16, 8, 8], W, MAPPING, seed=31), torch.zeros(W + 1)), "latent_avg")
