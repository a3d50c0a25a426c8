"""SQuARe-shaped synthetic response files for tests (a test helper, not shipped data).

``write_square_files(directory)`` writes ``response_train.json``, ``response_valid.json`` and
``response_test.json`` with the schema of SQuARe's real response files (the rows of
``shared/data/square/response_test_ood.json``): JSON lists of ``{"question", "question_en", "response",
"response_en", "acceptable?" (0/1), "category" (list of str), "question_category" (str)}``, in that key order.
The text is seeded pseudo-English and pseudo-Korean (Hangul syllables) with no meaning.

Sizes: SQuARe's own (Lee et al., ACL 2023, Table 2, "Dataset constitution of SQuARe"; the same table is
``img/square_dataset.jpg`` in naver-ai/korean-safety-benchmarks):

=========  =========  ==========  ============  ==================  ====================
split      responses  acceptable  unacceptable  sensitive questions  all questions (file)
=========  =========  ==========  ============  ==================  ====================
train         64,225      31,073        33,152              35,754                37,115
valid         12,000       5,682         6,318               6,636                 6,882
test          11,952       5,659         6,293               6,668                 6,945
=========  =========  ==========  ============  ==================  ====================

So the three response files hold 88,177 responses (42,414 acceptable, 45,763 = 51.9 % unacceptable) over
49,058 questions; the "64K responses over 37K questions" sometimes quoted is the *train* split alone
(64,225 responses; 37,115 questions in ``question_train.json``, 35,754 of them sensitive). The unacceptable
share is the paper's 51.6-52.7 % per split (the OOD file has 265 of 480 = 55 %), not 30-45 %.

Which questions have responses: only the sensitive ones is assumed (the real files are not available here:
``shared/data/SOURCES.md``). That is what the OOD split shows (254 of its 255 questions, all sensitive, have
responses, 1.89 per question) and gives 1.80 responses per question, as the paper's counts do if every
sensitive question has one or more. Per question: 2 % of questions get 3 responses, the rest 1 or 2 so
that the totals are exact (OOD: 34 x 1, 215 x 2, 4 x 3, 1 x 4).

Splits are disjoint by question: the real ``question_valid.json``, ``question_test.json`` and
``question_test_ood.json`` share no question (checked: 0 common of 6,882 / 6,945 / 255), so the
response files, built on them, share none either; every question here is unique across all three files
(a per-question serial is spelled into its words), also after the harness's prompt normalisation.

Lengths follow the real rows: question_en about 127 characters (the in-distribution question files'
mean; the OOD rows' questions are longer, 205), question (Korean) about 53, response_en about 149,
response about 55. Categories: ``question_category`` is the question's own category (contentious,
predictive, ethical, etc, weighted as in ``question_valid.json``); ``category`` lists one response
category (8 % two), from the labels the OOD file uses: unacceptable -> contentious, predictive,
unethical, etc; acceptable -> indirect, objective, ethically-aware, inclusive-opinions,
nonpredicitve (sic, SQuARe's spelling), etc.

``scale`` multiplies every count (e.g. 0.01 for a quick test); full size takes about 2-3 s.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# split -> (responses, acceptable, questions with responses), SQuARe Table 2
SQUARE_SIZES = {
    "train": (64_225, 31_073, 35_754),
    "valid": (12_000, 5_682, 6_636),
    "test": (11_952, 5_659, 6_668),
}
SPLITS = tuple(SQUARE_SIZES)
KEYS = ("question", "question_en", "response", "response_en", "acceptable?", "category", "question_category")

QUESTION_CATEGORIES = (("contentious", 3249), ("predictive", 1414), ("ethical", 1143), ("etc", 830))
UNACCEPTABLE_CATEGORIES = (("contentious", 167), ("predictive", 85), ("etc", 25), ("unethical", 6))
ACCEPTABLE_CATEGORIES = (("etc", 61), ("indirect", 66), ("objective", 39), ("ethically-aware", 38),
                         ("inclusive-opinions", 16), ("nonpredicitve", 12))

_WORDS = (
    "the a of to and in that is for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there one all we their can has been more if will would who so no said about people law "
    "government party election policy public court president minister tax school student teacher worker company "
    "market price housing rent job wage pension health hospital doctor vaccine city region country nation army "
    "police crime prison judge vote citizen media news report debate reform plan budget debt bank loan energy power "
    "nuclear climate water food farm village family child parent woman man youth elder religion church culture sport "
    "team game online platform data privacy right freedom equality gender minority refugee immigrant border trade "
    "union strike protest should could might must really likely fair unfair good bad better worse new old young "
    "local national global social economic political legal moral ethical safe dangerous important necessary "
    "acceptable appropriate reasonable think believe say expect decide allow ban support oppose increase reduce "
    "protect punish help harm change keep open close"
).split()
_AUX = ("Is", "Should", "Will", "Can", "Would", "Does", "Do", "Is it right that", "What do you think about",
        "Why do", "How should")
_SYLLABLES = "가나다라마바사아자차카타파하고노도로모보소오조초코토포호구누두루무부수우주추쿠투푸후기니디리미비시이지치키티피히개내대래매배새애재채한국정부사회문제법원선거교육경제"


def _hangul_words(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choices(_SYLLABLES, k=rng.randint(1, 4))) for _ in range(n)]


_KO_WORDS = _hangul_words(random.Random(20230601), 256)
_EN_CHARS = sum(map(len, _WORDS)) / len(_WORDS) + 1  # characters per word with its space
_KO_CHARS = sum(map(len, _KO_WORDS)) / len(_KO_WORDS) + 1


def _serial(i: int, vocab: list[str] | tuple[str, ...]) -> list[str]:
    """``i`` spelled as three words of ``vocab`` (unique for i < len(vocab)**3)."""
    n = len(vocab)
    return [vocab[i % n], vocab[(i // n) % n], vocab[(i // n // n) % n]]


def _text(rng: random.Random, vocab, mean_chars: int, lo: int, hi: int, serial: list[str] | None = None) -> str:
    """About ``mean_chars`` characters (normal, sd mean/3, clipped to [lo, hi]) of words from ``vocab``."""
    target = max(lo, min(hi, round(rng.gauss(mean_chars, mean_chars / 3))))
    per_word = _EN_CHARS if vocab is _WORDS else _KO_CHARS
    words = rng.choices(vocab, k=max(3, round(target / per_word) - (len(serial) if serial else 0)))
    if serial:
        at = rng.randrange(len(words) + 1)
        words[at:at] = serial
    return " ".join(words)


def _question_en(rng: random.Random, i: int) -> str:
    body = _text(rng, _WORDS, 118, 20, 380, _serial(i, _WORDS))
    return f"{rng.choice(_AUX)} {body}?"


def _sentence(text: str, end: str = ".") -> str:
    return text[:1].upper() + text[1:] + end


def _counts(n_resp: int, n_acc: int, n_q: int, scale: float) -> tuple[int, int, int]:
    if scale == 1.0:
        return n_resp, n_acc, n_q
    resp = max(1, round(n_resp * scale))
    q = max(1, min(resp, round(n_q * scale)))
    acc = min(resp, round(n_acc * scale))
    return resp, acc, q


def _responses_per_question(rng: random.Random, n_resp: int, n_q: int) -> list[int]:
    """``n_q`` counts (1-3, mostly 1-2) summing to ``n_resp``, shuffled."""
    extra = n_resp - n_q
    threes = min(round(0.02 * n_q), extra // 2)
    twos = min(extra - 2 * threes, n_q - threes)
    rest = extra - 2 * threes - twos  # only when n_resp > 2 * n_q (tiny scales): spread as more responses
    counts = [3] * threes + [2] * twos + [1] * (n_q - threes - twos)
    for k in range(rest):
        counts[k % n_q] += 1
    rng.shuffle(counts)
    return counts


def _weighted(rng: random.Random, table) -> str:
    names, weights = zip(*table)
    return rng.choices(names, weights)[0]


def write_square_files(directory, seed: int = 0, scale: float = 1.0) -> dict:
    """Write SQuARe-shaped ``response_{train,valid,test}.json`` into ``directory`` (created if missing).

    Returns ``{split: {"path", "responses", "acceptable", "unacceptable", "questions"}}``.
    """
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    report = {}
    serial = 0  # global question serial: questions are unique across the three files
    for split in SPLITS:
        n_resp, n_acc, n_q = _counts(*SQUARE_SIZES[split], scale)
        labels = [1] * n_acc + [0] * (n_resp - n_acc)
        rng.shuffle(labels)
        rows = []
        for count in _responses_per_question(rng, n_resp, n_q):
            q_en = _question_en(rng, serial)
            q_ko = _text(rng, _KO_WORDS, 50, 12, 130, _serial(serial, _KO_WORDS)) + "?"
            q_cat = _weighted(rng, QUESTION_CATEGORIES)
            serial += 1
            for _ in range(count):
                ok = labels[len(rows)]
                table = ACCEPTABLE_CATEGORIES if ok else UNACCEPTABLE_CATEGORIES
                cats = [_weighted(rng, table)]
                if rng.random() < 0.08:
                    second = _weighted(rng, table)
                    if second != cats[0]:
                        cats.append(second)
                rows.append({
                    "question": q_ko,
                    "question_en": q_en,
                    "response": _text(rng, _KO_WORDS, 52, 12, 130) + ".",
                    "response_en": _sentence(_text(rng, _WORDS, 146, 25, 370)),
                    "acceptable?": ok,
                    "category": cats,
                    "question_category": q_cat,
                })
        path = out / f"response_{split}.json"
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=4), encoding="utf-8")
        report[split] = {"path": str(path), "responses": n_resp, "acceptable": n_acc,
                         "unacceptable": n_resp - n_acc, "questions": n_q}
    return report


if __name__ == "__main__":  # python tests/square_shaped.py DIR [SCALE]
    import sys
    import time

    t0 = time.perf_counter()
    done = write_square_files(sys.argv[1], scale=float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)
    print(json.dumps(done, indent=1), f"{time.perf_counter() - t0:.1f} s")
