#!/usr/bin/env bash
# Build the wheel, install it with plain pip into a fresh venv, and from a directory outside the checkout run
# `harness --help`, `harness plugins` and a smoke run (issue #18 item 3). Torch is the newest torch wheel in
# $PIP_FIND_LINKS or /opt/wheels when there is one (a CPU build), else whatever pip picks from the index.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
torch_wheel="$(ls -1 ${PIP_FIND_LINKS:-} /opt/wheels 2>/dev/null | grep -o '^torch-.*\.whl$' | sort -V | tail -1 || true)"
for d in ${PIP_FIND_LINKS:-} /opt/wheels; do
    if [ -n "$torch_wheel" ] && [ -f "$d/$torch_wheel" ]; then torch_wheel="$d/$torch_wheel"; break; fi
done

python3 -m venv "$work/venv"
pip="$work/venv/bin/python -m pip"
$pip install -q build
mkdir "$work/src"  # a copy of the checkout's files, so no stale build/ of the checkout ends up in the wheel
(cd "$repo" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$work/src"
"$work/venv/bin/python" -m build -q --wheel --outdir "$work/dist" "$work/src" >/dev/null 2>&1
if [ -f "$torch_wheel" ]; then $pip install -q "$torch_wheel"; fi
$pip install -q "$work/dist"/fedllm_harness-*.whl

cd "$work"  # outside the checkout: only the installed package is importable
bin="$work/venv/bin"
"$bin/harness" --help >/dev/null
"$bin/harness" plugins | tee plugins.txt
grep -q "harness.default_plugins.aggregators.fedavg:FedAvg" plugins.txt
if "$bin/python" -c "import plugins" 2>/dev/null; then echo "error: the wheel installs a top-level 'plugins'" >&2; exit 1; fi
"$bin/python" - <<'PY'
from importlib.resources import files
assert files("harness").joinpath("boards", "default.yaml").is_file(), "board definitions are not package data"
from harness.guard.defaults import EMBED_LR_HEAD, SMOLLM2_GUARD
assert (SMOLLM2_GUARD / "adapter_model.safetensors").is_file(), f"the shipped guard is not package data: {SMOLLM2_GUARD}"
assert (EMBED_LR_HEAD / "embed_lr.json").is_file(), f"the shipped embed-lr head is not package data: {EMBED_LR_HEAD}"
from harness.safe_base.load import adapter_dir
assert (adapter_dir("smollm2-135m-safe") / "adapter_model.safetensors").is_file(), "the safe base is not package data"
from harness.evals.files import packaged_file
assert packaged_file("mt_bench/question.jsonl"), "the over-refusal prompts (MT-Bench questions) are not package data"
from harness.evals.loaders import everyday_requests
assert len(everyday_requests()) == 195, "the frozen everyday benign set is not package data"
from harness.data.scenario.pool import harmful_requests
assert len(harmful_requests()) == 424, "the harmful-reply scenario's request pool is not package data"
from harness.data.scenario.pool import GUARD_BENIGN_FILE, GUARD_POOL_FILE
assert len(harmful_requests(GUARD_POOL_FILE)) == 268 and len(harmful_requests(GUARD_BENIGN_FILE)) == 240, \
    "the scenario guard's request pools are not package data"
from harness.guard.defaults import SHIPPED_GUARDS
assert (SHIPPED_GUARDS / "smollm2-135m-lg3-harmful" / "adapter_model.safetensors").is_file(), \
    "the harmful-reply scenario's guard is not package data"
PY
"$bin/harness" run --preset smoke --filter none --agg fedavg --align none --no-progress --output-dir "$work/runs"
"$bin/harness" plugin new wheel-check --kind eval --dir "$work" >/dev/null  # its templates are package data
echo "wheel check: ok"
