"""Fail the image build when the installed set differs from constraints.txt, naming each difference.

pip applies constraints only to the packages they name: one the list lacks would come in at its
newest version, silently, and a pin pip could not honour would fail less plainly. Run with the image's Python, after the install.
"""

import re
import sys
from importlib.metadata import distributions
from pathlib import Path

# The installer itself, and the empty record Debian's venv makes for setuptools' pkg_resources.
NOT_OF_THE_SET = {"pip", "pkg-resources"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(constraints: str) -> int:
    pinned = {}
    for line in Path(constraints).read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            pinned[canonical(name)] = version
    installed = {
        canonical(d.metadata["Name"]): d.version
        for d in distributions()
        if canonical(d.metadata["Name"]) not in NOT_OF_THE_SET
    }
    problems = [
        f"{name}: pinned {pinned.get(name, '(not pinned)')}, installed {installed.get(name, '(not installed)')}"
        for name in sorted(set(pinned) | set(installed))
        if pinned.get(name) != installed.get(name)
    ]
    if problems:
        print(
            "the installed set differs from constraints.txt:",
            *problems,
            sep="\n  ",
            file=sys.stderr,
        )
        return 1
    print(f"installed set matches constraints.txt ({len(pinned)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
