"""core.building.build and core.checks: every way a config value can be refused comes out as one UserError
that names the key."""

import pytest
from omegaconf import OmegaConf

from vae_lightning.core.building import build
from vae_lightning.core.checks import SEED, check_settings
from vae_lightning.core.errors import UserError

CLASSIFIER = "vae_lightning.evaluation.classifier.DigitClassifier"


def test_a_parameter_error_names_its_key_under_the_group():
    with pytest.raises(UserError, match=r"prior\.alpha"):
        build({"_target_": "vae_lightning.latent.BetaPrior", "alpha": -1.0, "beta": 2.0}, "prior", latent_dim=2)


def test_an_argument_the_class_does_not_take_lists_the_ones_it_does():
    with pytest.raises(UserError, match=r"classifier\.model\.width is not a setting of DigitClassifier: "
                                        r"choose one of channels, features, dropout, n_classes"):
        build({"_target_": CLASSIFIER, "width": 3}, "classifier.model")


def test_a_value_of_the_wrong_kind_that_no_check_caught_is_one_line_naming_the_group():
    with pytest.raises(UserError, match=r"^classifier\.model could not be built \(DigitClassifier: too many "
                                        r"values to unpack") as caught:
        build(OmegaConf.create({"_target_": CLASSIFIER, "channels": "four"}), "classifier.model")
    assert "\n" not in str(caught.value)


def test_other_errors_are_not_hidden():
    with pytest.raises(Exception, match="zuko|No module|Error locating target") as caught:
        build({"_target_": "vae_lightning.no_such_module.Thing"}, "prior")
    assert not isinstance(caught.value, UserError)


@pytest.mark.parametrize("value", ["four", -1, 2**32, 1.5, None])
def test_a_seed_is_an_integer_torch_accepts(value):
    with pytest.raises(UserError, match=r"^seed=\S+ is invalid: must be an integer in 0\.\.4294967295$"):
        check_settings(OmegaConf.create({"seed": value}), {"seed": SEED})


@pytest.mark.parametrize("value", [0, 12345, 2**32 - 1])
def test_seeds_torch_accepts_pass(value):
    check_settings(OmegaConf.create({"seed": value}), {"seed": SEED})
