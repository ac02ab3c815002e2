"""Write the corpus the default backbone was pretrained on (a derived file: never commit it).

A seeded mix of the first N sentences of ../shared/data/corpus/train.txt.xz and K copies of the
*unlabelled* token text of CoNLL-2003 eng.train (no tags, no dev/test text), shuffled at the
sentence level. The pretraining issue allows adding CoNLL-2003's unlabelled training text; the
model card says so.

    python benchmarks/build_pretraining_mix.py --out runs/pretraining_mix.txt

The stronger backbone (configs/bilm_strong.yaml) trains on the whole corpus, with the default's
vocabulary so that perplexities compare (the vocabulary is counted on the default's mix):

    python benchmarks/build_pretraining_mix.py --out runs/pretraining_mix.txt --write-vocab runs/default_vocab.txt
    python benchmarks/build_pretraining_mix.py --corpus-sentences 1448688 --conll-copies 10 --out runs/pretraining_mix_full.txt
"""

from __future__ import annotations

import argparse
import lzma
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def conll_sentences(path: Path) -> list[str]:
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if current:
                sentences.append(" ".join(current))
                current = []
            continue
        current.append(line.split()[0])
    if current:
        sentences.append(" ".join(current))
    return sentences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--corpus-sentences", type=int, default=250_000)
    parser.add_argument("--conll-copies", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--write-vocab",
        type=Path,
        metavar="FILE",
        help="also write the vocabulary configs/bilm_default.yaml counts on the mix (bilm-tf's format)",
    )
    args = parser.parse_args()
    with lzma.open(args.data / "corpus" / "train.txt.xz", "rt", encoding="utf-8") as handle:
        corpus = [line.rstrip("\n") for _, line in zip(range(args.corpus_sentences), handle)]
    conll = conll_sentences(args.data / "conll2003" / "eng.train")
    lines = corpus + conll * args.conll_copies
    random.Random(args.seed).shuffle(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokens = sum(len(line.split()) for line in lines)
    conll_tokens = sum(len(line.split()) for line in conll) * args.conll_copies
    print(
        f"{args.out}: {len(lines):,} sentences, {tokens:,} tokens; corpus prefix {len(corpus):,} sentences, "
        f"CoNLL-2003 eng.train text x{args.conll_copies} = {conll_tokens:,} tokens ({100 * conll_tokens / tokens:.1f} %)"
    )
    if args.write_vocab:
        write_default_vocab(args.out, args.write_vocab)
    return 0


def write_default_vocab(corpus: Path, path: Path) -> None:
    """The vocabulary a ``bilm_default.yaml`` run counts on ``corpus`` (same prefix, limits and order)."""
    from elmo_core.corpus import iter_sentences
    from elmo_core.pretrain import count_vocabulary, load_pretrain_config

    cfg = load_pretrain_config(REPO / "configs" / "bilm_default.yaml")
    vocab = count_vocabulary(cfg, (tokens for _, tokens in iter_sentences(corpus, cfg.max_sentence_tokens)))
    vocab.save(path)
    print(f"{path}: {len(vocab):,} words counted on the first {cfg.vocab_sample_sentences:,} sentences of {corpus}")


if __name__ == "__main__":
    sys.exit(main())
