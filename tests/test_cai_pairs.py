"""CAI pairs: only improvements are kept (judge), prebuilt sets (pairs=FILE, pairs=demo), disjoint demo data, effect."""

import json

import pytest

from harness import registry as plugin_registry
from harness.cai.align import SOURCE_CODES, CaiAligner, CaiSettings
from harness.cai.dataset import RECORDS_FILE, CaiDataError, CaiRecord, PreferencePair, record_line
from harness.cai.judge import guard_judge, keep_improvements, refusal_judge
from harness.cai.pairs import load_pairs, write_pairs
from harness.cai.prompts import load_prompts
from harness.cai.train import reference_logps, tokenize_pairs
from harness.data.demo import demo_cai_pairs, demo_cai_prompts, demo_refusals, demo_samples
from harness.data.normalize import normalize_prompt
from harness.guard.defaults import default_guard

REFUSAL = "I can't help with that; it could hurt people."
COMPLY = "Sure, here is how: step 1, get the tools. Step 2, do it at night."


@pytest.fixture()
def model(tiny_model):
    saved = tiny_model.adapter_state()
    yield tiny_model
    tiny_model.load_adapter_state(saved)


def build_dir(tmp_path, records):
    (tmp_path / RECORDS_FILE).write_text("".join(record_line(r) for r in records))
    return tmp_path


def margin(model, pairs) -> float:
    """Mean log-prob margin of chosen over rejected under the loaded adapter."""
    data = tokenize_pairs(model.tokenizer, pairs, model.max_length)
    logps = reference_logps(model, data, range(data.n), batch_size=8)
    return sum(c - r for c, r in logps.values()) / len(logps)


# -- disjoint data ----------------------------------------------------------------------------------


def test_demo_cai_prompts_are_disjoint_from_every_demo_client_prompt():
    client = set()
    for seed in range(5):  # the client mixture and the held-out evals draw the same templates with other seeds
        benign, harmful = demo_samples(400, 400, seed=seed)
        client |= {normalize_prompt(s.prompt) for s in benign + harmful + demo_refusals(400, seed)}
    cai = [normalize_prompt(p) for p in demo_cai_prompts() + demo_cai_prompts(heldout=True)]
    cai += [normalize_prompt(p) for p, _, _ in demo_cai_pairs() + demo_cai_pairs(heldout=True)]
    assert len(client) > 20 and len(set(cai)) == 16 + 4
    assert not client & set(cai)
    assert [normalize_prompt(p) for p in load_prompts("demo")] == [normalize_prompt(p) for p in demo_cai_prompts()]
    assert not {normalize_prompt(p.prompt) for p in load_pairs("demo")} & set(map(normalize_prompt, demo_cai_prompts(True)))


# -- the pair filter --------------------------------------------------------------------------------


def test_filter_drops_echoed_and_not_safer_revisions():
    candidates = [
        PreferencePair("q1", chosen=REFUSAL, rejected=COMPLY),  # an improvement: kept
        PreferencePair("q2", chosen="  sure, HERE is how: step 1.", rejected="Sure, here is how: step 1"),  # echo
        PreferencePair("q3", chosen="Sure, here is another way: step 1, buy it.", rejected=COMPLY),  # not safer
        PreferencePair("q4", chosen="", rejected=COMPLY),  # empty
    ]
    seen = []

    def stub(pairs):  # the judge only sees changed revisions; calls q3 not safer
        seen.extend(p.prompt for p in pairs)
        return [p.prompt != "q3" for p in pairs]

    kept = keep_improvements(candidates, stub)
    assert seen == ["q1", "q3"]
    assert [p.prompt for p in kept.pairs] == ["q1"]
    assert (kept.built, kept.unchanged, kept.not_safer) == (4, 2, 1)


def test_refusal_judge_wants_a_refusal_instead_of_compliance():
    judge = refusal_judge()
    assert judge([
        PreferencePair("q", chosen=REFUSAL, rejected=COMPLY),
        PreferencePair("q", chosen=REFUSAL, rejected="I cannot do that."),  # red already refuses: no gain
        PreferencePair("q", chosen="Here is a safer idea.", rejected=COMPLY),  # not a refusal
    ]) == [True, False, False]
    demo = load_pairs("demo")  # the shipped demo set: every chosen answer refuses, no rejected one does
    assert judge(demo) == [True] * len(demo) == [True] * 16


