"""``elmo-tasks package RUN_DIR --output model.tar.gz``: a trained run and its backbone in one file."""

from __future__ import annotations

import argparse
from pathlib import Path


def package(run_dir: Path, output: Path, embed_backbone: bool = False) -> dict:
    """Write the model package of ``run_dir`` (its config, vocabularies, best checkpoint, scores
    and the backbone: by name and hash when it is a named model, embedded when it is a file, or
    always with ``embed_backbone``). The output path is checked and the run loaded (so a damaged
    run is refused) before anything is written. Returns the manifest, with ``bytes`` (the
    archive's size) added."""
    from elmo_core.io import check_output_file

    from ..package import backbone_reference, write_package
    from ..run_dir import build_run, read_run_files

    check_output_file(output, "--output")
    run_dir = Path(run_dir)
    files = read_run_files(run_dir)
    trained = build_run(files, lambda name: run_dir / name)  # the run must load as it will from the package
    if (run_dir / "results.json").is_file():
        files["results.json"] = (run_dir / "results.json").read_bytes()
    task = trained.task
    reference = backbone_reference(task.config.backbone, embed_backbone) if task.uses_elmo() else None
    manifest = write_package(output, files, task.name, reference)
    return {**manifest, "bytes": Path(output).stat().st_size}


def run(args: argparse.Namespace) -> int:
    manifest = package(args.run_dir, args.output, args.embed_backbone)
    backbone = manifest["backbone"]
    if backbone is None:
        described = "none (the run does not use ELMo)"
    elif backbone["kind"] == "named":
        from elmo_core.models import release_label

        label = release_label(backbone["name"], backbone["weights_sha256"])
        described = f"named model '{label}' (weights sha256 {backbone['weights_sha256'][:16]}…)"
    else:
        weights = manifest["files"]["backbone/weights.hdf5"]["size"]
        described = f"embedded ({weights / 1e6:.1f} MB of weights)"
    print(f"packaged {manifest['task']} run {args.run_dir} -> {args.output} ({manifest['bytes'] / 1e6:.1f} MB)")
    print(f"backbone: {described}")
    return 0


def add_parser(verbs) -> None:
    parser = verbs.add_parser(
        "package",
        help="bundle a trained run and its backbone into one file",
        description="Write one .tar.gz holding what predict and evaluate need: the run's config, vocabularies "
        "and best checkpoint (best.pt), its scores (results.json), and a manifest with the sha256 of "
        "each file. A named backbone (default, small, ...) is recorded by name and content hash and "
        "must match on the machine that loads the package; a backbone given as files is embedded. "
        "Use the package wherever a run directory is taken: elmo-tasks predict/evaluate MODEL.tar.gz, "
        "or tasks.run_dir.load_run('MODEL.tar.gz') in Python.",
        epilog="example: elmo-tasks package runs/ner_conll2003-seed1 --output ner.tar.gz && "
        "elmo-tasks predict ner.tar.gz --input news.txt --output news.tags",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory written by 'elmo-tasks train'")
    parser.add_argument("--output", type=Path, required=True, help="the package to write (e.g. model.tar.gz)")
    parser.add_argument(
        "--embed-backbone",
        action="store_true",
        help="put the backbone's options JSON and HDF5 weights in the package even when it is a named model "
        "(self-contained, larger by the size of its weights)",
    )
    parser.set_defaults(run=run)
