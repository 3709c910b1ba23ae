"""The README's capability table (issue 8) is the one tools/capability_table.py makes, and every test it cites
exists: renaming or deleting a cited test fails here."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('capability_table', ROOT / 'tools' / 'capability_table.py')
capability_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(capability_table)


def test_readme_holds_the_generated_table():
    readme = (ROOT / 'README.md').read_text()
    section = readme.split(capability_table.START)[1].split(capability_table.END)[0]
    assert section.strip() == capability_table.table().strip(), \
        'README capability table is stale: run python tools/capability_table.py --write-readme'


def test_every_cited_test_is_collected():
    assert capability_table.missing_node_ids() == []


def test_every_upsampler_row_cites_a_test_in_every_column():
    for title, row in capability_table.ROWS.items():
        cells = capability_table.cells(row)
        assert len(cells) == len(capability_table.CAPABILITIES), title
        assert all(refs for _, refs in cells), title
