"""The Flower ``ClientApp``: one SuperNode trains one harness client with the local engine's own code.

A SuperNode's ``partition-id`` (its ``--node-config``; set by the Simulation Engine) is the harness client
id. On a ``train`` message the node runs ``pre_local_train``, local LoRA training with the
``local_grad_correction`` and ``local_post_step`` hooks and ``client_fit_end`` exactly as
:class:`harness.engine.RoundEngine` does (it *is* that engine's ``_train_client``), with ``configure_fit`` answered by what the server sent.
The data cursor comes with the message and goes back with the reply (the server keeps it); plugin state
(SCAFFOLD's c_i) stays on the node, in the plugin's own store under the node's ``output_dir``.
"""

from __future__ import annotations

import hashlib
import pickle
from collections import defaultdict
from collections.abc import Sequence

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from harness.engine import RoundEngine
from harness.hookspecs import hookimpl
from harness.registry import build_manager
from harness.types import FitIns
from harness.flower.records import TrainIns, TrainRes, config_from_yaml


class ServerInstructions:
    """Client-side stand-in for the server's ``configure_fit``: answers with what the server sent."""

    def __init__(self) -> None:
        self.fit_ins = FitIns()

    @hookimpl(tryfirst=True)
    def configure_fit(self, server_round, client_id, global_state):
        return self.fit_ins


class ClientEngine(RoundEngine):
    """A node's client side: the run's data and model, with the filter and aggregator plugins only."""

    def __init__(self, config_yaml: str, extra_plugins: Sequence[object] = ()):
        cfg = config_from_yaml(config_yaml)
        p = cfg.plugins
        self.instructions = ServerInstructions()
        selection = [("filter", p.filter, p.filter_options), ("agg", p.agg, p.agg_options)]
        super().__init__(cfg, build_manager(selection, extra=[*extra_plugins, self.instructions]), progress=False)
        self.setup()
        self.hook.on_run_start(run=self.run_info())

    def train(self, client_id: int, ins: TrainIns) -> TrainRes:
        """Train ``client_id`` for one round from the server's adapter and data cursor."""
        self.state.global_state = ins.global_state
        self.state.cursors[client_id] = ins.cursor
        self.instructions.fit_ins = ins.fit_ins
        self._client_log = []
        metrics: dict[str, float] = defaultdict(float)
        update = self._train_client(ins.server_round, client_id, ins.lr, metrics)
        return TrainRes(update, dict(metrics), self._client_log[0], self.state.cursors[client_id])


_engines: dict[str, ClientEngine] = {}


def client_engine(config_yaml: str, extra_plugins: Sequence[object]) -> ClientEngine:
    """This process's engine for the run (built once: model, data and tokenisation are reused)."""
    key = hashlib.sha256(config_yaml.encode() + pickle.dumps(list(extra_plugins))).hexdigest()
    if key not in _engines:
        _engines.clear()  # one run per process at a time
        _engines[key] = ClientEngine(config_yaml, extra_plugins)
    return _engines[key]


def partition_id(context: Context) -> int:
    if "partition-id" not in context.node_config:
        raise ValueError("this SuperNode has no partition-id: start it with "
                         "--node-config 'partition-id=K num-partitions=N' (K = its harness client id)")
    return int(context.node_config["partition-id"])


def client_app(extra_plugins: Sequence[object] = ()) -> ClientApp:
    """A ClientApp; ``extra_plugins`` are registered on every node next to the configured ones."""
    app = ClientApp()

    @app.query()
    def identify(message: Message, context: Context) -> Message:
        return Message(RecordDict({"client": ConfigRecord({"client-id": partition_id(context)})}), reply_to=message)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        ins = TrainIns.from_content(message.content)
        reply = client_engine(ins.config_yaml, extra_plugins).train(partition_id(context), ins)
        return Message(reply.to_content(), reply_to=message)

    return app


app = client_app()
