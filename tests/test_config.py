import pytest

from allmlp.config import ConfigError, parse_value, save_config
from allmlp.configure import build_config, load_config


def test_overrides_reach_their_sections():
    cfg = build_config("fashion_mixer", ["model.depth=6", "optim.lr=3e-3", "train.max_steps=2000",
                                         "data.augment=false"])
    assert cfg.model.args == {"depth": 6, "channels_mlp_dim": 256}  # the preset sets channels_mlp_dim
    assert cfg.optim.lr == pytest.approx(3e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.train.max_steps == 2000 and cfg.data.augment is False


def test_reference_option_names_are_aliases():
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


@pytest.mark.parametrize("text, message", [
    ("", r"config.yaml is empty: expected a mapping of sections \(model, data, optim, train\)"),
    ("just a string\n", r"config.yaml: expected a mapping of sections .*found a str"),
    ("- 1\n- 2\n", r"config.yaml: expected a mapping of sections .*found a list"),
    ("train: [1]\n", r"config.yaml: section 'train' must be a mapping of keys, found list \[1\]"),
    ("data: 3\n", r"config.yaml: section 'data' must be a mapping of keys, found int 3"),
    ("model: 5\n", r"config.yaml: model.name: unknown model '5'"),
    ("train: {log_interval: 0}\n", r"config.yaml: train.log_interval=0: must be >= 1"),
    ("preset: [1]\n", r"config.yaml: preset: expected str"),
    ("train: {max_steps: [1\n", r"config.yaml: not valid YAML \(line 2: "),
    ("model: &m {name: mlp_classifier, inner: *m}\n", r"config.yaml: 'model.inner.inner.inner.name': nested deeper"),
])
def test_config_yaml_that_is_not_a_config_names_the_file(tmp_path, text, message):
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "config.yaml")


def test_config_yaml_that_is_not_utf8_names_file_and_byte(tmp_path):
    (tmp_path / "config.yaml").write_bytes(b"train:\n  max_steps: 2\xff\n")
    with pytest.raises(ConfigError, match=r"config.yaml: not UTF-8 text \(byte 21\)"):
        load_config(tmp_path / "config.yaml")


