"""What travels in Flower messages: the harness's values as ``ArrayRecord``/``MetricRecord``/``ConfigRecord``.

Server -> client (``train``): the global adapter, ``configure_fit``'s tensors and config, the round, the
learning rate, the client's data cursor and the resolved run config (YAML). Client -> server: the trained
adapter, ``client_fit_end``'s tensors, the update's summary, the client's share of the round metrics, its
filter record and its new data cursor. The server keeps every cursor, so its checkpoints are complete.
Tensors travel as Flower arrays (exact float round trip); the config travels as text.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from harness.client import ClientResult
from harness.config import RunConfig, load_config
from harness.types import AdapterState, ClientUpdate, FitIns


class FlowerMessageError(ValueError):
    """A Flower message lacks what the harness protocol needs (e.g. a client of another version)."""


def to_arrays(state: dict) -> ArrayRecord:
    return ArrayRecord({name: tensor.detach().cpu() for name, tensor in state.items()})


def from_arrays(record: ArrayRecord) -> AdapterState:
    return dict(record.to_torch_state_dict())


def config_from_yaml(text: str) -> RunConfig:
    """A :class:`RunConfig` from the YAML the server sent (validated like a config file)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        file.write(text)
        file.flush()
        return load_config(file=file.name)


@dataclass
class TrainIns:
    """One ``train`` message's content, as the client reads it."""

    config_yaml: str
    server_round: int
    lr: float
    global_state: AdapterState
    fit_ins: FitIns
    cursor: int = 0  # where this client's data order continues

    def to_content(self) -> RecordDict:
        try:
            fit_config = json.dumps(self.fit_ins.config)
        except TypeError as exc:
            raise FlowerMessageError(f"configure_fit's config must be JSON-serialisable to travel: {exc}") from exc
        return RecordDict({
            "global": to_arrays(self.global_state),
            "fit_ins": to_arrays(self.fit_ins.tensors),
            "config": ConfigRecord({"harness-config": self.config_yaml, "server-round": self.server_round,
                                    "lr": self.lr, "fit-config": fit_config, "cursor": self.cursor}),
        })

    @classmethod
    def from_content(cls, content: RecordDict) -> TrainIns:
        _require(content, ("global", "fit_ins", "config"), "train instruction")
        config = content["config"]
        return cls(str(config["harness-config"]), int(config["server-round"]), float(config["lr"]),
                   from_arrays(content["global"]),
                   FitIns(tensors=from_arrays(content["fit_ins"]), config=json.loads(str(config["fit-config"]))),
                   int(config["cursor"]))


@dataclass
class TrainRes(ClientResult):
    """One ``train`` reply's content: the node's :class:`~harness.client.ClientResult`."""

    def to_content(self) -> RecordDict:
        content = RecordDict({
            "round_metrics": MetricRecord(dict(self.metrics)),
            "client": ConfigRecord({"filter-record": json.dumps(self.filter_record), "cursor": self.cursor}),
        })
        if self.update is not None:
            content["update"] = to_arrays(self.update.state)
            content["extra"] = to_arrays(self.update.extra)
            content["update_info"] = MetricRecord({"num-examples": self.update.num_examples, **self.update.metrics})
        return content

    @classmethod
    def from_content(cls, content: RecordDict, client_id: int) -> TrainRes:
        _require(content, ("round_metrics", "client"), f"client {client_id}'s train reply")
        update = None
        if "update" in content:
            info = dict(content["update_info"])
            update = ClientUpdate(client_id, int(info.pop("num-examples")), from_arrays(content["update"]),
                                  from_arrays(content["extra"]), info)
        client = content["client"]
        return cls(update, dict(content["round_metrics"]), json.loads(str(client["filter-record"])), int(client["cursor"]))


def _require(content: RecordDict, keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in content]
    if missing:
        raise FlowerMessageError(f"{what} has no {', '.join(missing)} record(s); got {sorted(content.keys())}")
