"""The documentation stays true to the repository.

- Every relative link in README.md, docs/*.md and results/reference/**/README.md resolves to a file
  or folder of the repository, and a `#anchor` into a Markdown file to one of its headings (GitHub's
  slug rules).
- Every `modelpower` command line they show (in fenced code blocks, and in inline code that starts
  with `modelpower `) names a command of the Typer app, and every `--option` in it is one that
  command takes.
- The README stays a front page (at most 200 lines), and no page cites issue numbers.
Reads files and the app's click objects only: no subprocess, no model is built.
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "results" / "reference").rglob("README.md")])
README_MAX_LINES = 200

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, https:, mailto: ... are not checked
OPTION = re.compile(r"^--?[A-Za-z][\w-]*$")
OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", ">", ">>", "<", "2>", "2>&1"}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def split_markdown(text: str) -> tuple[str, list[tuple[int, str]]]:
    """(the prose, with fenced blocks blanked so line numbers hold; the fenced lines as (lineno, line))."""
    prose, code, fence = [], [], None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            prose.append("")
        elif fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
            else:
                code.append((n, line))
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), code


def paragraphs(prose: str) -> list[tuple[int, str]]:
    """Blocks of prose between blank lines, with their first line number (code spans stay inside one)."""
    out, start, lines = [], 0, []
    for n, line in enumerate([*prose.splitlines(), ""], 1):
        if line.strip():
            start = start or n
            lines.append(line)
        elif lines:
            out.append((start, "\n".join(lines)))
            start, lines = 0, []
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts as its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    return anchors_of(path.read_text(encoding="utf-8"))


def anchors_of(text: str) -> frozenset[str]:
    """Every heading anchor of a Markdown text (a repeated heading gets -1, -2, ... as on GitHub)."""
    prose, _ = split_markdown(text)
    seen: dict[str, int] = {}
    out = set()
    for line in prose.splitlines():
        m = HEADING.match(line)
        if not m:
            continue
        s = slug(m.group(1))
        out.add(f"{s}-{seen[s]}" if s in seen else s)
        seen[s] = seen.get(s, 0) + 1
    return frozenset(out)


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link outside code."""
    prose, _ = split_markdown(text)
    out = []
    for start, para in paragraphs(prose):
        bare = INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), para)  # keep offsets
        for rx in (LINK, REF_DEF):
            out += [(start + bare.count("\n", 0, m.start()), m.group(1)) for m in rx.finditer(bare)]
    return sorted(out)


def link_problems(path: Path, text: str) -> list[str]:
    problems = []
    for n, target in links(text):
        if SCHEME.match(target):
            continue
        file, _, anchor = target.partition("#")
        where = f"{rel(path)}:{n}: link {target!r}"
        if not file:
            if anchor not in anchors_of(text):
                problems.append(f"{where}: this page has no heading with anchor #{anchor}")
            continue
        dest = (path.parent / file).resolve()
        if not dest.is_relative_to(ROOT):
            problems.append(f"{where} leaves the repository")
        elif not dest.exists():
            problems.append(f"{where}: no such file or folder {rel(dest)}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: {rel(dest)} has no heading with anchor #{anchor}")
    return problems


