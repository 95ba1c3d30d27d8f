"""The same data in other formats gives the same study: GSM8K from the mirror written as prompt/response columns,
as conversations (system + user + assistant) and as plain text, each studied with the built-in model.

Writes four files from the mirror's first N training examples (calculator notes removed, as the math task does):
- columns.jsonl: {"prompt", "response"};
- chat-default.jsonl: {"messages": [system, user, assistant]} with the model's own default system prompt, which
  the chat template writes for a conversation without one: the tokens must equal the columns' exactly;
- chat-system.jsonl: the same with another system prompt ("Solve the problem step by step."): other tokens, so the
  pick may differ; printed beside the columns' pick;
- text.jsonl: {"text": question + answer}: continued pretraining, run end to end.
Then checks the token identity, runs `advisor tune` on each (no benchmark scoring: --score-items 0) and prints each
study's pick, its objective and its wall time.

    python bench/data_formats.py [--examples 600] [--trials 4] [--trial-tokens 8192] [--seq-len 256] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tuner.data.encode import counted_examples  # noqa: E402
from tuner.data.load import resolve_data_dir  # noqa: E402
from tuner.models.load import DEFAULT_MODEL, load_tokenizer, resolve_model  # noqa: E402
from tuner.settings import DataSettings  # noqa: E402

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""What SmolLM2's chat template writes as the system turn of a conversation that has none."""
OTHER_SYSTEM = "Solve the problem step by step."
CALCULATOR = re.compile(r"<<[^>]*>>")


def write_files(data_dir: Path, out: Path, examples: int) -> dict[str, Path]:
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:examples]]
    pairs = [(row["question"], CALCULATOR.sub("", row["answer"])) for row in rows]

    def chat(system: str, question: str, answer: str) -> dict[str, object]:
        turns = [("system", system), ("user", question), ("assistant", answer)]
        return {"messages": [{"role": role, "content": text} for role, text in turns]}

    files = {
        "columns": [{"prompt": q, "response": a} for q, a in pairs],
        "chat-default": [chat(SMOLLM2_SYSTEM, q, a) for q, a in pairs],
        "chat-system": [chat(OTHER_SYSTEM, q, a) for q, a in pairs],
        "text": [{"text": f"{q}\n{a}"} for q, a in pairs],
    }
    paths = {}
    for name, items in files.items():
        paths[name] = out / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(item) + "\n" for item in items))
    return paths


def study(path: Path, out: Path, args: argparse.Namespace) -> dict[str, object]:
    command = [
        sys.executable, "-m", "advisor", "tune", "--task", "custom", "--data", str(path),
        "--trials", str(args.trials), "--trial-tokens", str(args.trial_tokens), "--seq-len", str(args.seq_len),
        "--score-items", "0", "--out", str(out), "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1:], "seconds": seconds}
    found = json.loads(result.stdout)
    data_line = next((line for line in result.stderr.splitlines() if line.startswith("data: ")), "")
    pick = {key: found.get(key) for key in ("learning_rate", "rank", "alpha", "targets", "variant", "trial")}
    objective = found.get("objective", {}).get("value")
    return {"pick": pick, "objective": objective, "seconds": round(seconds), "data": data_line}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=600)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--trial-tokens", type=int, default=8192)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data_dir = resolve_data_dir(os.environ.get("ADVISOR_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory(prefix="data-formats-") as folder:
        paths = write_files(data_dir, Path(folder), args.examples)
        tokenizer = load_tokenizer(resolve_model(DEFAULT_MODEL))
        encoded = {
            name: counted_examples(DataSettings("custom", source=str(path)), args.seq_len, tokenizer, None)[0]
            for name, path in paths.items()
        }
        identical = encoded["columns"] == encoded["chat-default"]
        differ = encoded["columns"] != encoded["chat-system"]
        print(f"tokens and labels: chat-default == columns: {identical}; chat-system differs: {differ}", flush=True)
        results = {}
        for name, path in paths.items():
            results[name] = study(path, Path(folder) / f"run-{name}", args)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    same = results["columns"].get("pick") == results["chat-default"].get("pick")
    same_system = results["columns"].get("pick") == results["chat-system"].get("pick")
    summary = {
        "identical_tokens": identical,
        "same_pick_default_system": same,
        "same_pick_other_system": same_system,
        "text_ran": "pick" in results["text"],
        "studies": results,
    }
    print(
        json.dumps(summary, indent=2) if args.json else json.dumps({k: v for k, v in summary.items() if k != "studies"})
    )
    return 0 if identical and same and summary["text_ran"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
