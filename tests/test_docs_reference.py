"""Every generated reference page (docs/config-reference.md, docs/reference/) matches the code it comes from:
the schema, the entry points' parsers, conf/ and raymlops/core/names.py (raymlops/docs_reference.py)."""

from __future__ import annotations

import pytest
from conftest import REPO

from raymlops import docs_reference

PAGES = docs_reference.pages()


@pytest.mark.parametrize("page", sorted(PAGES))
def test_generated_page_matches_the_code(page: str) -> None:
    on_disk = (REPO / page).read_text() if (REPO / page).is_file() else ""
    assert on_disk == PAGES[page], f"{page} differs from the code: run make docs-reference"


def test_every_entry_point_is_in_the_command_reference() -> None:
    cli = PAGES["docs/reference/cli.md"]
    for name in (*docs_reference.HYDRA_COMMANDS, *docs_reference.ARGPARSE_COMMANDS):
        assert f"`python -m raymlops.{name}`" in cli
    for sub in ("list", "promote", "alias", "rollback", "start", "backup", "restore", "grant", "replay", "fail"):
        assert f" {sub}`" in cli, sub


def test_every_shared_name_is_in_the_names_page() -> None:
    from raymlops.core import names

    page = PAGES["docs/reference/mlflow-names.md"]
    for constant in (n for n in dir(names) if n.isupper()):
        assert f"| `{constant}` |" in page, constant
