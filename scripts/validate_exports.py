"""Every shipped preset, exported for each tool, loaded by that tool's own parser: the proof that a preset runs
unchanged where it is written for.

Each tool gets a throwaway virtual environment, pinned to the version named below and built on the packages of the
Python that runs this script, a venv's included (torch is not installed twice), cached under the advisor's cache. Every
shipped preset is exported in the tool's format, and scripts/export_checks/check_TOOL.py, run inside that environment,
loads each file through the tool's own parser or validator (no training) and reads back what the tool built:
learning rate, adapter, epochs, warm-up, precision, device, checkpointing and quantisation, compared with the preset's.

Besides the shipped presets (which know no data format), BASE+FORMAT rows export a shipped preset as a study's preset
that knows its data's format (--data-formats, on --data-base): conversations and plain text (continued pretraining)
by default. For those the checker also reads the tool's dataset config back (its reader for the format, and which
tokens carry the loss) and, where the tool can read a record without the data file, passes one of the format's
example records through the tool's own reader. The columns row names its columns question and answer (NAMED_COLUMNS),
as a study given --prompt-column question --response-column answer does: each tool that names the columns must read
those names back, and its reader must find the example's values under them.

BASE+qlora rows (--qlora) export a shipped preset as a QLoRA preset (quantize: nf4). Each checker reads back the
quantisation the tool would load the model with (its own BitsAndBytesConfig set-up, torchtune's NF4 weights, LitGPT's
bitsandbytes plugin, PEFT's README code): 4-bit NF4, double quantised, computing in the preset's precision, or for
every other row 16 bits (None).

    python scripts/validate_exports.py                    # every tool (the first run installs them: minutes)
    python scripts/validate_exports.py --tools trl,peft   # what the test suite runs
    python scripts/validate_exports.py --data-formats messages,sharegpt,alpaca,columns,prompt-completion,text
    python scripts/validate_exports.py --qlora math-24gib,code-80gib   # more QLoRA rows ('' for none)
    python scripts/validate_exports.py --json results.json

A GPU preset on a machine without a GPU is parsed with the tool's bf16/GPU availability check patched to pass
(the table's notes say so); CPU presets load with nothing patched. Exit status 0 when every file loads and sets
every value, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advisor.exports import EXPORT_FORMATS, FORMATS, export_preset  # noqa: E402 - after the checkout is importable
from advisor.exports.base import expected_settings  # noqa: E402
from advisor.presets import DEFAULT_COLUMNS, Preset, load_preset, shipped_presets  # noqa: E402
from tuner.data.formats import EXAMPLES  # noqa: E402
from tuner.data.formats import FORMATS as DATA_FORMATS  # noqa: E402
from tuner.errors import AdvisorError  # noqa: E402
from tuner.models.load import cache_root  # noqa: E402

CHECKS = Path(__file__).resolve().parent / "export_checks"
NOTE_WIDTH = 160
"""The table's notes are cut at this many characters."""
CHECK_TIMEOUT = 900
"""Seconds one tool's checker may take for every preset (imports included)."""
DATA_BASE = "math-cpu"
"""The shipped preset the data-format rows are made from (on a CPU: nothing patched)."""
DEFAULT_DATA_FORMATS = ("messages", "text")
"""The data formats validated by default: conversations, and plain text (continued pretraining)."""
DEFAULT_QLORA = ("math-24gib",)
"""The QLoRA rows' shipped presets by default: a GPU's (LitGPT refuses QLoRA on a CPU: its bitsandbytes needs CUDA)."""
NAMED_COLUMNS = ("question", "answer")
"""The columns row's prompt and response column names: not the defaults, so that the row checks that each export
carries a study's own names."""


@dataclass(frozen=True)
class Tool:
    """One tool: its export format, its package and pinned version, and how its environment is installed."""

    format: str
    """The `advisor export --format` name."""
    package: str
    """The distribution whose installed version the table shows."""
    version: str
    installs: tuple[tuple[str, ...], ...]
    """pip install argument lists, run in order in the tool's environment."""
    reads_data: bool = True
    """Whether the tool's file holds dataset settings, which its checker must read back (PEFT's adapter config
    holds none: its README says the format)."""

    @property
    def checker(self) -> Path:
        return CHECKS / f"check_{self.format.replace('-', '_')}.py"

    def key(self, site_dirs: list[str]) -> str:
        """What the cached environment was built from (a change rebuilds it): the installs and the packages below."""
        return json.dumps([self.package, self.version, self.installs, site_dirs])


