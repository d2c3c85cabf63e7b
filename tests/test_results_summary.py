"""results/summary.jsonl is the data behind the README's results table: every record is
complete and in range, and the README holds exactly the table rendered from it."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("results_table", ROOT / "tools/results_table.py")
results_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_table)

FIELDS = {"preset", "dataset", "init", "labels_fraction", "metric", "value", "baseline",
          "minutes", "machine", "command", "date"}


def test_every_record_is_complete_and_in_range():
    records = results_table.rows()
    assert records
    presets = {p.stem for p in (ROOT / "src/vitmae/configs").glob("*.yaml")}
    for r in records:
        assert FIELDS <= set(r), r["preset"]
        assert r["preset"] in presets, f"{r['preset']}: no such preset"
        assert r["init"] in ("scratch", "mae", "imagenet21k", "imagenet21k+mae")
        assert r["machine"] in ("cpu2", "gpu")
        assert 0 <= r["value"] <= 1 and 0 < r["labels_fraction"] <= 1
        assert r["baseline"] is None or 0 <= r["baseline"] <= 1
        assert r["curve"] is None or (ROOT / r["curve"]).is_file(), r["curve"]
    assert len({(r["preset"], r["init"], r["metric"]) for r in records}) == len(records)


def test_readme_table_is_rendered_from_the_summary():
    readme = (ROOT / "README.md").read_text()
    assert results_table.block(results_table.rows()) in readme, \
        "README's results table differs from results/summary.jsonl: run " \
        "`python tools/results_table.py --write`"