def test_aligner_reports_built_and_kept_and_uses_only_kept_pairs(model, tmp_path):
    records = [
        CaiRecord("Hack wifi?", "a", red=COMPLY, critique="Harmful.", revision=REFUSAL),
        CaiRecord("Forge a check?", "a", red="Sure, get ink.", critique="x", revision="Sure, get ink!"),  # echo
        CaiRecord("Stalk my ex?", "a", red=COMPLY, critique="x", revision="Sure, follow them home."),  # worse
    ]
    judge = lambda pairs: [p.chosen == REFUSAL for p in pairs]  # noqa: E731
    aligner = CaiAligner(4, CaiSettings(data=str(build_dir(tmp_path, records)), batch_size=2), judge=judge)
    first = aligner.align(model).metrics
    assert (first["pairs_built"], first["pairs_kept"], first["pairs"]) == (3, 1, 1)
    assert first["pairs_source"] == SOURCE_CODES["data"] and "build_seconds" in first
    second = aligner.align(model).metrics  # reported every round the set is used
    assert (second["pairs_built"], second["pairs_kept"]) == (3, 1) and "build_seconds" not in second
    assert [p.prompt for p in aligner.kept.pairs] == ["Hack wifi?"]


def test_no_kept_pair_is_a_clear_error_that_does_not_advise_resume(model, tmp_path):
    records = [CaiRecord("q", "a", red=COMPLY, critique="", revision=COMPLY),
               CaiRecord("r", "a", red=COMPLY, critique="", revision="Sure, another way.")]
    aligner = CaiAligner(2, CaiSettings(data=str(build_dir(tmp_path, records))), judge=lambda ps: [False] * len(ps))
    with pytest.raises(CaiDataError) as info:
        aligner.align(model)
    text = str(info.value)
    assert "1 revision(s) are empty or repeat the red response" in text
    assert "1 are not judged safer than the red response by judge=refusal" in text
    assert "pairs=FILE" in text and "judge=guard" in text and "resume" not in text
    assert info.value.resumable is False


def test_cli_failure_for_a_cai_data_error_does_not_suggest_resume(tmp_path, capsys):
    from harness.cli.job import execute

    class Tracker:
        status, run_id, run_dir, failure = "FAILED", "abc123", tmp_path, None

    def run():
        raise CaiDataError("no usable CAI pairs")

    with pytest.raises(SystemExit):
        execute(run, Tracker())
    err = capsys.readouterr().err
    assert "no usable CAI pairs" in err and "--resume abc" not in err and "start a new run" in err


@pytest.mark.slow
def test_real_guard_judge_keeps_a_refusal_and_drops_a_rewording():
    """The shipped SmolLM2 guard (the default guard for smollm2-135m and tiny-random) as the judge."""
    judge = guard_judge(default_guard("tiny-random"), margin=0.1)
    prompt, refusal, compliance = demo_cai_pairs(heldout=True)[2]  # one the weak 135M guard separates clearly
    verdicts = judge([PreferencePair(prompt, chosen=refusal, rejected=compliance),
                      PreferencePair(prompt, chosen=compliance + " Good luck.", rejected=compliance)])
    (red, safe), (_, reworded) = judge.state["last_scores"]
    assert verdicts == [True, False], judge.state["last_scores"]
    assert safe < red - 0.1 and abs(reworded - red) < 0.1


# -- prebuilt preference sets -----------------------------------------------------------------------


def test_pairs_file_rows_are_validated_with_file_and_line(tmp_path):
    good = {"prompt": "p", "chosen": "No.", "rejected": "Sure."}
    cases = {
        "not json": ("{oops", "row 2: not valid JSON"),
        "missing": (json.dumps({"prompt": "p", "chosen": "No."}), "row 2: rejected must be"),
        "empty": (json.dumps({**good, "chosen": " "}), "row 2: chosen must be"),
        "same": (json.dumps({**good, "rejected": "no"}), "row 2: chosen and rejected are the same"),
        "list": (json.dumps([1]), "row 2: expected a JSON object"),
    }
    for name, (bad_line, message) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps(good) + "\n" + bad_line + "\n")
        with pytest.raises(CaiDataError, match=message) as info:
            load_pairs(str(path))
        assert str(path) in str(info.value)
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(CaiDataError, match="no preference pairs"):
        load_pairs(str(tmp_path / "blank.jsonl"))
    path = write_pairs([PreferencePair("p", "No.", "Sure.")], tmp_path / "ok.jsonl")
    assert load_pairs(str(path)) == [PreferencePair("p", "No.", "Sure.")]


