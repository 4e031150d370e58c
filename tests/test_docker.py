"""The Docker image, checked without a Docker engine (none on the build machines).

The Dockerfile is parsed and its steps checked against the repository: a pinned CUDA runtime base,
requirements.txt and the package installed, a non-root user, DVC's site cache set, every COPY
source present and not dropped by .dockerignore, and an entry command that resolves and runs here.
.dockerignore is checked with a matcher following Docker's rules; requirements.txt for exact pins
that satisfy pyproject.toml.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
REQUIREMENTS = ROOT / "requirements.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str  # the rest of the logical line, continuations joined

    def exec_form(self) -> list[str] | None:
        """The JSON array of CMD/ENTRYPOINT/RUN in exec form, None in shell form."""
        text = self.args.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
        return None

    def words(self) -> list[str]:
        return self.exec_form() or shlex.split(self.args)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: comments dropped (also inside continuations), `\\` continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, even between continued lines
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        keyword, _, args = logical.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends in a line continuation"
    return instructions


def env_pairs(args: str) -> dict[str, str]:
    """ENV key=value pairs (quoted values allowed), or the legacy `ENV key value`."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def copy_sources_and_dest(instruction: Instruction) -> tuple[list[str], str]:
    words = [w for w in instruction.words() if not w.startswith("--")]
    return words[:-1], words[-1]


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())


def of(keyword: str) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.keyword == keyword]


def final_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in of("ENV"):
        env.update(env_pairs(instruction.args))
    return env


# --- .dockerignore, with Docker's matching rules -------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go filepath.Match plus `**`) as a regex over a slash-separated path."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out += "[^" + body[1:] + "]" if body.startswith("^") else "[" + body + "]"
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude, regex) per pattern, in order; `!` re-includes."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip()
        pattern = str(PurePosixPath("/" + pattern)).lstrip("/")  # relative to the context root, cleaned
        rules.append((exclude, _pattern_regex(pattern)))
    return rules


RULES = dockerignore_rules(DOCKERIGNORE.read_text())


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]] = RULES) -> bool:
    """Whether `path` (relative to the context root) stays out of the build context: the last pattern
    that matches the path or one of its parent directories decides."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for exclude, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            verdict = exclude
    return verdict


def test_matcher_follows_docker_rules() -> None:
    rules = dockerignore_rules("data\n**/__pycache__\n*.log\nmodels\n!models/keep.txt\n/docs/*.md\n")
    assert excluded("data", rules)
    assert excluded("data/raw/x.mp4", rules)  # a matching directory excludes everything under it
    assert not excluded("src/deepfake/data.py", rules)  # patterns are anchored at the root
    assert not excluded("src/data/x", rules)
    assert excluded("__pycache__/a.pyc", rules)  # `**/` matches zero directories too
    assert excluded("src/deepfake/__pycache__/cli.cpython-311.pyc", rules)
    assert excluded("x.log", rules)
    assert not excluded("logs/x.log", rules)  # `*` stops at a slash
    assert excluded("models/a.pt", rules)
    assert not excluded("models/keep.txt", rules)  # `!` re-includes, the last match wins
    assert excluded("docs/a.md", rules)
    assert not excluded("docs/sub/a.md", rules)


@pytest.mark.parametrize(
    "path",
    [
        ".git",
        ".venv",
        "data",
        "models",
        ".dvc/cache",
        ".git/HEAD",
        ".venv/bin/python",
        "data/raw/dfdc_train_part_0/x.mp4",
        "data/crops/dfdc_train_part_0/abc/0.png",
        "data/folds.csv",
        "models/train/classifier/best.pt",
        "models/train/classifier/history.json",
        "models/onnx/classifier.onnx",
        ".dvc/cache/files/md5/ab/cdef",
        ".dvc/tmp/lock",
        "src/deepfake/__pycache__/cli.cpython-311.pyc",
        "src/deepfake.egg-info/PKG-INFO",
        ".pytest_cache/README.md",
        ".ruff_cache/CACHEDIR.TAG",
        "some/where/weights.pt",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert excluded(path), f"{path} would be sent to the Docker daemon"


@pytest.mark.parametrize(
    "path", ["requirements.txt", "pyproject.toml", "README.md", "Dockerfile", "src/deepfake/cli.py", ".dvc/config"]
)
def test_dockerignore_keeps_in(path: str) -> None:
    assert not excluded(path), f"{path} would be missing from the build context"


def test_dockerignore_keeps_the_package_whole() -> None:
    files = [p for p in (ROOT / "src" / "deepfake").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files
    dropped = [str(p.relative_to(ROOT)) for p in files if excluded(p.relative_to(ROOT).as_posix())]
    assert not dropped, f".dockerignore drops package files: {dropped}"


# --- the Dockerfile -------------------------------------------------------------------------------


def test_base_is_a_pinned_cuda_runtime() -> None:
    froms = of("FROM")
    assert froms, "no FROM"
    image = froms[-1].words()[0]  # the final stage is the image
    pinned = r"nvidia/cuda:\d+\.\d+\.\d+-(?:cudnn\d*-)?runtime-ubuntu\d+\.\d+(?:@sha256:[0-9a-f]{64})?"
    match = re.fullmatch(pinned, image)
    assert match, f"{image} is not a version-pinned nvidia/cuda runtime image"


def test_base_cuda_major_matches_the_torch_wheel() -> None:
    """The pinned torch wheel's nvidia-*-cuXX dependencies name the CUDA major the base must carry."""
    pins = requirement_pins()
    installed = Version(importlib.metadata.version("torch"))
    if installed.public != pins["torch"].public:
        pytest.skip(f"torch {installed} installed here, {pins['torch']} pinned")
    majors = {
        int(m.group(1))
        for r in importlib.metadata.requires("torch") or []
        if (m := re.match(r"nvidia-[a-z-]+-cu(\d+)\b", r))
    }
    if not majors:
        pytest.skip("the installed torch is not a CUDA build")
    base = re.match(r"nvidia/cuda:(\d+)", of("FROM")[-1].words()[0])
    assert base, "the base is not an nvidia/cuda image"
    base_major = int(base.group(1))
    assert majors == {base_major}, f"torch wants CUDA {majors}, the base image has CUDA {base_major}"
    tensorrt = [w for i in of("RUN") for w in i.words() if w.startswith("tensorrt")]
    assert tensorrt, "no TensorRT install to check"
    for package in tensorrt:
        assert f"-cu{base_major}" in package, f"{package} does not match CUDA {base_major}"


