import pytest

from byol_tf.byol import presets


def test_paper_presets():
    assert presets.imagenet_preset(1000) == presets.Preset(0.2, 0.996, 1.5e-6)
    assert presets.imagenet_preset(300) == presets.Preset(0.3, 0.99, 1e-6)
    assert presets.imagenet_preset(100) == presets.Preset(0.45, 0.99, 1e-6)
    assert presets.imagenet_preset(40) == presets.Preset(0.45, 0.97, 1e-6)


def test_unknown_epochs_raise():
    with pytest.raises(ValueError, match="epochs=200"):
        presets.imagenet_preset(200)
