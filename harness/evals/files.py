"""Where benchmark files come from: a ``data`` directory, ``$HARNESS_DATA``, the packaged copy, or upstream.

Resolution order: the eval's ``data`` option, else ``$HARNESS_DATA`` (both directories laid out like the
project's ``shared/data``: ``advbench/harmful_behaviors.csv``, ``mt_bench/question.jsonl``, ...), else the copy
shipped in ``harness/evals/data`` (AdvBench, MIT; BIG-bench HHH and the MT-Bench questions, Apache-2.0; with
their licences; checked against :data:`UPSTREAM`'s sha256 on every load), else a download from the upstream
repository into the harness cache, checked the same way. Everything else (MT-Bench's reference answers and judge
prompts, the Vicuna-bench questions, the 438-item HHH set) is not shipped.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness import InputError

DATA_ENV = "HARNESS_DATA"


class EvalDataError(InputError):
    """A benchmark file is missing or does not have the expected schema; the message names it."""


def name_list(value: str | list[str] | None) -> list[str]:
    """A list option as YAML gives it (``[a, b]``) or as ``--eval-opt NAME.sets=a,b`` does (one string)."""
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return list(value or [])


@dataclass(frozen=True)
class Upstream:
    url: str
    sha256: str


_FASTCHAT = "https://raw.githubusercontent.com/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d/fastchat/llm_judge/data"
_BIGBENCH = "https://raw.githubusercontent.com/google/BIG-bench/main/bigbench/benchmark_tasks/hhh_alignment"
UPSTREAM: dict[str, Upstream] = {
    "advbench/harmful_behaviors.csv": Upstream(
        "https://raw.githubusercontent.com/llm-attacks/llm-attacks/main/data/advbench/harmful_behaviors.csv",
        "6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1",
    ),
    "hhh/anthropic_cai/438HHHEvaluations.jsonl": Upstream(
        "https://raw.githubusercontent.com/anthropics/ConstitutionalHarmlessnessPaper/"
        "831f7813dbafab659a526d7452f7adeac464b796/evals/438HHHEvaluations.jsonl",
        "d1ee180289d3eeeb314ad862344cbd9af07f19c6d52a77524f9a1a21e7373c10",
    ),
    "hhh/bigbench_hhh_alignment/harmless/task.json": Upstream(
        f"{_BIGBENCH}/harmless/task.json", "4720acbc916cc18413e48c6bb55c19af73400436a6304c7e110b8bb40f8952a1"
    ),
    "hhh/bigbench_hhh_alignment/helpful/task.json": Upstream(
        f"{_BIGBENCH}/helpful/task.json", "1bd2a58d9bb17b26af4806e8302374cea60671dc387fbfc2c5aa5c23e0901628"
    ),
    "hhh/bigbench_hhh_alignment/honest/task.json": Upstream(
        f"{_BIGBENCH}/honest/task.json", "69ba96e5bff121327ad1366e3772b7b45c50e96e7f995b2cef62c350380f1b14"
    ),
    "hhh/bigbench_hhh_alignment/other/task.json": Upstream(
        f"{_BIGBENCH}/other/task.json", "4d6b041d79e5bf2705a9f81994efb95274179faaba9270f6dc83bd0cd17c227e"
    ),
    "mt_bench/question.jsonl": Upstream(
        f"{_FASTCHAT}/mt_bench/question.jsonl", "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"
    ),
    "vicuna_bench/question.jsonl": Upstream(
        f"{_FASTCHAT}/vicuna_bench/question.jsonl", "c248c5c98ba45bb0c2aadae2f270e643bd32679c6c306a3b2a503ac4254cdaa5"
    ),
    "mt_bench/reference_answer/gpt-4.jsonl": Upstream(
        f"{_FASTCHAT}/mt_bench/reference_answer/gpt-4.jsonl",
        "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
    ),
    "mt_bench/judge_prompts.jsonl": Upstream(
        f"{_FASTCHAT}/judge_prompts.jsonl", "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6"
    ),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PACKAGED = Path(__file__).resolve().parent / "data"
"""Benchmark files shipped with the harness (package data), laid out like ``shared/data``."""


def packaged_file(relative: str) -> Path | None:
    """The shipped copy of ``relative``, checksum-verified; None when the harness does not ship it."""
    path = PACKAGED / relative
    if relative not in UPSTREAM or not path.is_file():
        return None
    got = sha256(path)
    if got != UPSTREAM[relative].sha256:
        raise EvalDataError(f"the packaged {path} has sha256 {got}, expected {UPSTREAM[relative].sha256}: the "
                            f"installation is damaged; reinstall, or pass data=DIR or set ${DATA_ENV}")
    return path


def data_file(relative: str, data: str | os.PathLike | None = None) -> Path:
    """The benchmark file ``relative`` under ``data``, else ``$HARNESS_DATA``, else packaged, else downloaded."""
    root = data if data is not None else os.environ.get(DATA_ENV)
    if root is not None:
        path = Path(root).expanduser() / relative
        if not path.is_file():
            origin = "data option" if data is not None else f"${DATA_ENV}"
            raise EvalDataError(
                f"{path} does not exist: the {origin} ({root}) must be a directory laid out like shared/data "
                f"(it needs {relative})"
            )
        return path
    return packaged_file(relative) or _download(relative)


def _download(relative: str) -> Path:
    if relative not in UPSTREAM:
        raise EvalDataError(f"no local copy of {relative} and no known upstream; pass data=DIR or set ${DATA_ENV}")
    from harness.models import cache_dir

    source = UPSTREAM[relative]
    target = cache_dir() / "data" / relative
    if target.is_file() and sha256(target) == source.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        urllib.request.urlretrieve(source.url, partial)
    except OSError as exc:
        raise EvalDataError(
            f"cannot download {relative} from {source.url} ({exc}); pass data=DIR or set ${DATA_ENV} to a local copy"
        ) from exc
    got = sha256(partial)
    if got != source.sha256:
        partial.unlink()
        raise EvalDataError(f"{source.url} has sha256 {got}, expected {source.sha256}; refusing to use it")
    partial.rename(target)
    return target
