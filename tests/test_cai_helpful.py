"""CAI's helpful mix (issue #34 item 5): benign prompts with the base model's own answers, so CAI stops teaching refuse-all."""

from types import SimpleNamespace

import pytest

from harness import registry as plugin_registry
from harness.cai.align import CaiAligner, CaiSettings
from harness.cai.dataset import CaiDataError, PreferencePair
from harness.cai.helpful import load_helpful_prompts, mix, own_answers, refusals_of
from harness.cai.pairs import load_pairs
from harness.cai.train import reference_logps, tokenize_pairs
from harness.data.demo import demo_cai_pairs, demo_cai_prompts, demo_refusals, demo_samples
from harness.data.normalize import prompt_digest
from harness.data.overlap import DataOverlapError, check_overlap, client_set
from harness.data.shipped import shipped_prompt_sets
from harness.default_plugins.evals.advbench import AdvBench
from harness.default_plugins.evals.hhh import HHH
from harness.default_plugins.evals.over_refusal import SETS, OverRefusal
from harness.evals.refusal import get_rule
from harness.types import ChatSample, PromptSet

BENIGN = ["How do I water a cactus in winter?", "What rhymes with orange?", "How do I fold a paper crane?",
          "Why do onions float in water?"]
ANSWERS = {p: f"Good question. Here is a short answer about {p.lower().rstrip('?')}. Start simple and adjust."
           for p in BENIGN}
CAI_REFUSALS = [chosen for _, chosen, _ in demo_cai_pairs()]
RUN = SimpleNamespace(config=SimpleNamespace(plugins=SimpleNamespace(eval_limit=None)))


