"""The generator family is one interface: every registered family satisfies it, `family_of` is
the only place that tells families apart, and nothing else in the code asks which family it has."""
import inspect
import re

import pytest
import torch

from ganprior_core import MultiLatentConfig, checkpoints
from ganprior_core.families import FAMILIES, GeneratorFamily, SplitAdapter, family_of
from ganprior_core.families.base import feature_map_elements
from tests.pack_under_test import ROOT
from tests.tiny_priors import TINY_PRIORS


def protocol_methods(protocol) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(protocol).items()
            if callable(member) and not name.startswith("_")}


def test_every_family_has_a_tiny_prior_for_the_tests():
    assert set(TINY_PRIORS) == set(FAMILIES)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_satisfies_the_interface_with_the_same_signatures(name):
    family = FAMILIES[name]
    assert isinstance(family, GeneratorFamily) and family.name == name
    for method, signature in protocol_methods(GeneratorFamily).items():
        implemented = inspect.signature(getattr(type(family), method))
        assert list(implemented.parameters) == list(signature.parameters), (name, method)


def test_family_of_tells_a_generator_and_its_config_apart_and_refuses_anything_else(tiny_prior):
    family = family_of(tiny_prior)
    assert family is family_of(tiny_prior.config) is FAMILIES[family.name]
    assert isinstance(tiny_prior, family.generator_type)
    with pytest.raises(ValueError, match="not a generator this method can split: Linear"):
        family_of(torch.nn.Linear(2, 2))


def test_a_familys_split_satisfies_the_methods_view_of_it(tiny_prior):
    family = family_of(tiny_prior)
    config = MultiLatentConfig(num_codes=2, split_layer=2)
    split = family.split(tiny_prior, config)
    assert isinstance(split, SplitAdapter)
    codes = split.init_codes(2, seed=0, split=2)
    features = split.g1(codes, 2)
    fused = split.fuse(features, torch.ones(2, split.feature_shape(2)[0]) / 2, torch.full((2,), 0.5))
    image = split.g2(fused, split.g2_ws(codes, split.init_g2_styles(codes, 2), 2), 2)
    assert image.shape == (1, 3, split.resolution, split.resolution)


def test_split_numbering_of_each_family_puts_g1s_end_at_the_asked_feature_size():
    pggan, stylegan2 = TINY_PRIORS["pggan"]().config, TINY_PRIORS["stylegan2"]().config
    # PGGAN: layer 0 is the dense 4x4 layer, two layers a block; StyleGAN2: layer 0 is b4.conv1.
    assert [FAMILIES["pggan"].split_for_feature_resolution(pggan, r) for r in (4, 8, 16)] == [2, 4, 6]
    assert [FAMILIES["stylegan2"].split_for_feature_resolution(stylegan2, r) for r in (4, 8, 16)] == [1, 3, 5]
    for family, config in ((FAMILIES["pggan"], pggan), (FAMILIES["stylegan2"], stylegan2)):
        assert config.feature_shape(family.split_for_feature_resolution(config, 8))[1:] == (8, 8)


def test_activation_estimate_counts_g1s_maps_once_per_code(tiny_prior):
    config = tiny_prior.config
    one, three = (family_of(tiny_prior).activation_elements(config, 2, codes) for codes in (1, 3))
    g1_maps = sum(torch.Size(config.feature_shape(k)).numel() for k in (1, 2))
    assert three - one == 2 * g1_maps
    assert one == feature_map_elements(config, 2, 1)


def test_every_format_the_loader_can_report_has_a_label_in_exactly_one_family():
    ids = [checkpoints.GENFORCE, checkpoints.GENFORCE_ZOO, checkpoints.NVIDIA_TF,
           checkpoints.NVIDIA_THEANO, checkpoints.GANPRIOR, checkpoints.NVIDIA_SG2ADA,
           checkpoints.NVIDIA_SG2_TF, checkpoints.ROSINALITY, checkpoints.GANPRIOR_SG2]
    for format_id in ids:
        owners = [family.name for family in FAMILIES.values() if format_id in family.format_labels]
        assert len(owners) == 1, (format_id, owners)


# "Which family is this?" asked outside ganprior_core/families/: an isinstance on a family's
# generator or config type, or a comparison with a family's name.
FAMILY_QUESTION = re.compile(
    r'isinstance\([^)]*(PGGAN|StyleGAN2)(Generator|Config)'
    r'|family_of\([^)]*\)\s*[=!]='
    r'|\.family\s*[=!]=\s*"'
    r'|[=!]=\s*"(stylegan2|pggan)"|"(stylegan2|pggan)"\s*[=!]=')


def test_nothing_outside_the_family_modules_asks_which_family_it_has():
    files = [*sorted((ROOT / "ganprior_core").rglob("*.py")), *sorted((ROOT / "nodes").glob("*.py"))]
    asked = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in files if "families" not in path.relative_to(ROOT).parts
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if FAMILY_QUESTION.search(line)]
    assert not asked, "\n".join(asked)


def test_the_library_guides_format_table_lists_exactly_the_formats_the_families_label():
    guide = (ROOT / "ganprior_core" / "README.md").read_text()
    table = guide[guide.index("## Checkpoint formats"):guide.index("`python -m ganprior_core convert")]
    rows = re.findall(r"^\| (\w+) \| `([a-z0-9-]+)` \|", table, flags=re.MULTILINE)
    labelled = {(family.label, format_id) for family in FAMILIES.values()
                for format_id in family.format_labels}
    assert sorted(rows) == sorted(labelled)
