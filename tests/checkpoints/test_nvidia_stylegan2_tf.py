"""NVlabs/stylegan2 TensorFlow pickles (ganprior_core/checkpoints/nvidia_stylegan2_tf.py), against
tests/stylegan2_reference.py."""
from __future__ import annotations

import pytest

from ganprior_core.checkpoints import (
    NVIDIA_SG2_TF,
    load_checkpoint,
)
from tests.stylegan2_builders import (
    TOLERANCE,
    max_error_nvidia,
    nvidia_state,
    tf_generator,
    tf_pickle,
)


@pytest.mark.parametrize("protocol", [3, 4])
def test_tf_pickle_matches_the_reference(tmp_path, protocol):
    gs_state = nvidia_state(5, resolution=32)
    path = tf_pickle(tmp_path / "stylegan2-tiny-config-f.pkl", tf_generator(gs_state, 32),
                     g=tf_generator(nvidia_state(6, resolution=32), 32), protocol=protocol)
    loaded = load_checkpoint(path)
    assert (loaded.family, loaded.source_format, loaded.source_network) == \
        ("stylegan2", NVIDIA_SG2_TF, "Gs")
    assert loaded.generator.config.resolution == 32 and loaded.generator.config.conv_clamp is None
    assert max_error_nvidia(loaded.generator, gs_state) <= TOLERANCE
