"""SASRec-class transformer with content and time context, trained with full softmax cross-entropy.

Training only (PyTorch). What ships is ``SasrecWeights`` (numpy), from which ``sasrec_graph``
writes the ONNX graph decide runs; ``to_weights`` is the one bridge between the two.

Item vectors fuse a learned id embedding with an MLP over content features (genres, era, hashed
title n-grams). Items without training interactions have their id embedding forced to zero, and
during training a random share of ids is dropped per step, so the content path alone has to give
a usable vector: that is what a cold item gets. The same fused table embeds the input sequence and
scores the output (weight tying). Each input position adds embeddings of its hour, weekday and
gap since the previous event; the query (last position) adds the request time's hour, weekday
and gap since the newest event.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from training.context import DAYS, GAP_BUCKETS, HOURS
from training.onnx_export import ModelArrays
from training.sasrec_graph import COOC_EPS, BlockWeights, SasrecWeights
from training.sequences import (
    DECISION,
    TimedSplit,
    UserSeq,
    Windows,
    length_batches,
    query_batch,
    request_time,
    sample_requests,
)

NEG = -1.0e9


@dataclass(frozen=True)
class SasrecConfig:
    max_len: int = 50
    dim: int = 64
    blocks: int = 2
    heads: int = 1
    ffn_mult: int = 1
    dropout: float = 0.3
    content: bool = True
    context: bool = True
    query_context: bool = True  # with context: the request time's hour, weekday and gap to the newest event
    id_dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 0.0  # decoupled (AdamW)
    batch_size: int = 128
    epochs: int = 200
    warmup_epochs: int = 0  # linear warm-up of the learning rate
    cosine: bool = False  # cosine decay to zero over ``epochs`` after the warm-up
    mask_seen: bool = False  # leave earlier items of the window out of each step's softmax
    mask_history: bool = False  # with mask_seen: also the user's items before the window
    eval_every: int = 5
    patience: int = 4  # evaluations without a validation gain before stopping
    cold_fill: bool = False  # after training, give items without training data a content-predicted id vector
    # > 0: a second softmax term, this weight, where each target competes with its content vector alone
    # against the full (id + content) vectors of every other item: what a cold item faces when served.
    cold_loss: float = 0.0
    # With cold_loss: every warm item's content vector alone is a competitor too (the other cold items a
    # new item meets when served); without them, content-only vectors are only ever pushed up.
    cold_negatives: bool = True
    future: int = 0  # > 0: the next this many items within ``future_horizon_s`` are positives too
    future_horizon_s: int = 3600
    future_weight: float = 0.0  # weight of their own loss terms (0: only left out of the negatives)
    negatives: int = 0  # > 0: sampled softmax over this many uniform negatives per batch (0 = full softmax)
    bucket: bool = True  # batches of similar window length (fast on short sequences); else random batches
    shuffle_ties: bool = False  # reorder same-second events at random every epoch
    stride: int = 0  # training windows overlap by max_len - stride (0 = max_len: no overlap)
    request: str = "sampled"  # training request time: "target", "decision" or "sampled" (sequences.TRAIN_REQUESTS)
    seed: int = 0


class Block(nn.Module):
    def __init__(self, cfg: SasrecConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, d * cfg.ffn_mult)
        self.ff2 = nn.Linear(d * cfg.ffn_mult, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.p = cfg.dropout

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        shape = (b, length, self.heads, d // self.heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(b, length, d)))
        out: Tensor = x + self.drop(self.ff2(self.drop(F.relu(self.ff1(self.ln2(x))))))
        return out


class ContentEncoder(nn.Module):
    """MLP over the fixed [V, F] content matrix -> [V, d]; a sparse matrix (attribute ids, hashed
    titles) is multiplied as sparse, which on a 20,000-item catalogue is ten times cheaper per step."""

    SPARSE_BELOW = 0.05  # density under which the first layer runs as a sparse x dense product
    rows_cols: Tensor
    values: Tensor
    content: Tensor

    def __init__(self, content: NDArray[np.float32], dim: int) -> None:
        super().__init__()
        self.first = nn.Linear(content.shape[1], dim)
        self.second = nn.Linear(dim, dim)
        self.sparse = bool(np.count_nonzero(content) < self.SPARSE_BELOW * content.size)
        if self.sparse:
            rows, cols = np.nonzero(content)
            self.register_buffer("rows_cols", torch.as_tensor(np.stack([rows, cols]), dtype=torch.int64))
            self.register_buffer("values", torch.as_tensor(content[rows, cols]))
            self.shape = content.shape
        else:
            self.register_buffer("content", torch.as_tensor(content))

    def matrix(self) -> Tensor:
        if self.sparse:
            return torch.sparse_coo_tensor(
                self.rows_cols, self.values, self.shape, is_coalesced=True, check_invariants=False
            )
        return self.content

    def forward(self) -> Tensor:
        if self.sparse:
            x = torch.sparse.mm(self.matrix(), self.first.weight.T) + self.first.bias
        else:
            x = self.first(self.content)
        out: Tensor = self.second(F.gelu(x))
        return out


class SASRec(nn.Module):
    has_id: Tensor
    nonpad: Tensor
    warm: Tensor
    causal: Tensor
    cooc_ids: Tensor
    cooc_scores: Tensor
    cooc_prior: Tensor
    cooc_positions: Tensor
    cooc_weight: float = 0.0
    cooc_arrays: ModelArrays | None = None

    def __init__(
        self, cfg: SasrecConfig, vocab_size: int, content: NDArray[np.float32] | None, has_id: NDArray[np.bool_]
    ) -> None:
        super().__init__()
        d = cfg.dim
        self.cfg = cfg
        self.id_emb = nn.Embedding(vocab_size, d)
        nn.init.normal_(self.id_emb.weight, std=0.05)
        self.register_buffer("has_id", torch.as_tensor(has_id, dtype=torch.float32)[:, None])
        nonpad = torch.ones(vocab_size, 1)
        nonpad[0] = 0.0
        self.register_buffer("nonpad", nonpad)
        warm = np.flatnonzero(has_id)
        self.register_buffer("warm", torch.as_tensor(warm[warm != 0], dtype=torch.int64))
        self.content_mlp: ContentEncoder | None = None
        if cfg.content and content is not None and content.shape[1] > 0:
            self.content_mlp = ContentEncoder(content, d)
        self.pos = nn.Parameter(torch.randn(cfg.max_len, d) * 0.02)
        self.ctx: nn.ModuleDict | None = None
        if cfg.context:
            self.ctx = nn.ModuleDict(
                {
                    name: nn.Embedding(size, d)
                    for name, size in (
                        ("hour", HOURS),
                        ("dow", DAYS),
                        ("gap", GAP_BUCKETS),
                        ("q_hour", HOURS),
                        ("q_dow", DAYS),
                        ("q_gap", GAP_BUCKETS),
                    )
                }
            )
            for emb in self.ctx_tables().values():
                nn.init.normal_(emb.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.blocks))
        self.ln_f = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        causal = torch.triu(torch.ones(cfg.max_len, cfg.max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal", causal)

    def block_list(self) -> list[Block]:
        return [cast(Block, block) for block in self.blocks]

    def ctx_tables(self) -> dict[str, nn.Embedding]:
        return {} if self.ctx is None else {name: cast(nn.Embedding, emb) for name, emb in self.ctx.items()}

    def item_table(self) -> Tensor:
        ids = self.id_emb.weight * self.has_id
        if self.training and self.cfg.id_dropout > 0 and self.content_mlp is not None:
            keep = (torch.rand(ids.shape[0], 1, device=ids.device) >= self.cfg.id_dropout).float()
            ids = ids * keep
        table = ids if self.content_mlp is None else ids + self.content_mlp()
        return table * self.nonpad

    def hidden(self, table: Tensor, items: Tensor, ctx: dict[str, Tensor]) -> Tensor:
        """[B, L, d] final hidden states (before the request context)."""
        length = items.shape[1]
        x = table[items] + self.pos[-length:]
        if self.ctx is not None:
            x = x + self.ctx["hour"](ctx["hour"]) + self.ctx["dow"](ctx["dow"]) + self.ctx["gap"](ctx["gap"])
        x = self.drop(x)
        # Summed like the ONNX graph's (padding + causal), so an all-padding row means the same everywhere.
        pad = torch.where((items == 0)[:, None, None, :], NEG, 0.0)
        bias = pad + torch.where(self.causal[-length:, -length:], NEG, 0.0)
        for block in self.blocks:
            x = block(x, bias)
        out: Tensor = self.ln_f(x)
        return out

    def query(self, h: Tensor, ctx: dict[str, Tensor]) -> Tensor:
        if self.ctx is None or not self.cfg.query_context:
            return h
        out: Tensor = (
            h + self.ctx["q_hour"](ctx["q_hour"]) + self.ctx["q_dow"](ctx["q_dow"]) + self.ctx["q_gap"](ctx["q_gap"])
        )
        return out

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        table = self.item_table()
        items = batch["items"]
        h = self.query(self.hidden(table, items, batch), batch)
        targets = batch["targets"]
        keep = targets != 0
        h, tgt = h[keep], targets[keep]
        if 0 < self.cfg.negatives < int(self.warm.numel()):
            return self._sampled_loss(h, tgt, table)
        logits = h @ table.T
        # Items without training data are never targets: left in the softmax, every step would only push
        # their (content-only) vectors down, which is what buried cold items. So they sit out, with padding.
        # (In place: the matmul's backward does not need its output, and this is the largest tensor here.)
        logits.masked_fill_(self.has_id.T * self.nonpad.T == 0, NEG)
        if self.cfg.mask_seen:
            # Ranking masks the user's history, so training does too: items earlier in the window
            # (up to and including the input at this step) are not competitors.
            length = items.shape[1]
            upto = torch.tril(torch.ones(length, length, dtype=torch.bool))
            seen = torch.where(upto, items[:, None, :], 0)[keep]  # [N, L] item ids; 0 = padding, masked anyway
            if self.cfg.mask_history and "before" in batch:
                before = batch["before"]
                width = int((before != 0).sum(dim=1).max())
                if width:
                    earlier = before[:, None, -width:].expand(-1, length, -1)[keep]
                    seen = torch.cat([seen, earlier], dim=1)
            own_logit = (h * table[tgt]).sum(dim=1, keepdim=True)  # not from ``logits``: it is overwritten
            logits.scatter_(1, seen, NEG)
            logits.scatter_(1, tgt[:, None], own_logit)
        if self.cfg.future > 0 and "future" in batch:
            return self._multi_positive_loss(logits, tgt, batch["future"][keep])
        loss = F.cross_entropy(logits, tgt)
        if self.cfg.cold_loss > 0 and self.content_mlp is not None:
            loss = loss + self.cfg.cold_loss * self._cold_target_loss(logits, h, tgt)
        return loss

    def _cold_target_loss(self, logits: Tensor, h: Tensor, tgt: Tensor) -> Tensor:
        """Cross-entropy with the target scored by its content vector only (its id vector dropped), the
        other items as they are. The content path learns to place a never-seen item where its warm
        twin would be, popularity included, without dropping ids from the inputs (which costs warm
        items); the main loss is unchanged. With ``cold_negatives`` every warm item's content vector
        alone competes too, which keeps content-only scores on the scale of the full ones."""
        assert self.content_mlp is not None
        content = self.content_mlp() * self.nonpad
        own = (h * content[tgt]).sum(dim=1, keepdim=True)
        mixed = logits.scatter(1, tgt[:, None], own)
        if self.cfg.cold_negatives:
            # [N, V] more columns: each warm item as if it were new; the target's own twin sits out.
            alone = (h @ content.T).masked_fill_(self.has_id.T * self.nonpad.T == 0, NEG)
            mixed = torch.cat([mixed, alone.scatter_(1, tgt[:, None], NEG)], dim=1)
        return F.cross_entropy(mixed, tgt)

    def _multi_positive_loss(self, logits: Tensor, tgt: Tensor, future: Tensor) -> Tensor:
        """Next item plus the user's next few items (``Windows.future``) as positives against one shared
        set of negatives: every other item, none of the positives. In a burst of ratings the order is
        close to arbitrary, so an item the user rates a minute later is not evidence against the next
        one; with ``future_weight`` > 0 each of them is also a target of its own."""
        own = logits.gather(1, tgt[:, None])[:, 0]
        extra = logits.gather(1, future)  # [N, K]
        # Padding, the next item itself and items already masked (seen, cold) are not extra positives.
        valid = (future != 0) & (future != tgt[:, None]) & (extra > NEG / 2)
        negatives = logits.scatter(1, tgt[:, None], NEG).scatter(1, torch.where(valid, future, 0), NEG)
        rest = torch.logsumexp(negatives, dim=1)
        loss = F.softplus(rest - own).mean()
        if self.cfg.future_weight > 0 and bool(valid.any()):
            extra_loss = F.softplus(rest[:, None] - extra)[valid]
            loss = loss + self.cfg.future_weight * extra_loss.mean()
        return loss

    def _sampled_loss(self, h: Tensor, tgt: Tensor, table: Tensor) -> Tensor:
        """Softmax over the target and ``negatives`` items drawn uniformly from the warm catalogue, shared
        by every step of the batch. A draw that is the step's own target is masked; the user's history
        is not (on a catalogue large enough to sample, a uniform draw almost never falls in it)."""
        draw = self.warm[torch.randint(int(self.warm.numel()), (self.cfg.negatives,), device=h.device)]
        own = (h * table[tgt]).sum(dim=1, keepdim=True)
        others = (h @ table[draw].T).masked_fill_(draw[None, :] == tgt[:, None], NEG)
        logits = torch.cat([own, others], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(tgt), dtype=torch.int64, device=h.device))

    @torch.no_grad()
    def fill_cold_ids(self, ridge: float = 1.0) -> int:
        """Id vectors for items without training data, predicted from content by ridge regression.

        Fitted on the items that have training data (content features -> learned id embedding), so a
        cold item gets the id vector its genres, era and title predict, on the scale of warm items.
        """
        if self.content_mlp is None:
            return 0
        warm = self.has_id[:, 0] > 0
        warm[0] = False
        cold = (self.has_id[:, 0] == 0) & (self.nonpad[:, 0] > 0)
        if not bool(cold.any()) or int(warm.sum()) < 2:
            return 0
        content = self.content_mlp.matrix().to_dense()
        x = torch.cat([content, torch.ones(content.shape[0], 1)], dim=1).double()
        y = self.id_emb.weight.double()
        xw = x[warm]
        solve = torch.linalg.solve(xw.T @ xw + ridge * torch.eye(x.shape[1], dtype=x.dtype), xw.T @ y[warm])
        self.id_emb.weight[cold] = (x[cold] @ solve).float()
        self.has_id[cold] = 1.0
        return int(cold.sum())

    def attach_cooc(self, cooc: ModelArrays, weight: float) -> None:
        """Fuse neighbour tables into ``scores``: + weight * log(eps + co-occurrence score), as the graph."""
        self.register_buffer("cooc_ids", torch.as_tensor(cooc.neighbour_ids, dtype=torch.int64))
        self.register_buffer("cooc_scores", torch.tensor(np.array(cooc.neighbour_scores)))
        self.register_buffer("cooc_prior", torch.tensor(np.array(cooc.popularity_prior)))
        self.register_buffer("cooc_positions", torch.tensor(np.array(cooc.position_weights))[None, :, None])
        self.cooc_weight = float(weight)
        self.cooc_arrays: ModelArrays | None = cooc

    def cooc_term(self, items: Tensor) -> Tensor | None:
        if not getattr(self, "cooc_weight", 0.0):
            return None
        batch = items.shape[0]
        base = self.cooc_prior.expand(batch, -1).clone()
        flat_ids = self.cooc_ids[items].reshape(batch, -1)
        positions = self.cooc_positions[:, -items.shape[1] :]  # right-aligned, as the window
        flat_scores = (self.cooc_scores[items] * positions).reshape(batch, -1)
        summed = base.scatter_add_(1, flat_ids, flat_scores)
        out: Tensor = self.cooc_weight * torch.log(summed + COOC_EPS)
        return out

    @torch.inference_mode()
    def scores(self, items: Tensor, ctx: dict[str, Tensor]) -> Tensor:
        """[B, V] scores of the next item after the last position (padding scored NEG)."""
        table = self.item_table()
        h = self.query(self.hidden(table, items, ctx)[:, -1], ctx)
        out = h @ table.T
        fused = self.cooc_term(items)
        if fused is not None:
            out = out + fused
        out[:, 0] = NEG
        return out


def window_batch(w: Windows) -> dict[str, Tensor]:
    return {name: torch.as_tensor(getattr(w, name)) for name in w.__dataclass_fields__}


def context_inputs(items: NDArray[np.int64], times: NDArray[np.int64], now: NDArray[np.int64]) -> dict[str, Tensor]:
    """Raw (items, timestamps, now) -> the tensors ``SASRec.scores`` takes; the graph does the same in ONNX."""
    from training.context import event_context, request_context

    hour, dow, gap = event_context(times)
    q_hour, q_dow, q_gap = request_context(times[:, -1], now)
    arrays = {"hour": hour, "dow": dow, "gap": gap, "q_hour": q_hour, "q_dow": q_dow, "q_gap": q_gap}
    return {"items": torch.as_tensor(items), **{k: torch.as_tensor(v) for k, v in arrays.items()}}


def rank_targets(
    model: SASRec, histories: list[UserSeq], now: list[int], targets: list[int], batch_size: int = 256
) -> NDArray[np.int64]:
    """1-based rank of each target among all items, every history item masked (the protocol)."""
    model.eval()
    ranks = np.zeros(len(targets), dtype=np.int64)
    # Similar lengths together, each batch cut to its longest window (the same scores, less padding).
    order = np.argsort([min(h.items.size, model.cfg.max_len) for h in histories], kind="stable")
    for start in range(0, len(targets), batch_size):
        rows = order[start : start + batch_size]
        chosen = [histories[r] for r in rows]
        length = max(1, max(min(h.items.size, model.cfg.max_len) for h in chosen))
        items, times, stamps = query_batch(chosen, [now[r] for r in rows], length)
        scores = model.scores(torch.as_tensor(items), context_inputs(items, times, stamps)).numpy()
        for row, history in enumerate(chosen):
            scores[row, history.items] = NEG
        tgt = np.asarray([targets[r] for r in rows])
        own = scores[np.arange(len(tgt)), tgt]
        ranks[rows] = (scores > own[:, None]).sum(axis=1) + 1
    return ranks


def rank_metrics(ranks: NDArray[np.int64]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in (5, 10, 20):
        hit = ranks <= k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float((hit / np.log2(ranks + 1)).mean())
    out["MRR"] = float((1.0 / ranks).mean())
    return out


def split_cases(split: TimedSplit, target: str, request: str = DECISION) -> tuple[list[UserSeq], list[int], list[int]]:
    """(histories, request times, targets): valid ranks from train; test from train + the valid item.

    The request time is ``sequences.request_time``: by default the newest history event's (decision time).
    """
    histories, now, targets = [], [], []
    for user in split.users:
        seq = split.train[user]
        v_item, v_ts = split.valid[user]
        if target == "valid":
            item, ts = v_item, v_ts
        else:
            item, ts = split.test[user]
            seq = UserSeq(np.r_[seq.items, v_item], np.r_[seq.times, v_ts])
        histories.append(seq)
        now.append(request_time(seq.times, ts, request))
        targets.append(item)
    return histories, now, targets


def evaluate_model(model: SASRec, split: TimedSplit, target: str, request: str = DECISION) -> dict[str, float]:
    return rank_metrics(rank_targets(model, *split_cases(split, target, request)))


def train(
    cfg: SasrecConfig,
    windows: Windows,
    vocab_size: int,
    content: NDArray[np.float32] | None,
    has_id: NDArray[np.bool_],
    validate: Callable[[SASRec], float] | None = None,
    log: Callable[[str], None] = print,
    on_check: Callable[[dict[str, float]], None] | None = None,
    time_budget_s: float | None = None,
    remake: Callable[[np.random.Generator], Windows] | None = None,
    stop_after: int | None = None,
) -> tuple[SASRec, dict[str, float]]:
    """AdamW on softmax cross-entropy; keeps the check with the best ``validate`` score.

    ``on_check`` gets every validation check as it happens (the trainer writes its report there).
    ``time_budget_s`` stops training when the next epoch would not fit in it (the best check is kept).
    ``remake`` (if given) cuts fresh windows for every epoch after the first (e.g. with ties reshuffled).
    ``stop_after`` ends training after that many epochs, the schedule still spanning ``cfg.epochs`` (a
    refit repeats a validated run's first epochs, learning rates included).
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = SASRec(cfg, vocab_size, content, has_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(windows) / cfg.batch_size)
    warmup, total_steps = cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not cfg.cosine:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    best_state, best, best_epoch, stale = copy.deepcopy(model.state_dict()), -math.inf, 0, 0
    began = time.perf_counter()
    train_seconds = 0.0
    epoch, stop = 0, ""
    for epoch in range(1, min(cfg.epochs, stop_after or cfg.epochs) + 1):
        model.train()
        if remake is not None and epoch > 1:
            windows = remake(rng)
        lengths = (windows.items != 0).sum(axis=1)
        if not cfg.bucket:
            lengths = np.zeros_like(lengths)  # one "length": plain random batches (still trimmed)
        total = 0.0
        epoch_began = time.perf_counter()
        for batch in length_batches(lengths, cfg.batch_size, rng):
            part = windows.take(batch).trimmed()
            if cfg.request == "sampled":
                part = part.with_request(sample_requests(part, rng))
            loss = model.loss(window_batch(part))
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(batch)
        train_seconds += time.perf_counter() - epoch_began
        elapsed = time.perf_counter() - began
        out_of_time = time_budget_s is not None and elapsed + elapsed / epoch > time_budget_s
        last = epoch == min(cfg.epochs, stop_after or cfg.epochs) or out_of_time
        if validate is None or (epoch % cfg.eval_every and not last):
            if out_of_time:
                stop = "time budget"
                break
            continue
        value = validate(model)
        if value > best:
            best_state, best, best_epoch, stale = copy.deepcopy(model.state_dict()), value, epoch, 0
        else:
            stale += 1
        elapsed = time.perf_counter() - began
        log(f"epoch {epoch:>3} loss {total / len(windows):.4f} valid {value:.4f} ({elapsed:.0f}s)")
        if on_check is not None:
            on_check(
                {
                    "epoch": float(epoch),
                    "loss": total / len(windows),
                    "valid": value,
                    "best_epoch": float(best_epoch),
                    "best_valid": best,
                    "seconds": elapsed,
                    "train_seconds": train_seconds,
                }
            )
        if out_of_time:
            stop = "time budget"
            break
        if stale >= cfg.patience:
            stop = "patience"
            break
    if validate is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epoch
    model.eval()
    info = {
        "best_epoch": float(best_epoch),
        "best_valid": best,
        "epochs": float(epoch),
        "train_seconds": time.perf_counter() - began,
        "seconds_per_epoch": train_seconds / max(epoch, 1),
        "stopped_by_time_budget": float(stop == "time budget"),
    }
    return model, info


def to_weights(model: SASRec) -> SasrecWeights:
    """The trained model as plain arrays: fused item table, positions, context tables, blocks."""
    model.eval()
    with torch.inference_mode():

        def a(t: Tensor) -> NDArray[np.float32]:
            return np.ascontiguousarray(t.detach().numpy().astype(np.float32))

        blocks = [
            BlockWeights(
                ln1_g=a(b.ln1.weight),
                ln1_b=a(b.ln1.bias),
                w_qkv=a(b.qkv.weight.T),
                b_qkv=a(b.qkv.bias),
                w_o=a(b.out.weight.T),
                b_o=a(b.out.bias),
                ln2_g=a(b.ln2.weight),
                ln2_b=a(b.ln2.bias),
                w_1=a(b.ff1.weight.T),
                b_1=a(b.ff1.bias),
                w_2=a(b.ff2.weight.T),
                b_2=a(b.ff2.bias),
            )
            for b in model.block_list()
        ]
        ctx = {name: a(emb.weight) for name, emb in model.ctx_tables().items()}
        if not model.cfg.query_context:  # the graph still adds them: as zeros, the request time changes nothing
            ctx = {name: np.zeros_like(table) if name.startswith("q_") else table for name, table in ctx.items()}
        plain = SasrecWeights(
            item_table=a(model.item_table()),
            positions=a(model.pos),
            context=ctx,
            blocks=blocks,
            ln_f_g=a(model.ln_f.weight),
            ln_f_b=a(model.ln_f.bias),
            heads=model.cfg.heads,
        )
        # The fused co-occurrence term (``attach_cooc``) is part of the model: it ships with it.
        return plain.with_cooc(model.cooc_arrays, model.cooc_weight)


def config_dict(cfg: SasrecConfig) -> dict[str, float | str]:
    return {f"cfg_{k}": v if isinstance(v, str) else float(v) for k, v in asdict(cfg).items()}


def from_weights(w: SasrecWeights, dropout: float = 0.0) -> SASRec:
    """A torch model computing exactly ``w`` (the fused item table becomes a plain id table)."""
    cfg = SasrecConfig(
        max_len=w.max_len,
        dim=w.dim,
        blocks=len(w.blocks),
        heads=w.heads,
        ffn_mult=w.blocks[0].w_1.shape[1] // w.dim,
        dropout=dropout,
        content=False,
        context=w.has_context,
        id_dropout=0.0,
    )
    model = SASRec(cfg, w.vocab_size, None, np.ones(w.vocab_size, dtype=bool))

    def t(a: NDArray[np.float32]) -> Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32, copy=True))

    with torch.no_grad():
        model.id_emb.weight.copy_(t(w.item_table))
        model.pos.copy_(t(w.positions))
        for name, emb in model.ctx_tables().items():
            emb.weight.copy_(t(w.context[name]))
        for block, bw in zip(model.block_list(), w.blocks, strict=True):
            layers: tuple[tuple[nn.Linear | nn.LayerNorm, NDArray[np.float32], NDArray[np.float32]], ...] = (
                (block.ln1, bw.ln1_g, bw.ln1_b),
                (block.ln2, bw.ln2_g, bw.ln2_b),
                (block.qkv, bw.w_qkv.T, bw.b_qkv),
                (block.out, bw.w_o.T, bw.b_o),
                (block.ff1, bw.w_1.T, bw.b_1),
                (block.ff2, bw.w_2.T, bw.b_2),
            )
            for mod, weight, bias in layers:
                mod.weight.copy_(t(weight))
                mod.bias.copy_(t(bias))
        model.ln_f.weight.copy_(t(w.ln_f_g))
        model.ln_f.bias.copy_(t(w.ln_f_b))
    if w.has_cooc:
        assert w.cooc is not None
        model.attach_cooc(w.cooc, w.cooc_weight)
    return model.eval()