@cache
def cli() -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """(the root options, {command: its options}) of the `modelpower` Typer app."""
    import typer

    from harness.cli import app

    def options(command) -> frozenset[str]:
        names = {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
        return frozenset(names | {"--help"})

    group = typer.main.get_command(app)
    return options(group), {name: options(c) for name, c in group.commands.items()}


def is_modelpower(token: str) -> bool:
    return token == "modelpower" or token.endswith("/modelpower")


def tokens(line: str) -> list[str]:
    """A shell line as words and operators, comments dropped (plain split if the line is not shell)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: not shell, or not a line we can read
        return line.split("#")[0].split()


def fenced_commands(code: list[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    """(line number, words) of every `modelpower ...` command in fenced code lines.

    A line ending in a backslash, or a line that starts with an option (a YAML folded command), continues the
    command before it. A command starts at the first word of a line or after a shell operator, an environment
    assignment or a `key:` (YAML `- run: modelpower ...`), and ends at the next operator."""
    logical: list[tuple[int, str]] = []
    joining = False
    for n, line in code:
        if logical and (joining or line.lstrip().startswith("--")):
            logical[-1] = (logical[-1][0], logical[-1][1].rstrip().removesuffix("\\") + " " + line.strip())
        else:
            logical.append((n, line))
        joining = line.rstrip().endswith("\\")
    out = []
    for n, line in logical:
        if "modelpower" not in line:
            continue
        words = tokens(line)
        for i, w in enumerate(words):
            before = words[i - 1] if i else ""
            starts = i == 0 or before in OPERATORS or before.endswith(":") or re.match(r"^\w+=", before)
            if is_modelpower(w) and starts:
                rest = words[i + 1 :]
                end = next((j for j, t in enumerate(rest) if t in OPERATORS), len(rest))
                out.append((n, rest[:end]))
    return out


def inline_commands(text: str) -> list[tuple[int, list[str]]]:
    """(line number, words) of inline code spans that start with `modelpower ` (placeholders' brackets dropped)."""
    prose, _ = split_markdown(text)
    out = []
    for start, para in paragraphs(prose):
        for m in INLINE_CODE.finditer(para):
            words = m.group(2).replace("[", " ").replace("]", " ").split()
            if len(words) > 1 and is_modelpower(words[0]):
                out.append((start + para.count("\n", 0, m.start()), words[1:]))
    return out


def command_problems(path: Path, text: str) -> list[str]:
    root_opts, commands = cli()
    _, code = split_markdown(text)
    problems = []
    for n, words in [*fenced_commands(code), *inline_commands(text)]:
        shown = " ".join(["modelpower", *words])
        where = f"{rel(path)}:{n}: `{shown}`"
        i = 0
        while i < len(words) and words[i].startswith("-"):  # options of `modelpower` itself
            if words[i].split("=")[0] not in root_opts:
                problems.append(f"{where}: {words[i]} is not an option of modelpower")
            i += 1
        if i == len(words):
            continue
        name = words[i]
        if name not in commands:
            problems.append(f"{where}: no command {name!r} (commands: {', '.join(sorted(commands))})")
            continue
        for w in words[i + 1 :]:
            flag = w.split("=")[0]
            if OPTION.match(flag) and flag not in commands[name]:
                problems.append(f"{where}: {flag} is not an option of `modelpower {name}`")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_relative_links_resolve(path):
    problems = link_problems(path, path.read_text(encoding="utf-8"))
    assert not problems, "broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_modelpower_commands_and_options_exist(path):
    problems = command_problems(path, path.read_text(encoding="utf-8"))
    assert not problems, "commands or options that modelpower does not have:\n" + "\n".join(problems)


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines: move detail into docs/ (at most {README_MAX_LINES})"
    )


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_no_issue_numbers(path):
    text = path.read_text(encoding="utf-8")
    found = [
        f"{rel(path)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for m in re.finditer(r"\bissues? #?\d+", text, re.I)
    ]
    assert not found, "the docs describe the code as it is, not the issues that changed it:\n" + "\n".join(found)


def test_the_checks_find_what_they_look_for():
    """The checkers themselves: they read commands where the docs put them and catch each kind of mistake."""
    assert slug("Layout: `--memory-format`") == "layout---memory-format"
    assert slug("torch.compile modes, [here](x.md)") == "torchcompile-modes-here"
    _, code = split_markdown((ROOT / "README.md").read_text(encoding="utf-8"))
    assert ["quick"] in [words for _, words in fenced_commands(code)]  # `... && .venv/bin/modelpower quick`
    doc = ROOT / "docs" / "a-page-that-is-not-written.md"  # only its folder is used, to resolve links
    text = "\n".join(
        [
            "# Page",
            "[ok](#page) [gone](missing.md) [anchor](#nowhere) `[in code](missing.md)`",
            "```bash",
            "modelpower run resnet50-imagenet \\",
            "    --no-such-flag 1",
            "- run: >",
            "    modelpower compare a b",
            "    --bogus",
            "modelpower frobnicate",
            "```",
            "Inline: `modelpower quick [--profile ci] [--nope]`.",
        ]
    )
    found = link_problems(doc, text)
    assert len(found) == 2 and any("#nowhere" in p for p in found) and any("docs/missing.md" in p for p in found)
    problems = command_problems(doc, text)
    assert len(problems) == 4, problems
    assert "--no-such-flag is not an option of `modelpower run`" in problems[0]
    assert "--bogus" in problems[1] and "no command 'frobnicate'" in problems[2] and "--nope" in problems[3]
