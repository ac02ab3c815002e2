"""Named ELMo models: the official AllenNLP releases (downloaded once into a cache) and the
``default`` backbone that ships inside this package.

The official files have no published checksums, so integrity is checked in three ways: the byte
count must match the server's Content-Length, the files must parse (options validate, every HDF5
dataset has the shape the options imply), and the SHA-256 recorded at download time is verified
whenever the cached copy is used again.

This module only turns names into local files; building a model from them is
:mod:`elmo_core.loading`'s job (the dependency goes one way: loading imports models).
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import ElmoFileError, ModelNotAvailableError
from .io import atomic_path, atomic_write_text, cache_dir, file_sha256
from .weights import check_model_files

_BASE = "https://s3-us-west-2.amazonaws.com/allennlp/models/elmo"
PACKAGED_DIR = Path(__file__).resolve().parent / "pretrained"
# Every release of a shipped model, oldest first, by content: the label a run's logs and results
# carry ("default@v2") and what an old run's recorded hash is recognised as. Written by
# benchmarks/ship_default_backbone.py; a fixed path, not under PACKAGED_DIR, so it stays the one
# record whichever files are shipped.
VERSIONS_FILE = Path(__file__).resolve().parent / "pretrained" / "versions.json"
VERSION_SEPARATOR = "@"


@dataclass(frozen=True)
class NamedModel:
    name: str
    options_url: str
    weights_url: str
    description: str


def _official(name: str, stem: str, description: str) -> NamedModel:
    return NamedModel(
        name, f"{_BASE}/{stem}/elmo_{stem}_options.json", f"{_BASE}/{stem}/elmo_{stem}_weights.hdf5", description
    )


OFFICIAL_MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        _official("small", "2x1024_128_2048cnn_1xhighway", "13.6M parameters, output dim 256"),
        _official("medium", "2x2048_256_2048cnn_1xhighway", "28.0M parameters, output dim 512"),
        _official("original", "2x4096_512_2048cnn_2xhighway", "93.6M parameters, output dim 1024"),
        _official(
            "original-5.5b",
            "2x4096_512_2048cnn_2xhighway_5.5B",
            "93.6M parameters trained on 5.5B tokens, output dim 1024",
        ),
    )
}


def packaged_model_files(name: str) -> tuple[Path, Path] | None:
    """(options, weights) of a model shipped inside the package, or None."""
    folder = PACKAGED_DIR / name
    options, weights = folder / "options.json", folder / "weights.hdf5"
    return (options, weights) if options.is_file() and weights.is_file() else None


def shipped_versions() -> dict[str, list[dict]]:
    """``{name: [{"version", "options_sha256", "weights_sha256", "card"}, ...]}``, oldest first."""
    if not VERSIONS_FILE.is_file():
        return {}
    return json.loads(VERSIONS_FILE.read_text())


def find_release(name: str, key: str, value: str) -> dict | None:
    """The recorded release of ``name`` whose ``key`` (``version``, ``weights_sha256``) is ``value``."""
    return next((r for r in shipped_versions().get(name, []) if r[key] == value), None)


def version_of(name: str, weights_sha256: str) -> str | None:
    """The release label (``"v2"``) of the shipped model ``name`` whose weights have this SHA-256,
    or None when no release had them (files a user put there, or not a shipped model)."""
    release = find_release(name, "weights_sha256", weights_sha256)
    return release["version"] if release else None


def release_label(name: str, weights_sha256: str) -> str:
    """``default@v2`` for the weights of a recorded release of ``name``, else ``name``."""
    base = split_version(name)[0]
    version = version_of(base, weights_sha256)
    return f"{base}{VERSION_SEPARATOR}{version}" if version else name


_SHIPPED_VERSION_MEMO: dict[tuple, str | None] = {}


def shipped_version(name: str) -> str | None:
    """The release label of the files shipped now as ``name`` (hashed once per file state)."""
    files = packaged_model_files(name)
    if files is None:
        return None
    stat = files[1].stat()
    memo = (str(files[1]), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if memo not in _SHIPPED_VERSION_MEMO:
        _SHIPPED_VERSION_MEMO[memo] = version_of(name, file_sha256(files[1]))
    return _SHIPPED_VERSION_MEMO[memo]


def labelled_name(name: str) -> str:
    """``name`` with the shipped release it resolves to now (``default`` -> ``default@v2``); an
    official model's, an explicit label's or an unversioned name is returned as given."""
    if VERSION_SEPARATOR in name:
        return name
    version = shipped_version(name)
    return f"{name}{VERSION_SEPARATOR}{version}" if version else name


def split_version(name: str) -> tuple[str, str | None]:
    """``"default@v1"`` -> ``("default", "v1")``; ``"default"`` -> ``("default", None)``."""
    base, sep, version = name.partition(VERSION_SEPARATOR)
    return base, (version if sep else None)


def _check_requested_version(base: str, version: str) -> None:
    known = [release["version"] for release in shipped_versions().get(base, [])]
    if version not in known:
        listing = ", ".join(f"{base}@{v}" for v in known) or f"none ('{base}' has no recorded releases)"
        raise ModelNotAvailableError(f"unknown release '{base}@{version}'; releases of '{base}': {listing}")
    shipped = shipped_version(base)
    if shipped != version:
        card = find_release(base, "version", version).get("card")
        now = f"{base}@{shipped}" if shipped else f"unversioned files as '{base}'"
        raise ModelNotAvailableError(
            f"'{base}@{version}' is not shipped in this installation (it ships {now}); "
            f"pass that release's files as --options/--weights"
            + (f" (its model card: {card})" if card else "")
            + f", or use '{base}' for the shipped one"
        )


def is_model_name(spec: str) -> bool:
    """Whether ``spec`` names a model (``default``, ``default@v2``, ``original``...)."""
    return split_version(spec)[0] in available_names()


def available_names() -> list[str]:
    shipped = sorted(p.name for p in PACKAGED_DIR.iterdir() if p.is_dir()) if PACKAGED_DIR.is_dir() else []
    return shipped + list(OFFICIAL_MODELS)


def download(url: str, target: Path, timeout: float = 30.0) -> None:
    """Fetch ``url`` into ``target`` atomically (``.part`` then rename), checking the byte count."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as partial:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            expected = response.headers.get("Content-Length")
            shutil.copyfileobj(response, out, length=1 << 20)
        received = partial.stat().st_size
        if expected is not None and int(expected) != received:
            raise ElmoFileError(f"{url}: download incomplete ({received} of {expected} bytes)")


