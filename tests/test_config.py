import pytest

from harness.config import PRESETS, ConfigError, load_config, parse_override


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_load(preset):
    cfg = load_config(preset)
    assert cfg.preset == preset
    assert cfg.model.target_modules == ["q_proj", "v_proj"]


def test_paper_preset_is_the_paper_setting():
    fed = load_config("paper").federation
    assert (fed.num_clients, fed.rounds, fed.clients_per_round, fed.local_steps, fed.batch_size) == (20, 50, 5, 25, 16)
    assert load_config("paper").model.name == "meta-llama/Llama-3.1-8B-Instruct"
    assert load_config("paper").data.harmful_ratio == 0.3


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: smoke\nfederation: {rounds: 7}\nplugins: {agg_options: {mu: 0.1}}\n")
    cfg = load_config(file=f, overrides={"federation.seed": 3, "plugins.agg": "fedavg"})
    assert cfg.preset == "smoke" and cfg.federation.rounds == 7 and cfg.federation.seed == 3
    assert cfg.model.name == "tiny-random"  # from the preset
    assert cfg.plugins.agg_options == {"mu": 0.1}


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("federation: {roundz: 3}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*federation\.roundz"):
        load_config(file=f)


def test_wrong_type_names_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("federation: {rounds: three}\n")
    with pytest.raises(ConfigError, match=r"federation\.rounds: expected int, got str 'three'"):
        load_config(file=f)


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="federation.rounds"):
        load_config("smoke", overrides={"federation.rounds": True})


def test_malformed_yaml(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("federation: {rounds: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(file=f)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(file=tmp_path / "nope.yaml")


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="clients_per_round"):
        load_config("smoke", overrides={"federation.clients_per_round": 99})


def test_override_parsing():
    assert parse_override("federation.lr=1e-3") == ("federation.lr", 1e-3)
    assert parse_override("plugins.evals=[a, b]") == ("plugins.evals", ["a", "b"])
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")


def test_resolved_config_roundtrips_through_yaml(tmp_path):
    cfg = load_config("smoke", overrides={"federation.seed": 5})
    f = tmp_path / "resolved.yaml"
    f.write_text(cfg.to_yaml())
    assert load_config(file=f) == cfg