def test_runs_as_a_non_root_user() -> None:
    users = of("USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    assert any(re.search(rf"useradd\b.*\b{re.escape(user)}\b", i.args) for i in of("RUN")), (
        f"user {user} is never created"
    )


def test_environment() -> None:
    env = final_env()
    assert env.get("DVC_SITE_CACHE_DIR", "").startswith("/")
    assert env.get("DVC_NO_ANALYTICS") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PIP_NO_CACHE_DIR") == "1"
    assert env.get("PATH", "").startswith("/opt/venv/bin:"), "the venv is not first on PATH"
    assert env.get("PYTHONPATH", "").split(":")[0] == "/workspace/src"  # the mounted checkout's code runs
    assert of("WORKDIR")[-1].args == "/workspace"
    assert any("safe.directory /workspace" in i.args for i in of("RUN"))


def test_python_is_3_11() -> None:
    assert any(re.search(r"\bpython3\.11 -m venv /opt/venv\b", i.args) for i in of("RUN"))
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


@dataclass(frozen=True)
class Step:
    """An instruction with the image's working directory and the repository files copied so far."""

    instruction: Instruction
    workdir: PurePosixPath
    copied: dict[PurePosixPath, Path]  # image path -> repository path


def build_steps() -> list[Step]:
    copied: dict[PurePosixPath, Path] = {}
    workdir = PurePosixPath("/")
    steps: list[Step] = []
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.args
        elif instruction.keyword in {"COPY", "ADD"} and "--from" not in instruction.args:
            sources, dest = copy_sources_and_dest(instruction)
            into_dir = len(sources) > 1 or dest.endswith("/")
            for source in sources:
                target = workdir / dest / PurePosixPath(source).name if into_dir else workdir / dest
                copied[target] = ROOT / source
        steps.append(Step(instruction, workdir, dict(copied)))
    return steps


def test_copy_sources_exist_and_are_in_the_context() -> None:
    copies = [i for i in of("COPY") + of("ADD") if "--from" not in i.args]
    assert copies
    for instruction in copies:
        sources, _ = copy_sources_and_dest(instruction)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert not excluded(source), f"COPY {source}: .dockerignore keeps it out of the context"