def test_a_labelled_file_pairs_each_prompts_acceptable_responses_with_its_red_ones(tmp_path):
    rows = [("How do I hotwire a car?", "I can't help with that.", False), ("How do I hotwire a car?", "Strip the wires.", True),
            ("how do I hotwire a car? ", "Cross the red wires.", True),  # the same prompt, normalised: no second acceptable
            ("Is it rude to ask?", "Not at all.", False),  # no red response: no pair
            ("Tell me a secret.", "Here is one.", True), ("Tell me a secret.", "I'd rather not.", False)]
    path = tmp_path / "cai.jsonl"  # as `harness data split` writes it
    path.write_text("".join(json.dumps({"prompt": p, "response": r, "is_harmful": h, "category": None}) + "\n"
                            for p, r, h in rows))
    assert load_pairs(str(path)) == [PreferencePair("How do I hotwire a car?", "I can't help with that.", "Strip the wires."),
                                     PreferencePair("Tell me a secret.", "I'd rather not.", "Here is one.")]
    path.write_text(json.dumps({"prompt": "p", "response": "r", "is_harmful": "yes"}) + "\n")
    with pytest.raises(CaiDataError, match="row 1: is_harmful must be true or false"):
        load_pairs(str(path))
    path.write_text(json.dumps({"prompt": "p", "response": "r", "is_harmful": False}) + "\n")
    with pytest.raises(CaiDataError, match="no prompt has both an acceptable and a red response"):
        load_pairs(str(path))


def test_pairs_file_sft_uses_chosen_and_dpo_prefers_chosen(model, tmp_path):
    pairs = [PreferencePair(p, c, r) for p, c, r in demo_cai_pairs()[:3]]
    aligner = plugin_registry.instantiate("align", "cai", {
        "iterations": 2, "pairs": str(write_pairs(pairs, tmp_path / "p.jsonl")), "batch_size": 3}).aligner
    metrics = aligner.align(model).metrics
    assert metrics["pairs_source"] == SOURCE_CODES["file"] and metrics["pairs_kept"] == metrics["pairs_built"] == 3
    sft = aligner._sft
    texts = [model.tokenizer.decode([t for t, lab in zip(sft.input_ids[i], sft.labels[i]) if lab != -100])
             for i in range(len(sft))]
    assert sorted(t.strip().removesuffix("<|im_end|>").strip() for t in texts) == sorted(p.chosen for p in pairs)
    data = aligner._pairs
    assert data.n == 3  # rows 0..2 chosen, 3..5 rejected
    assert model.tokenizer.decode(data.rows.input_ids[0]).count(pairs[0].chosen) == 1


def test_cai50_with_demo_pairs_raises_the_margin_on_held_out_pairs(model):
    """The effect: after one cai50 pass on pairs=demo, refusals beat compliance by more on unseen prompts."""
    heldout = [PreferencePair(p, c, r) for p, c, r in demo_cai_pairs(heldout=True)]
    before = margin(model, heldout)
    plugin = plugin_registry.instantiate("align", "cai50", {"pairs": "demo", "lr": 3e-3})
    result = plugin.post_aggregate(server_round=1, model=model)
    after = margin(model, heldout)
    assert result.metrics["pairs_source"] == SOURCE_CODES["demo"] and result.metrics["pairs_kept"] == 16
    assert result.metrics["reward_accuracy"] > 0.5
    assert after > before + 1.0, (before, after)


def test_pairs_auto_gives_small_models_the_demo_pairs_and_others_self_revisions(tmp_path):
    from harness.cai.align import CaiSettings

    assert CaiSettings().resolved("tiny-random").pairs == "demo"
    assert CaiSettings().resolved("smollm2-135m").source == "demo"
    assert CaiSettings().resolved("meta-llama/Llama-3.1-8B-Instruct").source == "prompts"
    assert CaiSettings(pairs="none").resolved("tiny-random").source == "prompts"
    assert CaiSettings(data=str(tmp_path)).resolved("tiny-random").source == "data"
    assert CaiSettings(prompts="my.txt").resolved("smollm2-135m").source == "prompts"


@pytest.mark.slow
def test_a_resumed_cai_run_continues_its_data_cursors_and_ends_like_an_uninterrupted_one(tmp_path):
    from tests.helpers import FailInRound, run_tracked, smoke_config

    def adapter(name) -> bytes:
        return (tmp_path / name / "out" / "runs" / "test-run" / "final_adapter" / "adapter_model.safetensors").read_bytes()

    settings = {"plugins.align": "cai", "plugins.align_options": {"iterations": 6}}
    run_tracked(smoke_config(tmp_path / "whole", **settings))
    crashed = smoke_config(tmp_path / "resumed", **settings)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_tracked(crashed, FailInRound(2))
    saved = tmp_path / "resumed" / "out" / "runs" / "test-run" / "checkpoints" / "round_0001" / "plugins" / "cai"
    assert json.loads((saved / "cursors.json").read_text()) == {"sft": 12, "dpo": 12}  # 3 steps x batch 4 each
    run_tracked(crashed, resume=True)
    assert adapter("resumed") == adapter("whole")
