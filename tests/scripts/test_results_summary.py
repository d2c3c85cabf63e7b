"""results/summary.jsonl is the data behind the results tables: every record is complete and
in range, docs/results.md holds exactly the full tables rendered from it, and the README's
headline figures are the named rows of it."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("results_table", ROOT / "tools/results_table.py")
results_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_table)

FIELDS = {"preset", "dataset", "init", "labels_fraction", "metric", "value", "baseline",
          "minutes", "machine", "command", "date"}


def test_every_record_is_complete_and_in_range():
    records = results_table.rows()
    assert records
    presets = {p.stem for p in (ROOT / "src/vitmae/config/presets").glob("*.yaml")}
    for r in records:
        assert FIELDS <= set(r), r["preset"]
        assert r["preset"] in presets, f"{r['preset']}: no such preset"
        # imagenet21k+mae+distill: MAE continued from the ImageNet weights with the decoder
        # warm-up, layer decay and feature distillation of docs/weights.md
        assert r["init"] in ("scratch", "mae", "imagenet21k", "imagenet21k+mae",
                             "imagenet21k+mae+distill")
        assert r["machine"] in ("cpu2", "gpu")
        assert 0 <= r["value"] <= 1 and 0 < r["labels_fraction"] <= 1
        assert r["baseline"] is None or 0 <= r["baseline"] <= 1
        assert r["curve"] is None or (ROOT / r["curve"]).is_file(), r["curve"]
        assert r.get("study") in (None, results_table.STUDY), r["preset"]
        assert r.get("peer") is None or (r["peer"] and "study" not in r), r["preset"]
    assert len({results_table.key(r) for r in records}) == len(records)


def test_results_doc_holds_the_tables_rendered_from_the_summary():
    doc = (ROOT / "docs/results.md").read_text()
    records = results_table.rows()
    for block in (results_table.block(records), results_table.study_block(records)):
        assert block in doc, "docs/results.md's tables differ from results/summary.jsonl: " \
            "run `python tools/results_table.py --write`"


def test_readme_headline_is_the_best_vitmae_row_of_each_family():
    readme = (ROOT / "README.md").read_text()
    records = results_table.rows()
    assert results_table.headline_block(records) in readme, "README's headline table differs " \
        "from results/summary.jsonl: run `python tools/results_table.py --write`"
    for family, rows in results_table.headline(records):
        # the headline row is the best vitmae row of its presets for that metric and start
        row = rows[0]
        rivals = [r for r in records if r["preset"] == row["preset"] and
                  r["metric"] == row["metric"] and r["labels_fraction"] == 1.0 and
                  "study" not in r and not r.get("peer")]
        assert row["value"] == max(r["value"] for r in rivals), family


def test_a_peer_row_is_marked_and_not_in_bold():
    row = {"preset": "mnist_seg", "dataset": "mnist_seg", "init": "scratch", "metric": "miou",
           "value": 0.5, "baseline": 0.1, "claim": None, "minutes": 3.0, "machine": "cpu2",
           "date": "2026-12-04", "command": "python peer.py", "labels_fraction": 1.0}
    peer = {**row, "peer": "U-Net peer"}
    lines = results_table.render([row, peer]).splitlines()
    assert lines[2].startswith("| `mnist_seg` | mnist_seg | scratch | miou | **0.500** |")
    assert lines[3].startswith(
        "| `mnist_seg` data, U-Net peer | mnist_seg | scratch | miou | 0.500 |")
    assert results_table.key(row) != results_table.key(peer)


def test_the_study_table_has_a_cell_per_start_and_fraction():
    row = {"preset": "cifar10", "dataset": "cifar10", "metric": "top1", "baseline": 0.1,
           "machine": "cpu2", "date": "2026-12-04", "command": "python study.py",
           "study": results_table.STUDY}
    records = [{**row, "init": i, "labels_fraction": f, "value": v, "minutes": 2.0}
               for i, f, v in (("scratch", 0.01, 0.25), ("scratch", 1.0, 0.5),
                               ("mae", 1.0, 0.625))]
    lines = results_table.render_study(records).splitlines()
    assert lines[0] == "| start | 1% labels | 100% labels |"
    assert lines[2] == "| scratch (`cifar10`) | **25.00%** (2 min) | **50.00%** (2 min) |"
    assert lines[3] == "| mae (`cifar10`) | - | **62.50%** (2 min) |"
    assert lines[-1] == "cpu2, 2026-12-04, 6 min in all: `python study.py`"
    # a start with another preset (the CNN from scratch) is a row of its own, its command added
    cnn = {**records[1], "preset": "cifar10_resnet18", "command": "python study.py --cnn"}
    lines = results_table.render_study([*records, cnn]).splitlines()
    assert lines[4] == "| scratch (`cifar10_resnet18`) | - | **50.00%** (2 min) |"
    assert lines[-1].endswith("8 min in all: `python study.py`<br>`python study.py --cnn`")
    # a start made by two commands (MAE, then the study) lists each once, the shared one once
    two = {**records[2], "init": "imagenet21k+mae", "command": "vitmae pretrain; python study.py"}
    lines = results_table.render_study([*records, two]).splitlines()
    assert lines[-1].endswith("in all: `python study.py`<br>`vitmae pretrain`")
    assert "scratch" not in results_table.render(records)  # not in the presets' table
