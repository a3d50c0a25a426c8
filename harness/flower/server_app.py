"""The Flower ``ServerApp``: the local engine's round loop, with client training sent to SuperNodes.

:class:`FlowerRoundEngine` *is* :class:`harness.engine.RoundEngine` (same sampling, ``configure_fit``,
``aggregate``, ``post_aggregate``, ``evaluate``, checkpoints and lifecycle hooks, hence the same MLflow
logging); only ``_train_clients`` differs: it sends one ``train`` message per sampled client through
Flower's ``Grid`` and reads the replies in the sampled order, so per-round sums match the local engine.

Failure policy (like Flower's ``accept_failures=True``): a client whose ClientApp raised, or that sent
no reply within ``reply_timeout``, is dropped from the round; its error is logged, counted in
``clients/failed`` and written into the round's ``clients.json``; the round aggregates the others. A round
in which every sampled client failed stops the run with an error naming them.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from harness.config import RunConfig
from harness.engine import RoundEngine
from harness.types import ClientUpdate, RunSummary
from harness.workspace import trained_clients
from harness.flower.records import TrainIns, TrainRes

log = logging.getLogger(__name__)


class FlowerSetupError(RuntimeError):
    """The connected SuperNodes do not match the configured clients."""


class AllClientsFailedError(RuntimeError):
    """Every client sampled in a round failed."""


def connect_clients(grid: Grid, num_clients: int, timeout: float) -> dict[int, int]:
    """Harness client id -> Flower node id, from each node's ``partition-id`` (waits up to ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while len(node_ids := list(grid.get_node_ids())) < num_clients:
        if time.monotonic() > deadline:
            raise FlowerSetupError(f"only {len(node_ids)} SuperNode(s) connected within {timeout:.0f} s; "
                                   f"the run needs one per client ({num_clients}: federation.num_clients, 1 when "
                                   "federation.centralized)")
        time.sleep(1.0)
    queries = [Message(RecordDict(), dst_node_id=node, message_type=MessageType.QUERY) for node in node_ids]
    nodes: dict[int, int] = {}
    for reply in grid.send_and_receive(queries, timeout=timeout):
        if reply.has_error():
            raise FlowerSetupError(f"SuperNode {reply.metadata.src_node_id} failed to identify: {reply.error.reason}")
        client_id = int(reply.content["client"]["client-id"])
        if client_id in nodes or not 0 <= client_id < num_clients:
            raise FlowerSetupError(f"SuperNode {reply.metadata.src_node_id} has partition-id {client_id}: ids must "
                                   f"be unique and in 0..{num_clients - 1} (the run's {num_clients} client(s))")
        nodes[client_id] = reply.metadata.src_node_id
    missing = sorted(set(range(num_clients)) - set(nodes))
    if missing:
        raise FlowerSetupError(f"no SuperNode answered for client id(s) {missing}")
    return nodes


class FlowerRoundEngine(RoundEngine):
    """Runs the job on Flower: the server side here, every client on the SuperNode with its partition-id."""

    def __init__(self, config: RunConfig, pm, grid: Grid, progress: bool = True, resume: bool = False,
                 connect_timeout: float = 300.0, reply_timeout: float | None = None, deployment: bool = False):
        super().__init__(config, pm, progress=progress, resume=resume)
        self.engine = "flower-deployment" if deployment else "flower"  # recorded on the run, for --resume
        self.grid = grid
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout

    def setup(self) -> None:
        super().setup()
        client_cfg = copy.deepcopy(self.cfg)  # what every node builds its client side from
        client_cfg.tracking.run_name = self.run_name
        client_cfg.output_dir = str(Path(self.cfg.output_dir).resolve())
        self.client_config_yaml = client_cfg.to_yaml()
        self.nodes = connect_clients(self.grid, trained_clients(self.cfg), self.connect_timeout)

    def _train_clients(self, server_round: int, sampled: list[int], lr: float,
                       metrics: dict[str, float]) -> list[ClientUpdate]:
        self._client_log = []
        messages = []
        for cid in sampled:
            ins = TrainIns(self.client_config_yaml, server_round, lr, self.state.global_state,
                           self._configure_fit(server_round, cid),
                           self.state.cursors.get(cid, 0))
            messages.append(Message(ins.to_content(), dst_node_id=self.nodes[cid], message_type=MessageType.TRAIN))
        replies = {r.metadata.src_node_id: r for r in self.grid.send_and_receive(messages, timeout=self.reply_timeout)}
        updates, failures = [], []
        for cid in sampled:  # the local engine's order, so float sums are identical
            reply = replies.get(self.nodes[cid])
            if reply is None or reply.has_error():
                reason = reply.error.reason if reply is not None else f"no reply within {self.reply_timeout} s"
                log.warning("round %d: client %d failed and is left out of the round: %s", server_round, cid, reason)
                failures.append({"client_id": cid, "failed": reason})
                continue
            result = TrainRes.from_content(reply.content, cid)
            self._add_client(cid, result, metrics)
            if result.update is not None:
                updates.append(result.update)
        if failures:
            if len(failures) == len(sampled):
                raise AllClientsFailedError(f"round {server_round}: every sampled client failed: {failures}")
            metrics["clients/failed"] = float(len(failures))
            self._client_log.extend(failures)
        return updates


def server_app(config: RunConfig, pm, outcome: list[RunSummary], progress: bool = True, resume: bool = False,
               **engine_options) -> ServerApp:
    """A ServerApp running ``config`` with the plugins in ``pm``; appends the run's summary to ``outcome``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        outcome.append(FlowerRoundEngine(config, pm, grid, progress=progress, resume=resume, **engine_options).run())

    return app


app = ServerApp()


@app.main()
def deployment_main(grid: Grid, context: Context) -> None:
    """``flwr run``: the run config's ``harness-config`` names the YAML config file on the SuperLink host."""
    from harness.config import load_config
    from harness.session import tracked_plugins
    from harness.tracking import resolve_tracking_uri

    if "harness-config" not in context.run_config:
        raise FlowerSetupError("the Flower run config has no 'harness-config' (path to the harness YAML config)")
    cfg = load_config(file=str(context.run_config["harness-config"]))
    _, pm = tracked_plugins(cfg, resolve_tracking_uri(cfg.tracking.uri, cfg.output_dir))
    timeout = float(context.run_config.get("reply-timeout", 0)) or None
    FlowerRoundEngine(cfg, pm, grid, progress=False, reply_timeout=timeout, deployment=True).run()