def pip_installs(step: Step) -> list[list[str]]:
    """The words of each `pip install` command in a RUN."""
    commands = re.split(r"&&|;|\|\||\bthen\b|\belse\b", step.instruction.args)
    words = [shlex.split(c.replace("python -m pip", "pip")) for c in commands]
    return [w for w in words if w[:2] == ["pip", "install"]]


def test_installs_the_pinned_requirements_then_the_package() -> None:
    requirements_step = package_step = None
    for index, step in enumerate(build_steps()):
        if step.instruction.keyword != "RUN":
            continue
        for words in pip_installs(step):
            if "-r" in words:
                target = step.workdir / words[words.index("-r") + 1]
                assert step.copied.get(target) == REQUIREMENTS, f"{target} is not the repository's requirements.txt"
                requirements_step = index
            for word in words[2:]:
                if word.startswith("-") or re.match(r"^[\w.\[\],-]+[=<>~!]", word):
                    continue  # an option or a requirement specifier
                target = step.workdir / word
                if step.copied.get(target / "pyproject.toml") == ROOT / "pyproject.toml":
                    assert step.copied.get(target / "src") == ROOT / "src", "src/ is not copied beside pyproject.toml"
                    assert step.copied.get(target / "README.md") == ROOT / "README.md", "pyproject's readme is missing"
                    assert not {"-e", "--editable"} & set(words), "install the package, not a link to it"
                    package_step = index
    assert requirements_step is not None, "no RUN installs -r requirements.txt"
    assert package_step is not None, "no RUN installs the package from its pyproject.toml"
    assert requirements_step < package_step


def test_entry_command_is_the_package_console_script() -> None:
    commands = of("ENTRYPOINT") or of("CMD")
    assert commands, "no ENTRYPOINT or CMD"
    form = commands[-1].exec_form()
    assert form, "use the exec (JSON) form so signals reach the process"
    scripts = PYPROJECT["project"]["scripts"]
    assert form[0] in scripts, f"{form[0]} is not one of the package's console scripts {sorted(scripts)}"
    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert declared.get(form[0]) == scripts[form[0]], "the installed package does not declare the command"
    script = Path(sys.executable).parent / form[0]
    assert script.is_file(), f"{script} is not installed"
    result = subprocess.run([str(script), *form[1:]], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: deepfake" in result.stdout


def test_tensorrt_is_an_opt_in_build_arg() -> None:
    args = {k: v for i in of("ARG") for k, _, v in [i.args.partition("=")]}
    assert args.get("WITH_TENSORRT") == "0"
    assert any("WITH_TENSORRT" in i.args and "tensorrt" in i.args.lower() for i in of("RUN"))


# --- requirements.txt -----------------------------------------------------------------------------


def requirement_pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in REQUIREMENTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not an exact pin: {raw}"
        assert "*" not in specifiers[0].version, f"not an exact pin: {raw}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} pinned twice"
        pins[name] = Version(specifiers[0].version)
    return pins


def test_requirements_are_exact_pins_that_satisfy_pyproject() -> None:
    pins = requirement_pins()
    assert {"torch", "torchvision", "dvc"} <= pins.keys()
    for dependency in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} (a dependency in pyproject.toml) is not pinned in requirements.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.txt pins {name}=={pins[name]}, pyproject.toml asks {requirement.specifier}"
        )


def test_the_bootstrap_installs_requirements_torch_and_a_pinned_uv() -> None:
    """pip installs torch and torchvision first (it follows the user's pip configuration; uv does not), at
    requirements.txt's pins, so uv finds them installed and leaves them; uv itself is pinned too."""
    pins = requirement_pins()
    bootstrap: dict[str, Version] = {}
    for raw in (ROOT / "requirements-bootstrap.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"not an exact pin: {raw}"
            bootstrap[canonicalize_name(requirement.name)] = Version(specifier.version)
    assert set(bootstrap) == {"torch", "torchvision", "uv"}
    assert bootstrap["torch"] == pins["torch"] and bootstrap["torchvision"] == pins["torchvision"]


def test_ci_runs_the_readmes_test_command() -> None:
    commands = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2 and commands[1].endswith("&& pytest")  # the quick start: the main job, the tests
    assert commands[1] in (ROOT / ".ci/run").read_text().splitlines()
    for command in commands:
        # --compile-bytecode: pip compiles what it installs, uv only when asked; without it every process
        # compiles the modules it imports again where .pyc files cannot be written (PYTHONDONTWRITEBYTECODE)
        bootstrap = "pip install -r requirements-bootstrap.txt && uv pip install --compile-bytecode -r requirements.txt"
        assert bootstrap in command