def _verify_cached(folder: Path) -> bool:
    record = folder / "sha256.json"
    if not record.is_file():
        return False
    sums = json.loads(record.read_text())
    return all((folder / name).is_file() and file_sha256(folder / name) == digest for name, digest in sums.items())


def fetch_official(name: str, folder: Path | None = None) -> tuple[Path, Path]:
    """Local (options, weights) of an official model, downloading it on first use.

    Raises:
        ModelNotAvailableError: offline or the server refused; the message names the URLs and how
            to pass local files instead.
    """
    model = OFFICIAL_MODELS[name]
    folder = folder or cache_dir() / name
    options, weights = folder / "options.json", folder / "weights.hdf5"
    if _verify_cached(folder):
        return options, weights
    try:
        download(model.options_url, options)
        download(model.weights_url, weights)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise ModelNotAvailableError(
            f"cannot download ELMo model '{name}' ({err}).\n"
            f"  options: {model.options_url}\n  weights: {model.weights_url}\n"
            f"Download both files elsewhere and pass them with --options FILE --weights FILE "
            f"(Python: load_bilm(options=..., weights=...)), or copy them to {options} and {weights}."
        ) from None
    # Structural check: a corrupt download fails here, not in the middle of a training run.
    check_model_files(options, weights)
    atomic_write_text(
        folder / "sha256.json", json.dumps({p.name: file_sha256(p) for p in (options, weights)}, indent=1)
    )
    return options, weights


def resolve(name: str) -> tuple[Path, Path]:
    """(options, weights) for a model name: packaged first, then official (downloaded). A release
    label (``default@v2``) must be the shipped release: anything else is refused, never swapped in."""
    name, version = split_version(name)
    if version is not None:
        _check_requested_version(name, version)
    packaged = packaged_model_files(name)
    if packaged:
        return packaged
    if name in OFFICIAL_MODELS:
        return fetch_official(name)
    raise ModelNotAvailableError(f"unknown ELMo model '{name}'; known names: {', '.join(available_names())}")
