"""Shared by the documentation tests (DOC_01, DOC_03): pull the `invoke ...` and `ark ...`
commands out of a Markdown file and check each one against the real command surfaces —
the Invoke collection in tasks.py (what `invoke --list` / `invoke --help TASK` print) and
the `ark` argparse tree — so a document cannot name a task, subcommand or option that does
not exist.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass

# Invoke's own flags (not a task's): `invoke --list`, `invoke --help deploy`.
INVOKE_CORE = {"--list", "-l", "--help", "-h", "--version", "-V", "--complete"}
# Words that end one command on a line (a pipe, a chain, a comment).
SHELL_BREAKS = {"|", "||", "&&", ";", "#", ">", ">>", "2>&1", "<"}
PROGRAMS = {"invoke": "invoke", ".venv/bin/invoke": "invoke", "./ops": "invoke",
            "ark": "ark", ".venv/bin/ark": "ark", "/opt/ark/venv/bin/ark": "ark"}


@dataclass(frozen=True)
class Command:
    program: str  # "invoke" or "ark"
    words: tuple[str, ...]  # the words after the program name
    line: str  # where it came from, for the failure message


def _candidate_lines(markdown: str) -> list[str]:
    """Every fenced code line, and every inline `code span`."""
    lines: list[str] = []
    fenced = False
    for raw in markdown.splitlines():
        if raw.strip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            lines.append(raw.strip())
        else:
            lines += re.findall(r"`([^`]+)`", raw)
    return lines


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose: split on blanks
        return line.split()


def extract(markdown: str) -> list[Command]:
    """The invoke/ark commands a document shows, wherever they start on a line (after
    `sudo`, `flock ... sh -c`, a prompt...)."""
    found: list[Command] = []
    for line in _candidate_lines(markdown):
        words = _words(line.replace("sudo ", " "))
        for i, word in enumerate(words):
            program = PROGRAMS.get(word)
            if program is None or i + 1 >= len(words):
                continue
            rest: list[str] = []
            for w in words[i + 1:]:
                if w in SHELL_BREAKS or w in PROGRAMS:
                    break
                rest.append(w)
            if rest and not _placeholder(rest[0]):
                found.append(Command(program, tuple(rest), line))
    return found


def _placeholder(word: str) -> bool:
    """`invoke ...`, `ark <command>`, `ark "$@"`: a shape, not a command to check."""
    return word.startswith(("<", "$", "...")) or word == "TASK"


def _flag_name(word: str) -> str:
    return word.split("=", 1)[0]


# --- invoke --------------------------------------------------------------------------


def invoke_surface() -> dict[str, dict[str, bool]]:
    """task name -> {flag: takes a value} for every flag `invoke --help TASK` accepts."""
    from tasks import ns

    surface: dict[str, dict[str, bool]] = {}
    for name in ns.task_names:
        flags: dict[str, bool] = {}
        for arg in ns[name].get_arguments():
            for n in arg.names:
                dashed = n.replace("_", "-")
                flags[f"-{dashed}" if len(dashed) == 1 else f"--{dashed}"] = arg.kind is not bool
                if arg.kind is bool and arg.default is True and len(dashed) > 1:
                    flags[f"--no-{dashed}"] = False
        surface[name] = flags
    return surface


def check_invoke(cmd: Command, surface: dict[str, dict[str, bool]]) -> list[str]:
    """Problems with one invoke line: an unknown task, or an option its task lacks."""
    problems: list[str] = []
    task: str | None = None
    value_next = False
    for word in cmd.words:
        if value_next or word in INVOKE_CORE:
            value_next = False
            continue
        if word == "--":  # invoke's remainder: the words a task passes on (redis.cli)
            break
        if word.startswith("-"):
            flag = _flag_name(word)
            if task is None:
                problems.append(f"{flag} given before any task in `{cmd.line}`")
            elif flag not in surface[task]:
                problems.append(f"invoke {task} has no option {flag} (`{cmd.line}`)")
            else:
                value_next = surface[task][flag] and "=" not in word
            continue
        if word in surface:
            task = word
        elif task is None:
            problems.append(f"no invoke task {word!r} (`{cmd.line}`)")
            return problems
    return problems


# --- ark -----------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its tree here; no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def check_ark(cmd: Command) -> list[str]:
    """Problems with one `ark ...` line: an unknown subcommand or an option it lacks."""
    from ark_runtime.cli import build_parser

    parser, path = build_parser(), ["ark"]
    for word in cmd.words:
        subs = _subparsers(parser)
        if _placeholder(word):
            return []
        if word.startswith("-"):
            if _flag_name(word) not in _options(parser):
                return [f"{' '.join(path)} has no option {_flag_name(word)} (`{cmd.line}`)"]
            continue
        if subs:
            if word not in subs:
                return [f"{' '.join(path)} has no subcommand {word!r} (`{cmd.line}`)"]
            parser, path = subs[word], [*path, word]
    if _subparsers(parser):
        return [f"`{cmd.line}` stops before a subcommand of {' '.join(path)}"]
    return []


def problems_in(markdown: str) -> tuple[list[Command], list[str]]:
    """Every command found in the document, and what is wrong with them."""
    commands = extract(markdown)
    surface = invoke_surface()
    problems: list[str] = []
    for cmd in commands:
        problems += check_invoke(cmd, surface) if cmd.program == "invoke" else check_ark(cmd)
    return commands, problems


# --- running them ------------------------------------------------------------------------

# Commands safe to run exactly as written on any control node (they only read).
RUN_AS_WRITTEN = {("invoke", ("lock", "--check")), ("invoke", ("--list",))}


def invoke_task(cmd: Command, surface: dict[str, dict[str, bool]]) -> str | None:
    return next((w for w in cmd.words if w in surface), None)


def ark_path(cmd: Command) -> tuple[str, ...]:
    """The subcommand words of an `ark ...` line (`ark snapshot verify --x` -> snapshot,
    verify)."""
    from ark_runtime.cli import build_parser

    parser, path = build_parser(), []
    for word in cmd.words:
        subs = _subparsers(parser)
        if word.startswith("-") or word not in subs:
            break
        parser, path = subs[word], [*path, word]
    return tuple(path)


def safe_runs(commands: list[Command]) -> list[tuple[str, ...]]:
    """What the doc test runs for a document's commands: each safe command as written, and
    `--help` of every invoke task and `ark` subcommand it names (they parse every option the
    task or subcommand has, import its module and exit 0 without touching a host)."""
    surface = invoke_surface()
    runs: list[tuple[str, ...]] = []
    for cmd in commands:
        if (cmd.program, cmd.words) in RUN_AS_WRITTEN:
            run = (cmd.program, *cmd.words)
        elif cmd.program == "invoke":
            task = invoke_task(cmd, surface)
            run = ("invoke", "--help", task) if task else ("invoke", "--list")
        else:
            run = ("ark", *ark_path(cmd), "--help")
        if run not in runs:
            runs.append(run)
    return runs