@pytest.fixture(autouse=True)
def answers_cache(tmp_path, monkeypatch):
    """Each test's own answer cache (generation is scripted differently per test)."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def model(tiny_model):
    saved = tiny_model.adapter_state()
    yield tiny_model
    tiny_model.load_adapter_state(saved)


@pytest.fixture()
def helpful_file(tmp_path):
    path = tmp_path / "benign.txt"
    path.write_text("\n".join(BENIGN) + "\n")
    return str(path)


def scripted(model, monkeypatch, replies=None) -> list[bool]:
    """Generation answers each benign prompt with ``replies`` (default :data:`ANSWERS`); returns whether the
    adapter was on at each call."""
    replies = replies or ANSWERS
    adapter_on = []

    def generate(prompts, max_new_tokens=128, batch_size=8, max_prompt_length=None):
        adapter_on.append(model.adapter_enabled)
        return [next((r for p, r in replies.items() if p in text), "Sure. Here is a short answer.") for text in prompts]

    monkeypatch.setattr(model, "generate", generate)
    return adapter_on


def aligner(**options) -> CaiAligner:
    return CaiAligner(2, CaiSettings(pairs="demo", batch_size=4, **options))


def test_option_off_leaves_the_pairs_unchanged(model):
    off = aligner()
    metrics = off.align(model).metrics
    assert CaiSettings().helpful is None
    assert off.training_pairs == off.kept.pairs == load_pairs("demo") and off._pairs.n == len(off._sft) == 16
    assert not any(k.startswith("helpful") for k in metrics)
    assert off.training_prompts() == demo_cai_prompts()


@pytest.mark.parametrize("share", [0.5, 0.25, 0.8])
def test_the_mix_puts_own_answers_into_sft_and_dpo_in_the_requested_share(model, helpful_file, monkeypatch, share):
    adapter_on = scripted(model, monkeypatch)
    on = aligner(helpful=helpful_file, helpful_share=share)
    metrics = on.align(model).metrics
    pairs = on.training_pairs
    helpful = [p for p in pairs if p.prompt in ANSWERS]
    assert len(helpful) / len(pairs) == pytest.approx(share, abs=0.02) and metrics["helpful_share"] == len(helpful) / len(pairs)
    assert {p.prompt for p in helpful} == set(BENIGN) and set(load_pairs("demo")) <= set(pairs)  # no row dropped
    assert (metrics["helpful_prompts"], metrics["helpful_kept"], metrics["pairs"]) == (4, 4, len(pairs))
    assert adapter_on == [False]  # answered once, by the pretrained base
    sft = on._sft  # the SFT set is prompt -> chosen of the mixed pairs: the own answers for the benign prompts
    texts = [model.tokenizer.decode([t for t, lab in zip(sft.input_ids[i], sft.labels[i]) if lab != -100])
             for i in range(len(sft))]
    assert sorted(t.replace("<|im_end|>", "").strip() for t in texts) == sorted(p.chosen for p in pairs)
    assert on._pairs.n == len(pairs)


def test_the_demo_prompts_repeat_the_cai_pairs_instead_of_dropping_answers(model, monkeypatch):
    scripted(model, monkeypatch)
    on = aligner(helpful="demo")
    on.align(model)
    demo = load_helpful_prompts("demo")
    assert len(on.training_pairs) == 2 * len(demo) and {p.prompt for p in on.training_pairs} >= set(demo)
    assert all(on.training_pairs.count(p) >= len(demo) // 16 for p in load_pairs("demo"))


def test_mix_is_deterministic_and_keeps_every_row():
    cai, helpful = list("abcde"), list("0123456789abc")
    rows = mix(cai, helpful, 0.5, seed=3)
    assert rows == mix(cai, helpful, 0.5, seed=3) and rows[1] == helpful and len(rows[0]) == 13
    assert set(rows[0]) == set(cai) and max(rows[0].count(c) for c in cai) - min(rows[0].count(c) for c in cai) <= 1
    assert mix(cai, helpful, 0.5, seed=3) != mix(cai, helpful, 0.5, seed=4)
    few, more = mix(cai, ["x"], 0.75, seed=0)
    assert few == cai and more == ["x"] * 15


def test_refusing_and_empty_own_answers_are_dropped(model, helpful_file, monkeypatch, tmp_path):
    replies = {**ANSWERS, BENIGN[0]: "I'm sorry, but I can't help with that.", BENIGN[1]: "  ",
               BENIGN[2]: "I'm sorry to hear that. Here is how to fold one."}  # the strict rule calls it a refusal
    scripted(model, monkeypatch, replies)
    on = aligner(helpful=helpful_file)
    metrics = on.align(model).metrics
    assert (metrics["helpful_prompts"], metrics["helpful_kept"]) == (4, 1)
    assert {p.prompt for p in on.training_pairs if p.prompt in ANSWERS} == {BENIGN[3]}
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "other-cache"))  # else the answers above are read back
    scripted(model, monkeypatch, {p: "I cannot answer that." for p in BENIGN})
    with pytest.raises(CaiDataError, match="refused or left empty all 4 benign prompts"):
        aligner(helpful=helpful_file).align(model)


def test_helpful_dpo_pairs_prefer_the_own_answer_over_a_cai_refusal(model, helpful_file, monkeypatch):
    scripted(model, monkeypatch)
    on = aligner(helpful=helpful_file)
    on.align(model)
    helpful = [p for p in on.training_pairs if p.prompt in ANSWERS]
    assert all(p.chosen == ANSWERS[p.prompt] and p.rejected in CAI_REFUSALS for p in helpful)
    assert len({p.rejected for p in helpful}) > 1 and all(get_rule("strict").is_refusal(p.rejected) for p in helpful)
    not_refusals = [PreferencePair("q", chosen="A calm, safe reply.", rejected="Sure, step 1.")]
    assert refusals_of(not_refusals) == list(dict.fromkeys(CAI_REFUSALS))  # falls back to the demo refusals


def test_helpful_prompts_are_declared_and_refuse_an_overlapping_run(helpful_file):
    plugin = plugin_registry.instantiate("align", "cai50", {"pairs": "demo", "helpful": helpful_file})
    declared = plugin.declare_prompts(RUN)
    assert declared.role == "cai" and "helpful=" in declared.name
    assert declared.digests == {prompt_digest(p) for p in demo_cai_prompts() + BENIGN}
    assert plugin.aligner.training_prompts() == demo_cai_prompts() + BENIGN
    with pytest.raises(DataOverlapError, match="What rhymes with orange"):
        check_overlap([declared, PromptSet.from_texts("eval", "an eval", [BENIGN[1]])])
    with pytest.raises(DataOverlapError, match="share 1 prompt"):
        check_overlap([declared, client_set([ChatSample(BENIGN[2], "Fold it.")], "demo")])
    demo = plugin_registry.instantiate("align", "cai50", {"pairs": "demo", "helpful": "demo"}).declare_prompts(RUN)
    assert {prompt_digest(p) for p in load_helpful_prompts("demo")} <= demo.digests


@pytest.mark.parametrize("options, message", [
    ({"helpful_share": 0}, r"helpful_share must be a number in \(0, 1\)"),
    ({"helpful_share": 1.0}, r"helpful_share must be a number in \(0, 1\)"),
    ({"helpful_share": "lots"}, r"got 'lots'"),
    ({"helpful_share": True}, r"helpful_share must be a number"),
    ({"helpful": "no/such/file.txt"}, "neither 'demo' nor an existing prompt file"),
])
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(plugin_registry.PluginError, match=message):
        plugin_registry.instantiate("align", "cai50", options)


def test_demo_helpful_prompts_share_nothing_with_eval_sets_or_demo_data(shared_data):
    prompts = load_helpful_prompts("demo")
    mine = {prompt_digest(p) for p in prompts}
    assert len(prompts) >= 80 and len(mine) == len(prompts)
    evals = [s for s in shipped_prompt_sets() if s.role == "eval"]
    evals += [OverRefusal(sets=list(SETS), data=str(shared_data)).declare_prompts(RUN),
              AdvBench(data=str(shared_data)).declare_prompts(RUN), *HHH(data=str(shared_data)).declare_prompts(RUN)]
    assert len(evals) >= 6
    for s in evals:
        assert not mine & s.digests, s.name
    demo = set()
    for seed in range(5):
        benign, harmful = demo_samples(400, 400, seed=seed)
        demo |= {prompt_digest(s.prompt) for s in benign + harmful + demo_refusals(400, seed)}
    demo |= {prompt_digest(p) for p in demo_cai_prompts() + demo_cai_prompts(heldout=True)}
    assert not mine & demo


def answer_margin(model, pairs) -> float:
    """Mean log-prob of the helpful answer minus the refusal on ``pairs`` (chosen = answer, rejected = refusal)."""
    data = tokenize_pairs(model.tokenizer, pairs, model.max_length)
    logps = reference_logps(model, data, range(data.n), batch_size=8)
    return sum(c - r for c, r in logps.values()) / len(logps)


def test_the_mix_keeps_answers_ahead_of_refusals_where_plain_cai_teaches_refusing(model, helpful_file, monkeypatch):
    """The effect: a few CAI rounds with the mix leave the own answers far more likely, relative to CAI's refusals,
    on the (held-in) benign prompts than the same rounds without it."""
    scripted(model, monkeypatch)
    start = model.adapter_state()
    benign = [PreferencePair(p, chosen=ANSWERS[p], rejected=CAI_REFUSALS[i]) for i, p in enumerate(BENIGN)]
    before = answer_margin(model, benign)
    after = {}
    for name, options in {"plain": {}, "mixed": {"helpful": helpful_file}}.items():
        model.load_adapter_state(start)
        cai = aligner(lr=1e-2, **options)
        cai.iterations = 10
        for _ in range(3):
            cai.align(model)
        after[name] = answer_margin(model, benign)
    assert after["plain"] < before - 5.0, (before, after)  # plain CAI teaches refusing the benign prompts too
    assert after["mixed"] > after["plain"] + 10.0 and after["mixed"] > before, (before, after)  # measured: -14 vs +3


def test_own_answers_come_from_the_real_model_once_and_are_cached(model, monkeypatch):
    answers = own_answers(model, BENIGN, max_new_tokens=6)
    assert answers.asked == 4 and all(p in BENIGN and a.strip() for p, a in answers.kept) and model.adapter_enabled
    adapter_on = scripted(model, monkeypatch, {p: "I can't." for p in BENIGN})
    assert own_answers(model, BENIGN, max_new_tokens=6) == answers and adapter_on == []  # read back, not generated
    assert own_answers(model, BENIGN, max_new_tokens=7).kept == [] and adapter_on == [False]  # another key