@pytest.mark.parametrize("name", ["config.yaml", "preset.yaml"])
def test_python_tags_in_yaml_run_nothing(tmp_path, name):
    marker = tmp_path / "marker"
    (tmp_path / name).write_text(f"train:\n  run_name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=rf"{name}: not valid YAML \(line 2: could not determine a constructor "
                                         r"for the tag 'tag:yaml.org,2002:python/object/apply:os.system'\)"):
        load_config(tmp_path / name) if name == "config.yaml" else build_config(str(tmp_path / name))
    assert not marker.exists()


def test_a_value_nesting_aliases_gives_a_short_message(tmp_path):
    levels = ["&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for previous, name in zip("abcde", "bcdef"):  # 10**6 leaves through aliases: cheap to parse, a 3 MB repr
        levels.append(f"&{name} [{', '.join(['*' + previous] * 10)}]")
    (tmp_path / "config.yaml").write_text(f"data: {{path: [{', '.join(levels)}]}}\n")
    with pytest.raises(ConfigError, match=r"config.yaml: data.path: expected str, got \[") as error:
        load_config(tmp_path / "config.yaml")
    assert len(str(error.value)) < 400 + len(str(tmp_path))


def test_empty_sections_and_a_model_given_by_name_only(tmp_path):
    (tmp_path / "preset.yaml").write_text("model: mlp_classifier\ndata:\ntrain:\n  max_steps: 3\n")
    cfg = build_config(str(tmp_path / "preset.yaml"))
    assert (cfg.model.name, cfg.train.max_steps) == ("mlp_classifier", 3)


@pytest.mark.parametrize("override, message", [
    ("train.max_steps=-1", r"train.max_steps=-1: must be >= 0"),
    ("train.max_epochs=-1", r"train.max_epochs=-1.0: must be >= 0"),
    ("train.max_minutes=-5", r"train.max_minutes=-5.0: must be >= 0"),
    ("train.log_interval=0", r"train.log_interval=0: must be >= 1"),
    ("train.eval_interval=-1", r"train.eval_interval=-1: must be >= 0"),
    ("train.checkpoint_interval=-1", r"train.checkpoint_interval=-1: must be >= 0"),
    ("train.viz_interval=-2", r"train.viz_interval=-2: must be >= 0"),
    ("train.accumulate_grad_batches=0", r"train.accumulate_grad_batches=0: must be >= 1"),
    ("train.devices=0", r"train.devices=0: must be >= 1"),
    ("train.num_nodes=0", r"train.num_nodes=0: must be >= 1"),
    ("train.threads=-1", r"train.threads=-1: must be >= 0"),
    ("train.seed=-3", r"train.seed=-3: must be in \[0, 2\*\*32\)"),
    ("train.precision=bf15", r"train.precision='bf15': must be one of auto, 32-true, 32, bf16-mixed"),
    ("train.strategy=dpp", r"train.strategy='dpp': must be one of auto, ddp"),
    ("train.accelerator=gpus", r"train.accelerator='gpus': must be one of auto, cpu"),
    ("data.batch_size=0", r"data.batch_size=0: must be >= 1"),
    ("data.eval_batch_size=0", r"data.eval_batch_size=0: must be >= 1"),
    ("data.context_length=-4", r"data.context_length=-4: must be >= 0"),
    ("data.train_fraction=0", r"data.train_fraction=0.0: must be in \(0, 1\]"),
    ("data.val_fraction=1", r"data.val_fraction=1.0: must be in \[0, 1\)"),
    ("data.val_fraction=0.2", r"data.train_fraction=0.9 \+ data.val_fraction=0.2: must sum to at most 1"),
    ("data.val_size=-1", r"data.val_size=-1: must be >= 0"),
    ("data.crop_padding=-1", r"data.crop_padding=-1: must be >= 0"),
    ("data.eval_targets=-1", r"data.eval_targets=-1: must be >= 0"),
    ("data.repeats=0", r"data.repeats=0: must be >= 1"),
    ("data.max_chars=-1", r"data.max_chars=-1: must be >= 0"),
    ("data.unknown_chars=keep", r"data.unknown_chars='keep': must be one of error, drop"),
    ("data.type=windows", r"data.type='windows': must be one of auto, window, causal, centered"),
    ("data.val_lines=-1", r"data.val_lines=-1: must be >= 0"),
    ("optim.lr=0", r"optim.lr=0.0: must be > 0"),
    ("optim.lr=nan", r"optim.lr=nan: must be > 0"),
    ("optim.weight_decay=-0.1", r"optim.weight_decay=-0.1: must be >= 0"),
    ("optim.warmup_steps=-1", r"optim.warmup_steps=-1: must be >= 0"),
    ("optim.min_lr_ratio=1.5", r"optim.min_lr_ratio=1.5: must be in \[0, 1\]"),
    ("optim.grad_clip=-1", r"optim.grad_clip=-1.0: must be >= 0"),
    ("optim.label_smoothing=1", r"optim.label_smoothing=1.0: must be in \[0, 1\)"),
    ("optim.patience=-1", r"optim.patience=-1: must be >= 0"),
    ("optim.momentum=-0.5", r"optim.momentum=-0.5: must be >= 0"),
    ("optim.betas=[0.9]", r"optim.betas=\(0.9,\): must be two numbers in \[0, 1\)"),
    ("optim.betas=[0.9,1.5]", r"optim.betas=\(0.9, 1.5\): must be two numbers in \[0, 1\)"),
    ("optim.betas=0.9", r"optim.betas=0.9: must be two numbers in \[0, 1\)"),
    ("optim.schedule=cosin", r"optim.schedule='cosin': must be one of cosine, constant, plateau"),
    ("optim.name=adamm", r"optim.name='adamm': must be one of adamw, adam, sgd, lion"),
    ("train.devices=3", r"data.batch_size=128: must be divisible by train.devices \* train.num_nodes = 3"),
])
def test_out_of_range_values_name_key_and_value(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config("fashion_mixer", [override])


def test_boundary_values_are_accepted():
    cfg = build_config("fashion_mixer", ["train.max_steps=0", "train.max_epochs=0.5", "optim.min_lr_ratio=1",
                                         "optim.name=AdamW", "data.train_fraction=0.9", "data.val_fraction=0.1",
                                         "train.eval_interval=0", "optim.grad_clip=0", "train.precision=bf16-mixed",
                                         ])
    assert (cfg.train.max_epochs, cfg.optim.name) == (0.5, "AdamW")


def test_a_reference_word_with_no_effect_is_accepted_with_one_note(monkeypatch, recwarn):
    from allmlp import compat

    monkeypatch.setattr(compat, "_noted", set())
    for _ in range(2):
        cfg = build_config("book_highorder", ["data.add_channel_dimension=true", "data.type=sequence", "net=conv"])
    notes = [str(w.message) for w in recwarn if "add_channel_dimension" in str(w.message)]
    assert notes == ["data.add_channel_dimension=True changes nothing here: each network takes its chars in the "
                     "shape it needs (one channel for conv)"]
    assert (cfg.model.name, cfg.data.type) == ("ho_conv", "window") and not hasattr(cfg.data, "add_channel_dimension")
    build_config("book_highorder", ["data.add_channel_dimension=false"])  # an old run folder's value: no note
    assert len([w for w in recwarn if "add_channel_dimension" in str(w.message)]) == 1


def test_every_shipped_preset_is_valid():
    from allmlp.config import preset_names

    for name in preset_names():
        build_config(name)


def test_a_typed_context_length_wins_over_the_presets_other_spelling():
    # the README's command: names_bengio sets data.context_length=8
    cfg = build_config("names_bengio", ["model.embedding_dim=2", "model.context_length=3", "model.hidden_dim=200"])
    assert cfg.data.context_length == 3 and cfg.model.args["context_length"] == 3
    cfg = build_config("book_gbm", ["data.context_length=8"])  # book_gbm sets model.context_length=16
    assert cfg.data.context_length == 8 and cfg.model.args["context_length"] == 8
    both = build_config("names_bengio", ["model.context_length=3", "data.context_length=5"])
    assert (both.data.context_length, both.model.args["context_length"]) == (5, 3)  # the task reports the conflict
