"""Read back what each tracking backend recorded, with the backend's own reader, as
``{run: {"params": {name: str}, "metrics": {key: {step: value}}}}`` (a test helper)."""

from __future__ import annotations

import json
import os
import struct
from collections import defaultdict
from pathlib import Path


def _record() -> dict:
    return {"params": {}, "metrics": defaultdict(dict)}


def mlflow_records(root: Path, experiment: str) -> dict:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow import MlflowClient

    client = MlflowClient((root / "mlruns").resolve().as_uri())
    records = defaultdict(_record)
    for run in client.search_runs([client.get_experiment_by_name(experiment).experiment_id]):
        record = records[run.info.run_name]
        record["params"].update(run.data.params)
        for key in run.data.metrics:
            for point in client.get_metric_history(run.info.run_id, key):
                record["metrics"][key][point.step] = point.value
    return dict(records)


def tensorboard_records(root: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = {}
    for folder in sorted((root / "tensorboard").iterdir()):
        events = EventAccumulator(str(folder))
        events.Reload()
        record = records[folder.name] = _record()
        text = events.Tensors("params/text_summary")[0].tensor_proto.string_val[0]
        record["params"].update({k: str(v) for k, v in json.loads(text).items()})
        for key in events.Tags()["scalars"]:
            record["metrics"][key] = {e.step: e.value for e in events.Scalars(key)}
    return records


def wandb_records(root: Path) -> dict:
    """Offline runs: the transaction log of each (``run-<id>.wandb``: LevelDB log records of
    wandb's protobuf ``Record``s); a resumed run is a second offline folder with the same id."""
    from wandb.proto import wandb_internal_pb2 as pb

    records = defaultdict(_record)
    for path in sorted((root / "wandb").glob("offline-run-*/run-*.wandb")):
        name = None
        for data in _leveldb_records(path.read_bytes()):
            record = pb.Record()
            record.ParseFromString(data)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                name = record.run.display_name
                for item in record.run.config.update:
                    key = item.key or "/".join(item.nested_key)
                    if not key.startswith("_"):
                        records[name]["params"][key] = str(json.loads(item.value_json))
            elif kind == "history":
                for item in record.history.item:  # a key with "/" is stored as its parts
                    key = item.key or "/".join(item.nested_key)
                    if not key.startswith("_"):
                        records[name]["metrics"][key][record.history.step.num] = float(json.loads(item.value_json))
    return dict(records)


def _leveldb_records(raw: bytes, header: int = 7, block: int = 32768) -> list[bytes]:
    records, pending, pos = [], b"", header
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        data, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            break
        if kind == 1:  # a whole record
            records.append(data)
        elif kind in (2, 3):  # the first and middle pieces of a record split across blocks
            pending += data
        elif kind == 4:  # its last piece
            records.append(pending + data)
            pending = b""
    return records


READERS = {"mlflow": lambda root, study: mlflow_records(root, study),
           "tensorboard": lambda root, study: tensorboard_records(root),
           "wandb": lambda root, study: wandb_records(root)}
