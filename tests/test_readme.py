"""The README's test command is what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_commands = [c for c in commands if "pytest" in c]
    assert len(test_commands) == 1, "README.md must hold exactly one test command"
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_commands[0].strip() in [line.strip() for line in ci_lines]
