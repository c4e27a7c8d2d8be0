"""`newsletter init`: lay out a new workspace from the package's skeleton."""

from __future__ import annotations

from pathlib import Path

from newsletter.config import CONFIG_NAME
from newsletter.errors import ConfigError
from newsletter.importer import new_issue_text

SKELETON = Path(__file__).parent / "skeleton"
TEMPLATES = ("default", "letter", "digest")  # the built-in ones `init --template` offers


def init_workspace(directory: Path, template: str = "default") -> list[Path]:
    """Create newsletter.toml, .gitignore, issues/ with an example, subscribers/main.csv.

    No templates: a copy in templates/ overrides the built-in one for good and never gets
    its fixes, so a publisher copies only the one they change (see the README).
    """
    if template not in TEMPLATES:
        raise ConfigError(f"--template: expected one of {', '.join(TEMPLATES)}, got {template!r}")
    target = directory / CONFIG_NAME
    if target.exists():
        raise ConfigError(f"{target} already exists; not overwriting a workspace")
    directory.mkdir(parents=True, exist_ok=True)
    created = []

    def put(path: Path, data: bytes) -> None:
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        created.append(path)

    config = (SKELETON / CONFIG_NAME).read_text(encoding="utf-8")
    put(target, config.replace('template = "default"', f'template = "{template}"', 1).encode())
    put(directory / ".gitignore", (SKELETON / "gitignore").read_bytes())
    put(
        directory / "subscribers" / "main.csv", (SKELETON / "subscribers" / "main.csv").read_bytes()
    )
    example = new_issue_text("Welcome to the first issue")
    put(directory / "issues" / example.name, example.text.encode())
    return created