TOOLS: dict[str, Tool] = {
    tool.format: tool
    for tool in sorted(
        (
            Tool("peft", "peft", "0.21.2", (("peft==0.21.2",),), reads_data=False),
            Tool("trl", "trl", "1.16.0", (("trl==1.16.0",),)),
            # LLaMA-Factory's web UI, audio and vision packages (gradio, torchaudio, torchvision, av, modelscope) are
            # left out: its argument parser needs none of them, and torchaudio would pull another torch.
            Tool(
                "llama-factory",
                "llamafactory",
                "0.9.5",
                (
                    ("--no-deps", "llamafactory==0.9.5"),
                    (
                        "accelerate<=1.11.0,>=1.3.0",
                        "datasets<=4.0.0,>=2.16.0",
                        "einops",
                        "fire",
                        "peft<=0.18.1,>=0.18.0",
                        "transformers!=4.52.0,!=4.57.0,<=5.6.0,>=4.55.0",
                        # transformers 5.6 names hub kernels without a revision, which kernels 0.15 and later
                        # refuse on import; the base Python's newer transformers brings a newer kernels.
                        "kernels<0.15,>=0.10.2",
                        "trl<=0.24.0,>=0.18.0",
                        "tyro<0.9.0",
                        "omegaconf",
                        "pydantic",
                        "sentencepiece",
                        "tiktoken",
                        "protobuf",
                        "pandas",
                        "scipy",
                        "matplotlib",
                    ),
                ),
            ),
            # axolotl's config schema and validator need none of its kernels, trackers or cloud packages.
            Tool("axolotl", "axolotl", "0.19.0", (("--no-deps", "axolotl==0.19.0"), ("addict",))),
            # torchtune 0.6.1 imports torchao.dtypes.nf4tensor, which torchao 0.18 no longer has.
            Tool("torchtune", "torchtune", "0.6.1", (("torchtune==0.6.1", "torchao==0.13.0"),)),
            # LitGPT pins huggingface-hub below 1.4, which transformers 5.1 and later cannot import with.
            Tool(
                "litgpt",
                "litgpt",
                "0.5.13",
                (("litgpt==0.5.13",), ("huggingface-hub<1.4,>=0.30", "transformers<5.1")),
            ),
        ),
        key=lambda tool: FORMATS.index(tool.format),  # the order `advisor export --format` offers them
    )
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated formats (default: all)")
    parser.add_argument("--presets", default=None, help="comma-separated shipped presets (default: all)")
    parser.add_argument(
        "--data-formats",
        default=",".join(DEFAULT_DATA_FORMATS),
        help=f"comma-separated data formats, each exported from --data-base as a preset that knows it "
        f"({', '.join(DATA_FORMATS)}; default: %(default)s; '' for none)",
    )
    parser.add_argument("--data-base", default=DATA_BASE, help="the shipped preset of the data-format rows")
    qlora = "comma-separated shipped presets, each also exported as a QLoRA preset (default: %(default)s; '' for none)"
    parser.add_argument("--qlora", default=",".join(DEFAULT_QLORA), help=qlora)
    parser.add_argument("--venvs", type=Path, default=None, help="where the environments are kept (default: cache)")
    parser.add_argument("--fresh", action="store_true", help="rebuild the environments")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    return parser.parse_args(argv)


PARENT_PTH = "lora-advisor-parent.pth"
"""The file in a tool's site-packages that puts the running Python's site-packages after the tool's own."""


def parent_site_dirs() -> list[str]:
    """The site-packages directories of the Python running this script that exist: a venv's own (and its base's
    only where the venv includes them), or the system Python's."""
    return [directory for directory in site.getsitepackages() if os.path.isdir(directory)]


def link_site_packages(home: Path, site_dirs: list[str]) -> None:
    """Make the environment at `home` see `site_dirs` after its own site-packages, so its pinned packages win.

    `venv --system-site-packages` would add the base installation's packages instead, not those of a venv this
    script runs in (where the project and peft are). The lines are `site.addsitedir` calls rather than bare paths
    so that the directories' own .pth files (editable installs) are read too.
    """
    own = Path(sysconfig.get_path("purelib", scheme="venv", vars={"base": str(home), "platbase": str(home)}))
    text = "# Written by scripts/validate_exports.py: the packages of the Python that built this environment.\n"
    text += "".join(f"import site; site.addsitedir({directory!r})\n" for directory in site_dirs)
    pth = own / PARENT_PTH
    if pth.is_file() and pth.read_text(encoding="utf-8") == text:
        return
    partial = pth.with_name(f"{PARENT_PTH}.{os.getpid()}.partial")  # renamed when whole: a reader never sees half
    partial.write_text(text, encoding="utf-8")
    partial.replace(pth)


def environment(tool: Tool, venvs: Path, fresh: bool) -> tuple[Path, float]:
    """The tool's environment's python, built if missing, stale or `fresh`; and the seconds building it took.

    One environment per tool and per Python that builds it (the digest of its site-packages directories), so a
    venv and the system Python sharing the cache do not rebuild each other's.
    """
    site_dirs = parent_site_dirs()
    built_on = hashlib.sha256(json.dumps(site_dirs).encode()).hexdigest()[:10]
    home = venvs / f"{tool.format}-{tool.version}-{built_on}"
    marker = home / "lora-advisor-installed.json"
    python = home / "bin" / "python"
    key = tool.key(site_dirs)
    if not fresh and marker.is_file() and marker.read_text(encoding="utf-8") == key and python.exists():
        link_site_packages(home, site_dirs)
        return python, 0.0
    started = time.perf_counter()
    shutil.rmtree(home, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
    link_site_packages(home, site_dirs)  # before installing: pip then installs only what these lack
    for arguments in tool.installs:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *arguments],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or done.stderr.splitlines()
            raise AdvisorError(f"installing {' '.join(arguments)} for {tool.format} failed: {lines[-1:]}")
    marker.write_text(key, encoding="utf-8")
    return python, time.perf_counter() - started


def installed_version(python: Path, package: str) -> str:
    done = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "?"


def data_preset(base: str, data_format: str) -> Preset:
    """The shipped preset BASE as a study's preset that knows its data is in DATA_FORMAT (plain text: continued
    pretraining; columns: named NAMED_COLUMNS)."""
    regime = "cpt" if data_format == "text" else "ift"
    columns = NAMED_COLUMNS if data_format == "columns" else None
    return replace(
        load_preset(base), name=f"{base}+{data_format}", data_format=data_format, regime=regime, columns=columns
    )


def qlora_preset(base: str) -> Preset:
    """The shipped preset BASE as a QLoRA preset: its adapter trained on 4-bit NF4 base weights."""
    preset = load_preset(base)
    return replace(preset, name=f"{base}+qlora", recipe=replace(preset.recipe, quantize="nf4"))


def example_record(preset: Preset) -> dict[str, Any]:
    """One record of the preset's data format (tuner.data.formats.EXAMPLES), under its own column names."""
    record = json.loads(EXAMPLES[preset.data_format or ""])
    if preset.data_format == "columns":
        names = preset.columns or DEFAULT_COLUMNS
        return {name: record[default] for default, name in zip(DEFAULT_COLUMNS, names, strict=True)}
    return record


def presets_to_check(names: list[str], data_formats: list[str], base: str, qlora: list[str]) -> dict[str, Preset]:
    """The shipped presets by name, then BASE+FORMAT for each data format, then QLORA+qlora for each of QLORA."""
    chosen = {name: load_preset(name) for name in names}
    chosen |= {f"{base}+{fmt}": data_preset(base, fmt) for fmt in data_formats}
    return chosen | {f"{name}+qlora": qlora_preset(name) for name in qlora}


def jobs_for(tool: Tool, presets: dict[str, Preset], out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each preset exported for the tool: the checker's jobs, and the results of presets the export refused. A preset
    that knows its data format brings one example record of it (tuner.data.formats.EXAMPLES) for the tool's reader."""
    jobs, refused = [], []
    for name, preset in presets.items():
        directory = out / tool.format / name
        try:
            export_preset(preset, tool.format, directory, origin=f"shipped preset {name}")
        except AdvisorError as error:
            refused.append({"preset": name, "loads": False, "message": f"not exported: {error}", "mismatches": {}})
            continue
        file = directory / EXPORT_FORMATS[tool.format].file_name
        job = {"preset": name, "dir": str(directory), "file": str(file), "expected": expected_settings(preset)}
        if preset.data_format is not None:
            job["example"] = example_record(preset)
        jobs.append(job)
    return jobs, refused


def run_checker(tool: Tool, python: Path, jobs: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """The checker's result for every job; a checker that breaks fails every job it did not report."""
    if not jobs:
        return []
    jobs_file = out / f"{tool.format}-jobs.json"
    jobs_file.write_text(json.dumps(jobs), encoding="utf-8")
    env = {**os.environ, "PYTHONNOUSERSITE": "1", "TRANSFORMERS_VERBOSITY": "error", "DISABLE_VERSION_CHECK": "0"}
    env.pop("PYTHONPATH", None)
    try:
        done = subprocess.run(
            [str(python), str(tool.checker), str(jobs_file)],
            capture_output=True,
            text=True,
            cwd=out,
            env=env,
            timeout=CHECK_TIMEOUT,
        )
        stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as error:
        stdout, stderr = (error.stdout or b"").decode(), f"the checker took over {CHECK_TIMEOUT} s"
    results = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            results[result["preset"]] = result
    tail = (stderr.strip().splitlines() or ["no output"])[-1][:300]
    for job in jobs:
        result = results.setdefault(
            job["preset"], {"preset": job["preset"], "loads": False, "message": f"checker: {tail}"}
        )
        if tool.reads_data and "example" in job and result["loads"] and "loss" not in result.get("checked", ()):
            result["mismatches"]["loss"] = [job["expected"]["loss"], "not read back by the checker"]
    return [results[job["preset"]] for job in jobs]


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tool | version | preset | loads | sets the preset's values | message, notes |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        mismatches = row.get("mismatches") or {}
        values = (
            "-"
            if not row["loads"]
            else "yes"
            if not mismatches
            else "no: " + "; ".join(f"{name} {want!r} -> {got!r}" for name, (want, got) in mismatches.items())
        )
        said = "; ".join([row["message"], *row.get("notes", [])] if row["message"] else row.get("notes", []))
        said = said if len(said) <= NOTE_WIDTH else said[: NOTE_WIDTH - 1] + "…"  # the JSON keeps every note whole
        lines.append(
            f"| {row['tool']} | {row['version']} | {row['preset']} | {'yes' if row['loads'] else 'no'} | {values} "
            f"| {said or '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [name.strip() for name in args.tools.split(",") if name.strip()]
    names = [name.strip() for name in args.presets.split(",")] if args.presets else shipped_presets()
    data_formats = [name.strip() for name in args.data_formats.split(",") if name.strip()]
    qlora = [name.strip() for name in args.qlora.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in TOOLS]
    missing = [name for name in [*names, args.data_base, *qlora] if name not in shipped_presets()]
    strange = [name for name in data_formats if name not in DATA_FORMATS]
    if unknown or missing or strange or not chosen:
        what = f"unknown tool {unknown[0]!r} (known: {', '.join(TOOLS)})" if unknown else "no tools given"
        if missing:
            what = f"no shipped preset {missing[0]!r} (shipped: {', '.join(shipped_presets())})"
        if strange:
            what = f"unknown data format {strange[0]!r} (known: {', '.join(DATA_FORMATS)})"
        print(f"validate_exports: {what}", file=sys.stderr)
        return 2
    presets = presets_to_check(names, data_formats, args.data_base, qlora)
    venvs = args.venvs or cache_root() / "export-venvs"
    rows: list[dict[str, Any]] = []
    timings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="validate-exports-") as scratch:
        out = Path(scratch)
        for name in chosen:
            tool = TOOLS[name]
            try:
                python, built = environment(tool, venvs, args.fresh)
            except (AdvisorError, subprocess.CalledProcessError) as error:
                print(f"validate_exports: {error}", file=sys.stderr)
                return 1
            version = installed_version(python, tool.package)
            started = time.perf_counter()
            jobs, refused = jobs_for(tool, presets, out)
            results = refused + run_checker(tool, python, jobs, out)
            checked = time.perf_counter() - started
            rows += [{"tool": name, "version": version, **result} for result in results]
            timings.append(f"{name} {version}: installed in {built:.0f} s, checked in {checked:.0f} s")
            print(f"{name} {version}: {sum(r['loads'] for r in results)}/{len(results)} load", file=sys.stderr)
    print(table(rows))
    print("\n" + "; ".join(timings) + " (installed in 0 s: the cached environment)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "timings": timings}, indent=1) + "\n", encoding="utf-8")
    return 0 if all(row["loads"] and not row.get("mismatches") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
