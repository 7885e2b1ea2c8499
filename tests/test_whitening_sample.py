"""experiments/whitening_sample.py: on class-sorted images the first images are one class and whiten badly."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import whitening_sample  # noqa: E402


def test_quick_run_on_class_sorted_images(tmp_path, capsys):
    out = tmp_path / "w.json"
    rows = {r["sample"]: r for r in whitening_sample.main(["--quick", "--out", str(out)])}
    assert sum(c > 0 for c in rows["first"]["classes"]) == 1          # 40 of 400 sorted images: one class
    assert rows["spread"]["classes"] == [4] * 10                       # every 10th: 4 of each
    assert sum(rows["random"]["classes"]) == 40
    # the spread sample's whitening whitens the test patches (near-identity covariance); the first one's does not
    assert rows["spread"]["max_off_diagonal"] < 0.2 < rows["first"]["max_off_diagonal"]
    assert max(abs(v - 1) for v in rows["spread"]["whitened_variances"]) < 0.2
    assert json.loads(out.read_text())["rows"][0]["sample"] == "first"
    assert "| spread | 10 of 10 (4-4 each) |" in capsys.readouterr().out
