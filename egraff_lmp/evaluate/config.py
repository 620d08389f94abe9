"""The evaluation config (YAML): models, datasets and protocol, checked before anything runs.

::

    models:                        # name -> a deployed artifact or an ASE calculator
      mace: {artifact: models/gete-mace.egraff.pt, training_time_s: 420}
      mine: {calculator: mypkg.calc:make, species: [Ge, Te]}   # callback engine
      small: {artifacts: {md17_ethanol: a.egraff.pt,              # one per dataset
                          3bpa: {artifact: b.egraff.pt, training_time_s: 300}}}
      watched: {artifact: m.egraff.pt, committee: [m-seed11.egraff.pt, m-seed23.egraff.pt]}
      heads: {artifacts: {md17_ethanol: {artifact: two-head.egraff.pt, head: md17},
                          acetylacetone: {artifact: two-head.egraff.pt, head: acac}}}
    datasets:                      # registry names, or mappings with overrides
      - gete
      - {name: acetylacetone, temperature: 600, split: test_600K, label: acac-600K}
    protocol: {runs: 5, steps: 1000}

Paths are relative to the config file. Unknown keys are errors that name the nearest known
key. Units: K, fs, Å, eV.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from .. import datasets
from ..errors import EgraffError, located
from .records import Protocol

MODEL_KEYS = {"artifact", "artifacts", "calculator", "species", "label", "training_time_s",
              "trained_on", "committee", "head"}
DATASET_KEYS = {"name", "label", "temperature", "timestep_fs", "frame_spacing_fs", "split",
                "trajectory_split", "files", "trajectory_files", "species", "periodic"}
TOP_KEYS = {"title", "models", "datasets", "protocol"}


def check_keys(where: str, given, known, path) -> None:
    if not isinstance(given, dict):
        raise located(path, f"{where} must be a mapping, got {type(given).__name__}")
    for key in given:
        if key not in known:
            near = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise located(path, f"unknown key '{key}' in {where}{hint} (known: "
                                f"{', '.join(sorted(known))})")


@dataclass
class Model:
    """One column of the tables: an artifact, an ASE calculator, or one artifact per dataset
    (``per_dataset``: dataset label or registry name -> Model), as the study trains every
    model family on every dataset."""

    name: str
    artifact: Path | None = None
    calculator: str | None = None
    species: list[str] | None = None
    training_time_s: float | None = None
    metadata: dict = field(default_factory=dict)
    per_dataset: dict = field(default_factory=dict)
    trained_on: str | None = None   # which frames the model saw in training (said in reports)
    committee: list[Path] = field(default_factory=list)  # evaluated every devi_every steps
    head: str | None = None  # the head of a multi-head artifact (pair_style egraff ... head)

    def for_task(self, task) -> Model | None:
        """The model that runs on dataset ``task`` (None: this column has none for it)."""
        if not self.per_dataset:
            return self
        return self.per_dataset.get(task.label) or self.per_dataset.get(task.dataset.name)

    def artifacts(self) -> list[Path]:
        return [a for a in [self.artifact, *(m.artifact for m in self.per_dataset.values())]
                if a is not None]


@dataclass
class DatasetTask:
    """One dataset as the evaluation uses it (registry entry with the config's overrides)."""

    label: str
    dataset: datasets.Dataset
    test_files: list[Path]
    trajectory_files: list[Path]


@dataclass
class Config:
    path: Path
    title: str
    models: list[Model]
    datasets: list[DatasetTask]
    protocol: Protocol
    raw: dict


def load(path, overrides: dict | None = None) -> Config:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise located(path, "no such evaluation config")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise located(path, f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    check_keys("the config", raw, TOP_KEYS, path)
    base = path.parent.resolve()
    given = raw.get("protocol") or {}
    protocol = Protocol.from_config(
        {**given, **{k: v for k, v in (overrides or {}).items() if v is not None}}, path)
    models = [_model(name, spec, base, path) for name, spec in (raw.get("models") or {}).items()]
    if not models:
        raise located(path, "names no models (models: NAME: {artifact: FILE})")
    tasks = [_dataset(entry, base, path) for entry in (raw.get("datasets") or [])]
    if not tasks:
        raise located(path, "names no datasets (datasets: [gete, ...])")
    labels = [t.label for t in tasks]
    if len(set(labels)) != len(labels):
        raise located(path, f"two datasets share the label {sorted(labels)}: give 'label'")
    for m in models:
        for key in m.per_dataset:
            if not any(key in (t.label, t.dataset.name) for t in tasks):
                raise located(path, f"model {m.name}: artifacts names dataset '{key}', which "
                                    f"the config does not evaluate ({', '.join(labels)})")
        for t in tasks:
            mt = m.for_task(t)
            if mt is None:
                continue
            if mt.species is not None and not set(t.dataset.species) <= set(mt.species):
                missing = sorted(set(t.dataset.species) - set(mt.species))
                raise located(path, f"model {m.name} knows {','.join(mt.species)} but dataset "
                                    f"{t.label} has {','.join(missing)}: species mismatch")
    return Config(path.resolve(), str(raw.get("title") or path.stem), models, tasks, protocol,
                  raw)


def _model(name, spec, base, path) -> Model:
    if isinstance(spec, str):
        spec = {"artifact": spec}
    check_keys(f"model {name}", spec, MODEL_KEYS, path)
    if spec.get("artifacts") is not None:
        if spec.get("artifact") or spec.get("calculator") or \
                not isinstance(spec["artifacts"], dict) or not spec["artifacts"]:
            raise located(path, f"model {name}: 'artifacts' is a mapping dataset -> artifact, "
                                "instead of 'artifact' or 'calculator'")
        inherit = {k: spec[k] for k in ("training_time_s", "trained_on", "head") if k in spec}
        per = {str(ds): _model(name, {**inherit, **a} if isinstance(a, dict) else
                               {**inherit, "artifact": a}, base, path)
               for ds, a in spec["artifacts"].items()}
        return Model(str(name), per_dataset=per, trained_on=spec.get("trained_on"),
                     metadata=next(iter(per.values())).metadata)
    if bool(spec.get("artifact")) == bool(spec.get("calculator")):
        raise located(path, f"model {name}: give exactly one of 'artifact', 'artifacts' and "
                            "'calculator'")
    m = Model(str(name), calculator=spec.get("calculator"),
              species=list(spec["species"]) if spec.get("species") else None,
              training_time_s=spec.get("training_time_s"), trained_on=spec.get("trained_on"))
    if spec.get("artifact"):
        from ..deploy.artifact import read_metadata

        art = (base / spec["artifact"]).resolve()
        if not art.is_file():
            raise located(path, f"model {name}: artifact {art} not found")
        m.artifact = art
        m.metadata = read_metadata(art)
        m.species = m.species or list(m.metadata.get("type_names", [])) or None
        if m.training_time_s is None:
            m.training_time_s = m.metadata.get("training_time_s")
    if spec.get("head") is not None or m.artifact is not None:
        m.head = _head(name, spec, [(m.artifact.name, m.metadata)] if m.artifact else [],
                       path)
    if spec.get("committee") is not None:
        from ..deploy.artifact import read_metadata

        m.committee = _committee(name, spec, m.metadata, base, path)
        _head(name, spec, [(a.name, read_metadata(a)) for a in m.committee], path)
    return m


def _head(name, spec, artifacts, path) -> str | None:
    """The model's ``head``, checked against each artifact's heads (``artifacts``: (file
    name, metadata) pairs; a multi-head artifact needs one named; a head asked of an
    artifact without heads is an error)."""
    from ..deploy.artifact import head_index

    head = spec.get("head")
    if head is not None and not isinstance(head, str):
        raise located(path, f"model {name}: 'head' is the name of one of the model's heads")
    if head is not None and spec.get("calculator"):
        raise located(path, f"model {name}: 'head' goes with an artifact; a calculator's "
                            "factory chooses its own head")
    for where, meta in artifacts:
        try:
            head_index(meta, head, where)
        except EgraffError as exc:
            raise located(path, f"model {name}: {exc}") from None
    return head


def _committee(name, spec, metadata: dict, base, path) -> list[Path]:
    """A model's committee: artifacts (not calculators) that know the species of the model
    (``metadata``: its artifact's)."""
    from ..deploy.artifact import read_metadata

    given = spec["committee"]
    if not spec.get("artifact") or not isinstance(given, list) or not given:
        raise located(path, f"model {name}: 'committee' is a list of artifacts beside "
                            "'artifact' (the model that drives the runs)")
    species = set(metadata.get("type_names", []))
    out = []
    for a in given:
        art = (base / str(a)).resolve()
        if not art.is_file():
            raise located(path, f"model {name}: committee artifact {art} not found")
        missing = species - set(read_metadata(art).get("type_names", []))
        if missing:
            raise located(path, f"model {name}: committee artifact {art.name} lacks "
                                f"{','.join(sorted(missing))}: every member needs the "
                                "model's species")
        out.append(art)
    return out


def _dataset(entry, base, path) -> DatasetTask:
    if isinstance(entry, str):
        entry = {"name": entry}
    check_keys(f"dataset {entry.get('name', '?')}", entry, DATASET_KEYS, path)
    if "name" in entry and str(entry["name"]) in datasets.REGISTRY:
        ds = datasets.get(str(entry["name"]))
        if "files" in entry:  # e.g. one LiPS20 composition: the registry's settings, own files
            from dataclasses import replace

            splits = {"test": list(entry["files"])}
            if entry.get("trajectory_files"):
                splits["trajectory"] = list(entry["trajectory_files"])
            ds = replace(ds, splits=splits, species=tuple(entry.get("species", ds.species)))
    elif "name" in entry and "files" not in entry:
        ds = datasets.get(str(entry["name"]))
    elif "files" in entry:
        need = [k for k in ("species", "temperature", "timestep_fs") if k not in entry]
        if need:
            raise located(path, f"dataset {entry.get('name', entry['files'])}: a dataset given "
                                f"by files needs {', '.join(need)}")
        ds = datasets.Dataset(str(entry.get("name") or Path(entry["files"][0]).stem),
                              tuple(entry["species"]), float(entry["temperature"]),
                              float(entry["timestep_fs"]), entry.get("frame_spacing_fs"),
                              {"test": list(entry["files"])},
                              periodic=entry.get("periodic", True), provenance="config")
        if entry.get("trajectory_files"):
            ds.splits["trajectory"] = list(entry["trajectory_files"])
    else:
        raise located(path, "a dataset entry needs 'name' (registry) or 'files'")
    ds = ds.with_overrides(temperature=entry.get("temperature"),
                           timestep_fs=entry.get("timestep_fs"),
                           frame_spacing_fs=entry.get("frame_spacing_fs"))
    split = entry.get("split", "test")
    traj_split = entry.get("trajectory_split") or (
        ds.reference_split if split == "test" else split)
    try:
        test = datasets.split_files(ds, split, base)
        trajectory = datasets.split_files(ds, traj_split, base)
    except EgraffError as exc:
        raise located(path, str(exc)) from None
    label = str(entry.get("label") or (ds.name if split == "test" else f"{ds.name}-{split}"))
    return DatasetTask(label, ds, test, trajectory)
