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


# -- issue #19 item 7: alias bombs and duplicate keys ------------------------------------------------------------

ALIAS_BOMB = "plugins:\n  agg_options:\n    a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"    {chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def test_alias_bomb_in_options_is_refused_before_it_expands(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(ALIAS_BOMB)
    with pytest.raises(ConfigError, match=r"(?s)bomb.yaml.*aliases \(\*a\) are not allowed.*line 4"):
        load_config(file=f)


def test_any_alias_is_refused_and_anchors_alone_are_fine(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("federation: &fed {rounds: 3}\nplugins: {agg_options: *fed}\n")
    with pytest.raises(ConfigError, match=r"(?s)c.yaml is not valid YAML.*aliases \(\*fed\) are not allowed"):
        load_config(file=f)
    f.write_text("preset: smoke\nfederation: &fed {rounds: 3}\n")
    assert load_config(file=f).federation.rounds == 3


def test_duplicate_key_is_refused_with_file_and_line(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("preset: smoke\nfederation:\n  rounds: 3\n  seed: 1\n  rounds: 30\n")
    with pytest.raises(ConfigError, match=r"(?s)dup.yaml.*duplicate key 'rounds' \(first at line 3\).*line 5"):
        load_config(file=f)
    f.write_text("plugins: {agg_options: {mu: 1, mu: 2}}\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'mu'"):
        load_config(file=f)


def test_override_value_with_alias_or_duplicate_key_is_refused():
    with pytest.raises(ConfigError, match="aliases"):
        parse_override("plugins.agg_options={a: &a [1], b: *a}")
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        parse_override("plugins.agg_options={a: 1, a: 2}")


def test_cli_refuses_alias_bomb_with_exit_2(tmp_path):
    from click.testing import CliRunner

    from harness.cli import main

    f = tmp_path / "bomb.yaml"
    f.write_text(ALIAS_BOMB)
    result = CliRunner().invoke(main, ["run", "--config", str(f), "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and "aliases" in result.output and str(f) in result.output
    assert not (tmp_path / "out").exists()


def test_board_file_with_duplicate_key_is_refused(tmp_path):
    from harness.leaderboard.board import BoardError, load_board

    f = tmp_path / "b.yaml"
    f.write_text("name: b\nname: c\n")
    with pytest.raises(BoardError, match=r"(?s)b.yaml.*duplicate key 'name'"):
        load_board(str(f))


@pytest.mark.parametrize("name", ["../x", "../../victim", "/tmp/abs", "a/b", "a\\b", "", " ", "..", ".", " x"])
def test_run_name_that_is_not_one_directory_under_runs_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="not a valid run name"):
        load_config("smoke", overrides={"tracking.run_name": name, "output_dir": str(tmp_path)})


def test_run_name_with_quotes_and_dots_is_fine(tmp_path):
    cfg = load_config("smoke", overrides={"tracking.run_name": "o'brien..v2", "output_dir": str(tmp_path)})
    assert cfg.tracking.run_name == "o'brien..v2"


def test_a_dotted_override_changes_one_plugin_option_and_keeps_the_presets_others():
    cfg = load_config("repro", overrides={"plugins.eval_options.advbench.items": 520})
    assert cfg.plugins.eval_options["advbench"]["items"] == 520
    assert cfg.plugins.eval_options["advbench"]["rule"] == "strict" and cfg.plugins.eval_options["hhh"] == {"sets": ["cai438"]}
    assert load_config("repro", overrides={"plugins.eval_options": {}}).plugins.eval_options == {}
