"""The README and config.yaml document every configuration key the engine accepts."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel

from blast_grpc.config import Config, config_from_dict

ROOT = Path(__file__).resolve().parents[2]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out += _keys(sub, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def test_every_key_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [k for k in _keys(Config) if f"`{k.split('.', 1)[1]}`" not in readme]
    assert not missing, f"README.md does not document: {missing}"


def test_every_key_is_in_config_yaml_with_its_default() -> None:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    for key in _keys(Config):
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"config.yaml lacks {key}"
            node = node[part]
    assert config_from_dict(raw) == Config()


def test_docs_link_only_to_files_in_the_repository() -> None:
    """A clone has nothing outside the repository: every relative link resolves inside it."""
    import re

    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "gateway" / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)", doc.read_text()):
            if re.match(r"^[a-z]+://", target):
                continue
            path = (doc.parent / target).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, f"links outside the repository or to missing files: {broken}"
    assert (ROOT / "docs" / "architecture.md").exists()
