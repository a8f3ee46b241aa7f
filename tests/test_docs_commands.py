"""Every command the README and docs/ show is one the project has: its script or command exists; a configured
command's ``key=value`` overrides compose with its config (Hydra, as the command line would); a file command's
``--flags`` are ones its parser takes."""

import contextlib
import io
import re
import shlex

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from deeplab_mobile import cli
from tests.helpers import ROOT, composed

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNER = re.compile(
    r"^(?:\S*python3?\s+(?:-m\s+deeplab_mobile\s+(\S+)|scripts/(\w+)\.py)|deeplab-mobile\s+(\S+)|"
    r"torchrun\s+.*?scripts/(\w+)\.py)(.*)$"
)


def shown_commands():
    """(page, line, command name, its arguments) of every command line in a ```bash block."""
    found = []
    for page in PAGES:
        block, pending = False, ""
        for line in page.read_text().splitlines():
            if line.startswith("```"):
                block, pending = line.strip() in ("```bash", "```sh"), ""
                continue
            text = pending + line.split("  #")[0].strip()
            if text.endswith("\\"):  # a command continued on the next line
                pending = text[:-1] + " "
                continue
            pending = ""
            match = RUNNER.match(text) if block else None
            if match:
                name = next(g for g in match.groups()[:4] if g).replace("_", "-")
                found.append((page.name, text, name, match.group(5)))
    return found


COMMANDS = shown_commands()


def test_the_pages_show_commands():
    names = {name for _, _, name, _ in COMMANDS}
    assert {"train", "eval", "export", "quantize", "predict", "ablation-table", "compare-runs"} <= names
    assert len(COMMANDS) > 60


def users_choice(override: str) -> bool:
    """``group=option`` naming an option the built-in group does not have (one from ``--config-dir``)."""
    group, option = override.split("=", 1)
    conf = ROOT / "conf" / group
    return conf.is_dir() and not (conf / f"{option}.yaml").is_file()


def arguments(rest: str) -> list[str]:
    return shlex.split(re.sub(r"<[^>]*>", "x", rest))  # placeholders (<run>, <voc run>) as one word


@pytest.mark.parametrize(("page", "line", "name", "rest"), COMMANDS, ids=[f"{p}:{c[:60]}" for p, c, _, _ in COMMANDS])
def test_a_shown_command_is_accepted(page, line, name, rest):
    if name.startswith("--"):  # deeplab-mobile's own flags (--version)
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main([name]) == 0, f"{page}: {line}"
        return
    assert name in cli.COMMANDS, f"{page}: {line}: no command {name!r}"
    command = cli.COMMANDS[name]
    args = arguments(rest)
    if command.config:
        if "-m" in args or "--multirun" in args:  # a sweep's comma lists compose per job: check each key alone
            args = [a.split("=", 1)[0] + "=" + a.split("=", 1)[1].split(",")[0] for a in args if "=" in a]
        overrides = [a for a in args if "=" in a and not a.startswith(("hydra.", "hydra/"))]
        if "--config-dir" in args:  # a group choice from the user's own folder is theirs; the rest must compose
            overrides = [o for o in overrides if not users_choice(o)]
        try:
            composed(command.config, overrides)
        except (HydraException, OmegaConfBaseException) as exc:
            pytest.fail(f"{page}: {line}: {exc}")
        return
    flags = [a.split("=")[0] for a in args if a.startswith("--")]
    if not flags:
        return
    usage = io.StringIO()
    with contextlib.redirect_stdout(usage), pytest.raises(SystemExit):
        command.function()(["--help"])
    unknown = [f for f in flags if not re.search(rf"(^|[\s,\[]){re.escape(f)}\b", usage.getvalue())]
    assert unknown == [], f"{page}: {line}: flags {unknown} are not {name}'s"
