"""WSD scoring as done by the unified framework's ``Scorer.java`` (Raganato et al., 2017).

For every instance the system answers (and the gold file knows), each system key scores
``1 / number of distinct system keys`` if it is one of the gold keys; so one right key out
of two answers earns 0.5. Then

* precision = correct / answered instances,
* recall    = correct / all gold instances,
* F1        = harmonic mean (0 when both are 0).

Answers for ids missing from the gold are skipped, as Scorer.java does. Scores per dataset
(the ``senseval2.`` ... prefixes of ``ALL``) and per POS restrict the gold to that group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from data.errors import DataFormatError
from data.warnings import Finding
from data.wordnet import WordNet
from data.wsd import WsdCorpus

SystemAnswers = Mapping[str, "str | Iterable[str]"]


@dataclass(frozen=True)
class WsdScore:
    correct: float
    answered: int
    total: int

    @property
    def precision(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class WsdReport:
    overall: WsdScore
    by_dataset: dict[str, WsdScore] = field(default_factory=dict)
    by_pos: dict[str, WsdScore] = field(default_factory=dict)

    def to_markdown(self) -> str:
        """Precision / recall / F1 in percent, one row per dataset, POS and overall."""
        rows = ["| group | P | R | F1 | answered | total |", "|---|---|---|---|---|---|"]
        groups = [*self.by_dataset.items(), *self.by_pos.items(), ("overall", self.overall)]
        for name, score in groups:
            rows.append(
                f"| {name} | {100 * score.precision:.1f} | {100 * score.recall:.1f} | "
                f"{100 * score.f1:.1f} | {score.answered} | {score.total} |"
            )
        return "\n".join(rows)


def _as_key_set(answer: str | Iterable[str]) -> set[str]:
    # Scorer.java stores answers in a HashSet, so a repeated key counts once.
    return {answer} if isinstance(answer, str) else set(answer)


def score(gold: Mapping[str, Iterable[str]], system: SystemAnswers) -> WsdScore:
    """Scorer.java's measures of ``system`` against ``gold`` (``{instance_id: keys}`` both)."""
    correct = 0.0
    answered = 0
    for instance_id, answer in system.items():
        if instance_id not in gold:
            continue
        keys = _as_key_set(answer)
        if not keys:
            continue  # an empty answer is no answer
        gold_keys = set(gold[instance_id])
        correct += sum(key in gold_keys for key in keys) / len(keys)
        answered += 1
    return WsdScore(correct=correct, answered=answered, total=len(gold))


def _gold_groups(corpus: WsdCorpus, group_of) -> dict[str, dict[str, list[str]]]:
    groups: dict[str, dict[str, list[str]]] = {}
    for instance in corpus.instances():
        group = groups.setdefault(group_of(instance), {})
        group[instance.instance_id] = corpus.gold[instance.instance_id]
    return groups


def score_by_dataset(corpus: WsdCorpus, system: SystemAnswers) -> dict[str, WsdScore]:
    groups = _gold_groups(corpus, lambda instance: corpus.dataset_of(instance.instance_id))
    return {name: score(gold, system) for name, gold in groups.items()}


def score_by_pos(corpus: WsdCorpus, system: SystemAnswers) -> dict[str, WsdScore]:
    groups = _gold_groups(corpus, lambda instance: instance.pos)
    return {pos: score(gold, system) for pos, gold in sorted(groups.items())}


def invalid_gold_keys(corpus: WsdCorpus, wordnet: WordNet) -> Finding:
    """Every gold key that is not a WordNet 3.0 sense key, as one counted warning
    (:mod:`data.warnings`) naming the key file's lines. A key from another WordNet version would
    silently count every answer as wrong (and, in training, teach a sense WordNet does not have)."""
    finding = Finding(
        "not-a-wordnet-sense",
        str(corpus.key_path or corpus.xml_path),
        "gold key that is not a WordNet 3.0 sense key",
        "gold keys that are not WordNet 3.0 sense keys",
        hint="they are left out of the sense inventory and no answer can match them",
    )
    for instance_id, keys in corpus.gold.items():
        for key in keys:
            if not wordnet.is_sense_key(key):
                finding.add(corpus.gold_lines.get(instance_id), f"{key!r} of instance {instance_id}")
    return finding


def check_gold_keys(corpus: WsdCorpus, wordnet: WordNet) -> None:
    """Raise ``DataFormatError`` at the first gold key that is not a WordNet 3.0 sense key."""
    finding = invalid_gold_keys(corpus, wordnet)
    if finding:
        line, _ = finding.examples[0]
        raise DataFormatError(finding.path, line, f"{finding.what}: {finding.examples[0][1]} ({finding.tally()})")


def evaluate(corpus: WsdCorpus, system: SystemAnswers, wordnet: WordNet | None = None) -> WsdReport:
    """Overall, per-dataset and per-POS scores; with ``wordnet``, gold keys are checked first."""
    if not corpus.gold:
        raise ValueError(f"{corpus.xml_path}: corpus was read without a gold key file")
    if wordnet is not None:
        check_gold_keys(corpus, wordnet)
    return WsdReport(
        overall=score(corpus.gold, system),
        by_dataset=score_by_dataset(corpus, system),
        by_pos=score_by_pos(corpus, system),
    )


def first_sense_baseline(corpus: WsdCorpus, wordnet: WordNet) -> dict[str, str]:
    """WordNet's first sense of each instance's lemma and POS; lemmas unknown to WordNet get no answer."""
    answers: dict[str, str] = {}
    for instance in corpus.instances():
        sense = wordnet.first_sense(instance.lemma, instance.pos)
        if sense is not None:
            answers[instance.instance_id] = sense
    return answers


def write_answers(path: str | Path, answers: SystemAnswers) -> None:
    """Write answers in the key-file format Scorer.java reads (``id key [key ...]``)."""
    from elmo_core.io import atomic_write_text

    lines = [
        " ".join([instance_id, *([answer] if isinstance(answer, str) else list(answer))]) + "\n"
        for instance_id, answer in answers.items()
    ]
    atomic_write_text(Path(path), "".join(lines))
