"""Pretrain an ELMo biLM (forward + backward LSTM language models over a character CNN).

Design choices, and why:
  * **Adaptive softmax** (``nn.AdaptiveLogSoftmaxWithLoss``), one shared by both directions as in
    bilm-tf. It is an exact, normalised distribution, so heldout perplexity is the true one (a
    sampled softmax trains a biased objective and needs the full softmax to evaluate), and most
    tokens only touch the small head cluster, which is what makes a CPU run affordable.
  * **Sentence batches** with zero initial state instead of bilm-tf's truncated BPTT with carried
    state: our backbone's default (and deterministic) inference mode starts every sentence from
    zero, so training does the same; every sentence is ``<S> w1 .. wn </S>``.
  * Gradient-norm clipping (10.0, bilm-tf's value); Adam instead of bilm-tf's Adagrad(0.2),
    because it converges faster in the short budgets this command is meant for.
  * Checkpoints are written atomically every ``checkpoint_every`` steps with the optimizer, all
    RNG states and the exact corpus position, so a ``kill -9`` loses at most that much work and
    the resumed run continues exactly where it was.
"""
from __future__ import annotations

import csv
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from tqdm import tqdm

from .bilm import ElmoBiLm, add_sentence_boundaries
from .char_ids import batch_to_ids
from .checkpoint import python_rng_state
from .corpus import batches_of, check_corpus, iter_sentences
from .errors import ElmoFileError
from .io import atomic_torch_save, atomic_write_json
from .options import ElmoOptions, options_from_dict
from .progress import bar_disabled
from .vocab import Vocabulary
from .weights import save_weights


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (a YAML file maps onto it)."""

    model: dict  # options.json content (char_cnn + lstm)
    min_count: int = 3
    max_vocab: int = 50_000
    vocab_sample_sentences: int = 300_000  # the vocabulary is counted on this prefix of the corpus
    cutoffs: list[int] = field(default_factory=lambda: [2_000, 10_000])
    dropout: float = 0.1
    lr: float = 1e-3
    clip_norm: float = 10.0
    batch_tokens: int = 2_000
    buffer_sentences: int = 20_000
    max_sentence_tokens: int = 60
    max_tokens_seen: int = 5_000_000
    max_minutes: float | None = None
    eval_every: int = 500
    heldout_sentences: int = 1_000
    checkpoint_every: int = 200
    threads: int = 2
    seed: int = 13

    def fingerprint(self) -> dict:
        """What must match for a checkpoint to be resumable (the budget may change)."""
        keep = {k: v for k, v in asdict(self).items() if k not in ("max_tokens_seen", "max_minutes", "threads",
                                                                   "eval_every", "checkpoint_every")}
        return json.loads(json.dumps(keep))


def load_pretrain_config(path: str | Path, overrides: dict | None = None) -> PretrainConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ElmoFileError(f"{path}: config file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise ElmoFileError(f"{path}: not a valid YAML file ({err})") from None
    if not isinstance(tree, dict):
        raise ElmoFileError(f"{path}: the config must be a YAML mapping of keys to values")
    tree.update(overrides or {})
    known = set(PretrainConfig.__dataclass_fields__)
    unknown = sorted(set(tree) - known)
    if unknown:
        raise ElmoFileError(f"{path}: unknown config keys {unknown}; known: {sorted(known)}")
    if "model" not in tree:
        raise ElmoFileError(f"{path}: config needs a 'model' section (options.json content)")
    config = PretrainConfig(**tree)
    options_from_dict(config.model, f"{path}: model")  # validate early
    return config


class BiLmLanguageModel(nn.Module):
    """The biLM plus a shared adaptive softmax over the word vocabulary.

    ``forward(char_ids (batch, time, chars), word_ids (batch, time + 2))`` returns the summed
    negative log-likelihood of the forward and backward directions and their target counts.
    ``word_ids`` hold ``<S>`` at 0, the words, ``</S>`` after them, and -1 as padding.
    """

    def __init__(self, options: ElmoOptions, vocab_size: int, cutoffs: list[int], dropout: float):
        super().__init__()
        self.bilm = ElmoBiLm(options, type_cache_size=0)
        # A vocabulary smaller than the configured clusters (tiny corpora) keeps one small tail.
        cutoffs = [c for c in cutoffs if c < vocab_size - 1] or [max(1, vocab_size // 2)]
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(options.lstm.projection_dim, vocab_size, cutoffs, div_value=4.0)
        self.dropout = nn.Dropout(dropout)

    def top_layer(self, char_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top LSTM layer *with* the boundary positions: ``(batch, time + 2, 2 * proj)``."""
        lengths = (char_ids[:, :, 0] > 0).sum(dim=1)
        with_bounds = add_sentence_boundaries(char_ids, lengths, self.bilm.options.char_cnn.max_chars)
        tokens = self.bilm.token_embeddings(with_bounds)
        return self.bilm.run_lstms(tokens, lengths + 2)[-1], lengths

    def forward(self, char_ids: torch.Tensor, word_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        top, _ = self.top_layer(char_ids)
        top = self.dropout(top)
        proj = self.bilm.options.lstm.projection_dim
        # Forward LM: position p predicts word p + 1; backward LM: position p predicts word p - 1.
        valid = word_ids[:, 1:] >= 0
        fwd_hidden, fwd_target = top[:, :-1, :proj][valid], word_ids[:, 1:][valid]
        bwd_hidden, bwd_target = top[:, 1:, proj:][valid], word_ids[:, :-1][valid]
        fwd_nll = -self.softmax(fwd_hidden, fwd_target).output.sum()
        bwd_nll = -self.softmax(bwd_hidden, bwd_target).output.sum()
        return {"forward_nll": fwd_nll, "backward_nll": bwd_nll, "targets": valid.sum()}


def word_id_batch(sentences: list[list[str]], vocab: Vocabulary) -> torch.Tensor:
    """``(batch, longest + 2)``: ``<S>`` ids, words, ``</S>``, then -1 padding."""
    longest = max(len(s) for s in sentences)
    ids = torch.full((len(sentences), longest + 2), -1, dtype=torch.long)
    for row, sentence in enumerate(sentences):
        ids[row, 0] = vocab.bos
        ids[row, 1 : len(sentence) + 1] = torch.tensor([vocab.id(w) for w in sentence])
        ids[row, len(sentence) + 1] = vocab.eos
    return ids


def evaluate_perplexity(model: BiLmLanguageModel, sentences: list[list[str]], vocab: Vocabulary,
                        batch_tokens: int) -> dict[str, float]:
    """Heldout perplexity per direction and their mean (exp of the mean NLL per target)."""
    was_training = model.training
    model.eval()
    totals = {"forward_nll": 0.0, "backward_nll": 0.0, "targets": 0}
    with torch.no_grad():
        for batch in batches_of(list(sentences), batch_tokens, random.Random(0)):
            out = model(batch_to_ids(batch, model.bilm.options.char_cnn.max_chars), word_id_batch(batch, vocab))
            for key in totals:
                totals[key] += float(out[key])
    model.train(was_training)
    fwd = math.exp(totals["forward_nll"] / totals["targets"])
    bwd = math.exp(totals["backward_nll"] / totals["targets"])
    return {"forward_ppl": fwd, "backward_ppl": bwd, "mean_ppl": (fwd + bwd) / 2}


@dataclass
class Position:
    """Where training is in the corpus: the first line of the current buffer, how many of its
    batches are done, the buffer's shuffling RNG state, and counters."""

    epoch: int = 0
    buffer_start_line: int = 0
    batches_done_in_buffer: int = 0
    buffer_rng_state: tuple | None = None
    step: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0


def export_model(model: BiLmLanguageModel, out_dir: Path) -> tuple[Path, Path]:
    """``options.json`` + ``weights.hdf5`` in the official layout, loadable by :func:`load_bilm`."""
    options_path, weights_path = out_dir / "options.json", out_dir / "weights.hdf5"
    save_weights(model.bilm, weights_path)  # atomic: PATH.part then rename
    atomic_write_json(options_path, model.bilm.options.to_json_dict())
    return options_path, weights_path


class Pretrainer:
    """Runs (or resumes) a pretraining run in ``out_dir``."""

    def __init__(self, config: PretrainConfig, train_path: Path, heldout_path: Path, out_dir: Path,
                 progress: bool = True):
        self.config, self.train_path, self.heldout_path = config, Path(train_path), Path(heldout_path)
        self.out_dir, self.progress = Path(out_dir), progress
        self.checkpoint_path = self.out_dir / "checkpoint.pt"

    # -- set-up ---------------------------------------------------------------------------
    def _prepare_vocab(self) -> Vocabulary:
        path = self.out_dir / "vocab.txt"
        if path.is_file():
            return Vocabulary.load(path)
        cfg = self.config
        sample = (tokens for n, (_, tokens) in zip(range(cfg.vocab_sample_sentences),
                                                   iter_sentences(self.train_path, cfg.max_sentence_tokens)))
        vocab = Vocabulary.build(sample, cfg.min_count, cfg.max_vocab)
        vocab.save(path)
        return vocab

    def _check_resumable(self) -> dict | None:
        if not self.checkpoint_path.is_file():
            return None
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        if state["config"] != self.config.fingerprint():
            differing = sorted(k for k in set(state["config"]) | set(self.config.fingerprint())
                               if state["config"].get(k) != self.config.fingerprint().get(k))
            raise ElmoFileError(f"{self.checkpoint_path}: checkpoint was made with a different config "
                                f"(differs in: {', '.join(differing)}); use another --out directory. Nothing was overwritten.")
        return state

    def _load_model_state(self, model: nn.Module, state: dict) -> None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
            raise ElmoFileError(f"{self.checkpoint_path}: the checkpoint does not fit this model (written by another "
                                f"version of elmo-tasks or another vocabulary): {first[:300]}") from None

    def _heldout(self) -> list[list[str]]:
        cfg = self.config
        return [t for _, (_, t) in zip(range(cfg.heldout_sentences), iter_sentences(self.heldout_path, cfg.max_sentence_tokens))]

    def evaluate_full_heldout(self) -> dict:
        """Perplexity of the checkpoint on every heldout sentence (of at most max_sentence_tokens)."""
        state = self._check_resumable()
        if state is None:
            raise ElmoFileError(f"{self.checkpoint_path}: no checkpoint to evaluate")
        torch.set_num_threads(self.config.threads)
        vocab = Vocabulary.load(self.out_dir / "vocab.txt")
        model = BiLmLanguageModel(options_from_dict(self.config.model), len(vocab), self.config.cutoffs, self.config.dropout)
        self._load_model_state(model, state)
        stats: dict = {}
        sentences = [t for _, t in iter_sentences(self.heldout_path, self.config.max_sentence_tokens, stats=stats)]
        result = evaluate_perplexity(model, sentences, vocab, self.config.batch_tokens)
        return {**result, "sentences": len(sentences), "tokens": sum(len(s) for s in sentences),
                "skipped_too_long": stats.get("too_long", 0)}

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        check_corpus(self.train_path, cfg.max_sentence_tokens)
        check_corpus(self.heldout_path, cfg.max_sentence_tokens)
        state = self._check_resumable()  # before touching anything in out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        vocab = self._prepare_vocab()
        options = options_from_dict(cfg.model)
        torch.manual_seed(cfg.seed)
        model = BiLmLanguageModel(options, len(vocab), cfg.cutoffs, cfg.dropout)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        position = Position(buffer_rng_state=random.Random(cfg.seed).getstate())
        if state is not None:
            self._load_model_state(model, state)
            optimizer.load_state_dict(state["optimizer"])
            position = Position(**state["position"])
            torch.set_rng_state(state["torch_rng"])
        atomic_write_json(self.out_dir / "config.json", asdict(cfg))
        heldout = self._heldout()
        log_path = self.out_dir / "log.csv"
        new_log = not log_path.is_file()
        log = log_path.open("a", newline="")
        writer = csv.writer(log)
        if new_log:
            writer.writerow(["step", "tokens_seen", "seconds", "train_loss", "tokens_per_s",
                             "forward_ppl", "backward_ppl", "mean_ppl"])
        model.train()
        bar = tqdm(total=cfg.max_tokens_seen, initial=position.tokens_seen, unit="tok", unit_scale=True,
                   disable=bar_disabled(self.progress), desc="pretraining")
        started = time.perf_counter() - position.seconds
        window_loss, window_targets, window_start, window_tokens = 0.0, 0, time.perf_counter(), 0
        result: dict = {}
        try:
            for batch in self._batches(position):
                char_ids = batch_to_ids(batch, options.char_cnn.max_chars)
                out = model(char_ids, word_id_batch(batch, vocab))
                loss = (out["forward_nll"] + out["backward_nll"]) / (2 * out["targets"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
                optimizer.step()
                n_tokens = sum(len(s) for s in batch)
                position.step += 1
                position.tokens_seen += n_tokens
                position.batches_done_in_buffer += 1
                position.seconds = time.perf_counter() - started
                window_loss += float(loss.detach()) * int(out["targets"])
                window_targets += int(out["targets"])
                window_tokens += n_tokens
                bar.update(n_tokens)
                done = position.tokens_seen >= cfg.max_tokens_seen or (
                    cfg.max_minutes is not None and position.seconds >= 60 * cfg.max_minutes)
                if position.step % cfg.eval_every == 0 or done:
                    ppl = evaluate_perplexity(model, heldout, vocab, cfg.batch_tokens)
                    speed = window_tokens / max(time.perf_counter() - window_start, 1e-9)
                    writer.writerow([position.step, position.tokens_seen, round(position.seconds, 1),
                                     round(window_loss / max(window_targets, 1), 4), round(speed, 1),
                                     round(ppl["forward_ppl"], 2), round(ppl["backward_ppl"], 2), round(ppl["mean_ppl"], 2)])
                    log.flush()
                    bar.set_postfix(ppl=f"{ppl['mean_ppl']:.1f}", tok_s=f"{speed:.0f}")
                    window_loss, window_targets, window_start, window_tokens = 0.0, 0, time.perf_counter(), 0
                    result = {**ppl, "tokens_seen": position.tokens_seen, "seconds": position.seconds,
                              "step": position.step}
                if position.step % cfg.checkpoint_every == 0 or done:
                    self._save_checkpoint(model, optimizer, position)
                if done:
                    break
        finally:
            bar.close()
            log.close()
        export_model(model, self.out_dir)
        atomic_write_json(self.out_dir / "result.json", result)
        return result

    def _batches(self, position: Position) -> Iterator[list[list[str]]]:
        """Batches from the saved position on, forever (epochs wrap); ``position`` is updated in
        place at buffer boundaries so a checkpoint always names a reproducible place."""
        cfg = self.config
        while True:
            stream = iter_sentences(self.train_path, cfg.max_sentence_tokens, skip=position.buffer_start_line)
            while True:
                buffer, last_line = [], None
                for line, tokens in stream:
                    buffer.append(tokens)
                    last_line = line
                    if len(buffer) >= cfg.buffer_sentences:
                        break
                if not buffer:
                    break
                rng = random.Random()
                rng.setstate(python_rng_state(position.buffer_rng_state))
                batches = batches_of(buffer, cfg.batch_tokens, rng)
                for batch in batches[position.batches_done_in_buffer:]:
                    yield batch
                position.buffer_start_line = last_line + 1
                position.batches_done_in_buffer = 0
                position.buffer_rng_state = rng.getstate()
            position.epoch += 1
            position.buffer_start_line = 0

    def _save_checkpoint(self, model, optimizer, position: Position) -> None:
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "position": asdict(position), "torch_rng": torch.get_rng_state(),
                           "config": self.config.fingerprint()}, self.checkpoint_path)
