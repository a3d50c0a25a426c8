"""The Flower ``ClientApp``: one SuperNode trains one harness client with the local engine's own code.

A SuperNode's ``partition-id`` (its ``--node-config``; set by the Simulation Engine) is the harness client
id. On a ``train`` message the node runs :meth:`harness.client.ClientTrainer.fit`, as the local engine does
(``pre_local_train``, local LoRA training with the ``local_grad_correction`` and ``local_post_step`` hooks,
``client_fit_end``), with the instructions ``configure_fit`` gave on the server.
The data cursor comes with the message and goes back with the reply (the server keeps it); plugin state
(SCAFFOLD's c_i) stays on the node, in the plugin's own store under the node's ``output_dir``.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from harness.client import ClientTrainer
from harness.config import run_dir
from harness.session import plugins
from harness.workspace import Workspace
from harness.flower.records import TrainIns, TrainRes, config_from_yaml


class ClientNode:
    """A node's client side: the run's data and model, with the filter, aggregator and attack plugins only."""

    def __init__(self, config_yaml: str, extra_plugins: Sequence[object] = ()):
        cfg = config_from_yaml(config_yaml)
        pm = plugins(cfg, *extra_plugins, kinds=("filter", "agg", "attack"))
        workspace = Workspace.build(cfg)
        self.trainer = ClientTrainer(cfg, pm, workspace.model, workspace.client_samples)
        name = cfg.tracking.run_name
        pm.hook.on_run_start(run=workspace.run_info(cfg, name, run_dir(cfg.output_dir, name), "flower"))

    def train(self, client_id: int, ins: TrainIns) -> TrainRes:
        """Train ``client_id`` for one round from the server's adapter, instructions and data cursor."""
        result = self.trainer.fit(client_id, ins.server_round, ins.lr, ins.global_state, lambda: ins.fit_ins,
                                  ins.cursor)
        return TrainRes(**vars(result))


_nodes: dict[str, ClientNode] = {}


def client_node(config_yaml: str, extra_plugins: Sequence[object]) -> ClientNode:
    """This process's client side of the run (built once: model, data and tokenisation are reused)."""
    key = hashlib.sha256(config_yaml.encode() + pickle.dumps(list(extra_plugins))).hexdigest()
    if key not in _nodes:
        _nodes.clear()  # one run per process at a time
        _nodes[key] = ClientNode(config_yaml, extra_plugins)
    return _nodes[key]


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
        reply = client_node(ins.config_yaml, extra_plugins).train(partition_id(context), ins)
        return Message(reply.to_content(), reply_to=message)

    return app


app = client_app()
