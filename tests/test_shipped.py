"""The models that ship with the package are the ones their READMEs and configs describe."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import ROOT

from egraff_lmp import datasets
from egraff_lmp.deploy.artifact import read_metadata, sha256

MODELS = ROOT / "inputs" / "models"


@pytest.mark.parametrize("name", json.loads((MODELS / "metrics.json").read_text()))
def test_shipped_gete_models_match_their_recorded_metrics(name):
    row = json.loads((MODELS / "metrics.json").read_text())[name]
    meta = read_metadata(MODELS / row["artifact"])
    assert (meta["family"], meta["r_max"], meta["num_layers"], meta["dtype"]) == (
        row["family"], row["r_max"], row["num_layers"], row["dtype"])
    assert meta["type_names"] == ["Ge", "Te"]
    assert meta["source_sha256"] == sha256(MODELS / row["source"])  # built from what ships
    assert f"`{row['artifact']}`" in (MODELS / "README.md").read_text()
    # every model is evaluated; committee members (other seeds) in the committee evaluation
    config = "evaluate-committee.yaml" if "-seed" in name else "evaluate-gete.yaml"
    assert row["artifact"] in (ROOT / "inputs" / config).read_text()


def test_the_task_models_cover_their_datasets_species():
    cfg = yaml.safe_load((ROOT / "inputs" / "evaluate-tasks.yaml").read_text())
    per = cfg["models"]["mace"]["artifacts"]
    assert set(per) == set(cfg["datasets"])
    recorded = json.loads((MODELS / "tasks" / "metrics.json").read_text())
    shipped = {r["artifact"] for r in recorded.values()}
    for ds, entry in per.items():
        path = ROOT / "inputs" / entry["artifact"]
        meta = read_metadata(path)
        assert set(datasets.get(ds).species) <= set(meta["type_names"]), ds
        assert path.name in shipped and entry["training_time_s"] == round(
            next(r for r in recorded.values() if r["artifact"] == path.name)["train_seconds"])
