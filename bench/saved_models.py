"""Finding a run's saved models: ``RUN_ID[:CELL_ID]`` -> a model file under results/models/.

A run that saves models (``save_model = true``) writes them under
``<results_dir>/models/<run id>/`` and names each in its cell's ``models``
section (path relative to the results folder, sha256, fold).
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import UserError


def resolve_model(spec: str | Path, results_dir: Path = Path("results")) -> Path:
    """A model file from a path, or from ``RUN_ID[:CELL_ID]`` of a record in ``results_dir``.

    The file's sha256 must match the record's; a cell with several models (one per
    fold) or a run with several cells needs the choice spelt out (the error lists them).
    """
    from bench.protocols.cells import file_sha256
    from bench.records import read_run_record

    path = Path(spec)
    if path.exists():
        return path
    run_id, _, cell_id = str(spec).partition(":")
    record_path = Path(results_dir) / f"{run_id}.json"
    if not record_path.is_file():
        raise UserError(
            f"--model {spec}: no such model file, and no result record {record_path} "
            "(give a file path, or RUN_ID[:CELL_ID] of a run that saved models)"
        )
    record = read_run_record(record_path)
    found = [
        (cell.id, entry)
        for cell in record.cells
        for entry in cell.sections.get("models") or []
        if not cell_id or cell.id == cell_id or f"{cell.id}:fold={entry.get('fold')}" == cell_id
    ]
    if len(found) != 1:
        choices = [
            f"{record.run_id}:{c.id}"
            + (f":fold={e.get('fold')}" if e.get("fold") is not None else "")
            for c in record.cells
            for e in c.sections.get("models") or []
        ]
        what = "no saved model matches" if not found else "several saved models match"
        raise UserError(
            f"--model {spec}: {what} in {record_path}"
            + (f"; choose one of: {', '.join(choices)}" if choices else " (it saved none)")
        )
    _, entry = found[0]
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise UserError(f"--model {spec}: {record_path} names no file for this model")
    model = Path(results_dir) / entry["path"]
    if not model.is_file():
        raise UserError(f"--model {spec}: {model} (named by {record_path}) is missing")
    if entry.get("sha256") and file_sha256(model) != entry["sha256"]:
        raise UserError(
            f"--model {spec}: {model} does not match its sha256 in {record_path} (it was "
            "changed or damaged); restore it from a copy or re-run with save_model = true"
        )
    return model
