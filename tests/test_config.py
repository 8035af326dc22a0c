import pytest

from allmlp.config import ConfigError, build_config, load_config, parse_value, save_config


def test_overrides_reach_their_sections():
    cfg = build_config("fashion_mixer", ["model.depth=6", "optim.lr=3e-3", "train.max_steps=2000",
                                         "data.augment=false"])
    assert cfg.model.args == {"depth": 6, "channels_mlp_dim": 256}  # the preset sets channels_mlp_dim
    assert cfg.optim.lr == pytest.approx(3e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.train.max_steps == 2000 and cfg.data.augment is False


def test_seed_option_names_are_aliases():
    cfg = build_config({"model": {"name": "mixer_tiny_28"}}, ["optimizer.lr=1e-4", "batch_size=1000",
                                                               "max_epochs=100", "accumulate_grad_batches=4"])
    assert cfg.optim.lr == pytest.approx(1e-4)
    assert (cfg.data.batch_size, cfg.train.max_epochs, cfg.train.accumulate_grad_batches) == (1000, 100, 4)


def test_unknown_key_names_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'.*did you mean lr"):
        build_config("fashion_mixer", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'model.dept'.*did you mean depth"):
        build_config("fashion_mixer", ["model.dept=3"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"train.max_steps: expected int, got 'many'"):
        build_config("fashion_mixer", ["train.max_steps=many"])
    with pytest.raises(ConfigError, match=r"model.depth: expected int"):
        build_config("fashion_mixer", ["model.depth=2.5"])


def test_unknown_preset_and_model():
    with pytest.raises(ConfigError, match="unknown preset 'fashion_mixr'; did you mean fashion_mixer"):
        build_config("fashion_mixr")
    with pytest.raises(ConfigError, match="model.name: unknown model 'nope'"):
        build_config("fashion_mixer", ["model.name=nope"])


def test_parse_value():
    assert parse_value("3e-3") == pytest.approx(0.003)
    assert parse_value("true") is True and parse_value("[1, 2]") == [1, 2] and parse_value("abc") == "abc"


def test_config_yaml_round_trip(tmp_path):
    cfg = build_config("fashion_mixer", ["model.depth=3", "optim.betas=[0.8,0.9]"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict()
    assert again.optim.betas == (0.8, 0.9)


def test_swapping_the_model_drops_the_presets_model_keys():
    # names_bengio sets embedding_dim and hidden_dim; chat_mixer has embedding_dim but no hidden_dim
    cfg = build_config("names_bengio", ["model.name=chat_mixer", "model.depth=3"])
    assert cfg.model.name == "chat_mixer" and cfg.model.args == {"embedding_dim": 24, "depth": 3}
    with pytest.raises(ConfigError, match="model.hidden_dim"):  # typed by the user: still checked
        build_config("names_bengio", ["model.name=chat_mixer", "model.hidden_dim=64"])
