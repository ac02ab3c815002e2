"""One-file models: a trained run and its backbone in one ``.tar.gz``, written by
``elmo-tasks package`` and read back by :func:`tasks.run_dir.load_run` (so ``predict``, ``evaluate``
and the Python API take a package wherever they take a run directory).

Layout: a gzip-compressed tar archive of regular files, flat, in this order::

    manifest.json            format and version, elmo-tasks version, task, size + sha256 of every
                             other member, the backbone reference
    config.yaml              the run's files, byte for byte
    vocab.json
    best.pt
    results.json             when the run has one (its scores, for the record; not read back)
    backbone/options.json    only when the backbone is embedded
    backbone/weights.hdf5

The backbone is referenced by name and content hash when it is a named model (shipped with the
package, or an official model from the named-model cache), and embedded when it is a file of the
user's (or with ``--embed-backbone``). Archives are reproducible: the same run gives the same bytes
(no timestamps, owners or file names in the tar or gzip headers).

Reading is one streaming pass, and no member name ever becomes a path: the manifest must come
first (so a newer format is refused before anything else is read, and every other member's size is
known before it is read); a member that is not a regular file, not listed in the manifest, listed
twice, of another size or with another hash is refused; the run's files are kept in memory and
the embedded backbone's two files are streamed, under fixed names, into a private temporary
directory that lives only while the backbone loads. Every load checks every member, so nothing
unpacked is kept between loads that could go stale or be altered.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from .config import BackboneConfig
from .errors import PackageError, brief

FORMAT = "elmo-tasks-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RUN_MEMBERS = ("config.yaml", "vocab.json", "best.pt")  # what load_run needs, in archive order
OPTIONAL_MEMBERS = ("results.json",)
# embedded backbone: member -> the fixed file name it is unpacked to
BACKBONE_MEMBERS = {"backbone/options.json": "options.json", "backbone/weights.hdf5": "weights.hdf5"}
KNOWN_MEMBERS = (*RUN_MEMBERS, *OPTIONAL_MEMBERS, *BACKBONE_MEMBERS)
MAX_MANIFEST_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def elmo_tasks_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("elmo-tasks")
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------- the backbone reference


@dataclass(frozen=True)
class BackboneReference:
    """How a package names its backbone: ``kind`` is ``named`` (``name`` + the files' sha256) or
    ``embedded`` (the files travel in the archive). ``options`` / ``weights``: the local files."""

    kind: str
    name: str | None
    options: Path
    weights: Path
    options_sha256: str
    weights_sha256: str

    def manifest(self) -> dict:
        entry = {"kind": self.kind}
        if self.kind == "named":
            entry["name"] = self.name
        else:
            entry["options"], entry["weights"] = BACKBONE_MEMBERS
        return {**entry, "options_sha256": self.options_sha256, "weights_sha256": self.weights_sha256}

    def describe(self) -> str:
        from elmo_core.models import release_label

        what = f"named model '{release_label(self.name, self.weights_sha256)}'" if self.kind == "named" else "embedded"
        return f"{what}, weights sha256 {self.weights_sha256[:16]}"


def backbone_reference(backbone: BackboneConfig, embed: bool = False) -> BackboneReference:
    """The reference a package of a run with this backbone config gets: by name when the config
    names a model, or names files identical to a shipped model or an official one in the
    named-model cache; embedded otherwise, or always with ``embed``."""
    from elmo_core.io import file_sha256

    from .features import backbone_files

    name = None if backbone.options else backbone.name or "default"
    options, weights = backbone_files(backbone)
    sums = file_sha256(options), file_sha256(weights)
    if not embed and name is None:
        name = named_model_with(*sums)
    kind = "embedded" if embed or name is None else "named"
    return BackboneReference(kind, name if kind == "named" else None, Path(options), Path(weights), *sums)


def named_model_with(options_sha256: str, weights_sha256: str) -> str | None:
    """The named model whose files have these hashes: a shipped one, or an official one already in
    the named-model cache (its recorded ``sha256.json``; nothing is downloaded)."""
    from elmo_core.io import file_sha256
    from elmo_core.models import OFFICIAL_MODELS, PACKAGED_DIR, cache_dir, packaged_model_files

    shipped = sorted(p.name for p in PACKAGED_DIR.iterdir() if p.is_dir()) if PACKAGED_DIR.is_dir() else []
    for name in shipped:
        files = packaged_model_files(name)
        if files and file_sha256(files[1]) == weights_sha256 and file_sha256(files[0]) == options_sha256:
            return name
    for name in OFFICIAL_MODELS:
        try:
            record = json.loads((cache_dir() / name / "sha256.json").read_text())
        except (OSError, ValueError):
            continue
        if record == {"options.json": options_sha256, "weights.hdf5": weights_sha256}:
            return name
    return None


# ---------------------------------------------------------------- writing


class _HashingReader:
    """A file read through once while its sha256 and size are taken."""

    def __init__(self, handle: IO[bytes]):
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


def _entry(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_package(
    output: str | Path,
    files: dict[str, bytes],
    task: str,
    backbone: BackboneReference | None,
    compresslevel: int = 6,
) -> dict:
    """Write the package of a run: ``files`` are its members by name (``config.yaml``,
    ``vocab.json``, ``best.pt``, optionally ``results.json``), ``backbone`` its reference (``None``
    for a run without ELMo). Atomic (``OUTPUT.part``, then rename); returns the manifest."""
    from elmo_core.io import atomic_path, file_sha256

    output = Path(output)
    members = [name for name in (*RUN_MEMBERS, *OPTIONAL_MEMBERS) if name in files]
    unknown = sorted(set(files) - set(members))
    if unknown or any(name not in files for name in RUN_MEMBERS):
        raise ValueError(
            f"write_package: expected the members {RUN_MEMBERS} (+ {OPTIONAL_MEMBERS}), got {sorted(files)}"
        )
    listed = {name: _entry(files[name]) for name in members}
    embedded = backbone is not None and backbone.kind == "embedded"
    if embedded:
        for member, path in zip(BACKBONE_MEMBERS, (backbone.options, backbone.weights)):
            listed[member] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
        if (listed["backbone/options.json"]["sha256"], listed["backbone/weights.hdf5"]["sha256"]) != (
            backbone.options_sha256,
            backbone.weights_sha256,
        ):
            raise PackageError(backbone.weights, "the backbone's files changed while the package was being made")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "elmo_tasks_version": elmo_tasks_version(),
        "task": task,
        "files": listed,
        "backbone": backbone.manifest() if backbone is not None else None,
    }
    manifest_bytes = (json.dumps(manifest, indent=1) + "\n").encode("utf-8")
    with atomic_path(output) as partial, open(partial, "wb") as raw:
        # no file name and no time in the gzip header, nor times or owners in the tar headers
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
                tar.addfile(_tar_info(MANIFEST, len(manifest_bytes)), io.BytesIO(manifest_bytes))
                for name in members:
                    tar.addfile(_tar_info(name, len(files[name])), io.BytesIO(files[name]))
                if embedded:
                    for member, path in zip(BACKBONE_MEMBERS, (backbone.options, backbone.weights)):
                        with open(path, "rb") as handle:
                            reader = _HashingReader(handle)
                            tar.addfile(_tar_info(member, listed[member]["size"]), reader)
                        if (reader.size, reader.digest.hexdigest()) != (
                            listed[member]["size"],
                            listed[member]["sha256"],
                        ):
                            raise PackageError(path, "changed while the package was being made; run the command again")
    return manifest


# ---------------------------------------------------------------- reading


class Package:
    """A package read and checked: ``manifest``, ``files`` (the run's members, in memory) and the
    backbone, loaded by :meth:`load_backbone`. Use as a context manager: the embedded backbone's
    temporary directory is removed on leaving it."""

    def __init__(self, path: Path):
        self.path = path
        self.manifest: dict = {}
        self.files: dict[str, bytes] = {}
        self._tmp: tempfile.TemporaryDirectory | None = None

    def where(self, member: str) -> str:
        """How messages name a member: ``ARCHIVE#MEMBER``."""
        return f"{self.path}#{member}"

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def backbone(self) -> dict | None:
        return self.manifest.get("backbone")

    def backbone_config(self, configured: BackboneConfig) -> BackboneConfig:
        """The config's backbone section as the package has it: the named model, or the archive's
        members (descriptive paths, ``ARCHIVE#backbone/...``; the files exist only while loading)."""
        entry = self.backbone
        if entry is None:
            return configured
        if entry["kind"] == "named":
            return replace(configured, name=entry["name"], options=None, weights=None, store=None)
        options, weights = (self.where(member) for member in BACKBONE_MEMBERS)
        return replace(configured, name=None, options=options, weights=weights, store=None)

    def load_backbone(self, configured: BackboneConfig, precision: str = "fp32"):
        """The biLM the package names, after checking it is the one the head was trained on."""
        from elmo_core.io import file_sha256
        from elmo_core.models import resolve

        from .features import load_backbone

        entry = self.backbone
        if entry is None:
            raise PackageError(
                self.where(MANIFEST),
                "records no backbone, but the run's config uses ELMo; re-create the package with 'elmo-tasks package'",
            )
        if entry["kind"] == "embedded":
            from elmo_core.errors import ElmoFileError

            folder = Path(self._tmp.name)  # type: ignore[union-attr]
            files = {"name": None, "options": str(folder / "options.json"), "weights": str(folder / "weights.hdf5")}
            try:
                return load_backbone(replace(configured, **files), precision=precision)
            except ElmoFileError as err:  # it names the temporary file: name the member instead
                message = str(err)
                for member, file_name in BACKBONE_MEMBERS.items():
                    message = message.replace(str(folder / file_name), self.where(member))
                raise ElmoFileError(message) from None
        name = entry["name"]
        options, weights = resolve(name)
        for what, path, key in (("weights", weights, "weights_sha256"), ("options", options, "options_sha256")):
            found = file_sha256(path)
            if found != entry[key]:
                made_by, here = self.manifest.get("elmo_tasks_version", "unknown"), elmo_tasks_version()
                advice = (
                    f"the package was made by elmo-tasks {made_by}, this is {here}: install elmo-tasks {made_by}"
                    if made_by != here
                    else f"the model files of '{name}' differ between the machine that made the package and this one"
                )
                raise PackageError(
                    self.path,
                    f"backbone does not match: the package was made with the named model '{name}' whose {what} "
                    f"have sha256 {entry[key][:16]}…, but '{name}' on this machine ({path}) has sha256 "
                    f"{found[:16]}…; {advice}, or ask for a package made with 'elmo-tasks package --embed-backbone'",
                )
        return load_backbone(replace(configured, name=name, options=None, weights=None), precision=precision)


def read_package(path: str | Path) -> Package:
    """Read and check a package (see the module's docstring); every problem is a
    :class:`~tasks.errors.PackageError` naming the archive, and the member where there is one."""
    path = Path(path)
    with open(path, "rb") as raw:
        if raw.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
            raise PackageError(
                path,
                "not a model package (not a gzip-compressed tar archive); expected a run directory "
                "written by 'elmo-tasks train' or a file written by 'elmo-tasks package'",
            )
        raw.seek(0)
        package = Package(path)
        package._tmp = tempfile.TemporaryDirectory(prefix="elmo-tasks-package-")
        try:
            _Reader(package).read(raw)
        except BaseException:
            package.close()
            raise
    return package


class _Reader:
    """One streaming pass over the archive, filling a :class:`Package`."""

    def __init__(self, package: Package):
        self.package = package
        self.seen: list[str] = []
        self.current: str | None = None  # the member being read, for messages

    def fail(self, member: str | None, message: str) -> PackageError:
        return PackageError(self.package.where(member) if member else self.package.path, message)

    def read(self, raw: IO[bytes]) -> None:
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                with tarfile.open(fileobj=gz, mode="r|") as tar:
                    for info in tar:
                        self.current = info.name
                        self.member(info, tar)
                    self.current = None
                while gz.read(_CHUNK):  # to the end: gzip checks its length and CRC there
                    pass
        except tarfile.ReadError as err:
            if not self.seen and self.current is None and "end of" not in str(err):
                raise self.fail(
                    None,
                    "not a model package (a gzip file, but not a tar archive); expected a file written by "
                    "'elmo-tasks package'",
                ) from None
            raise self.truncated(err) from None
        except (EOFError, zlib.error, gzip.BadGzipFile, tarfile.TarError) as err:
            raise self.truncated(err) from None
        if not self.seen:
            raise self.fail(None, "is an empty archive, not a model package written by 'elmo-tasks package'")
        missing = [name for name in self.package.manifest["files"] if name not in self.seen]
        if missing:
            raise self.fail(
                missing[0],
                "missing from the archive (its manifest lists it); the package is incomplete: re-create it "
                "with 'elmo-tasks package'",
            )

    def truncated(self, err: BaseException) -> PackageError:
        where = f" at member {self.current}" if self.current else ""
        return self.fail(
            None,
            f"truncated or damaged{where} ({brief(err)}); copy or download it again, or re-create it with "
            "'elmo-tasks package'",
        )

    def member(self, info: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        name = info.name
        if not self.seen and name != MANIFEST:
            raise self.fail(
                None,
                f"its first member is {name!r}, not {MANIFEST}: not a model package written by 'elmo-tasks package'",
            )
        if name in self.seen:
            raise self.fail(name, "appears twice in the archive; refused (the archive was altered)")
        if name.startswith("/") or ".." in name.split("/") or "\\" in name:
            raise self.fail(name, "unsafe member name (an absolute path or '..'); refused (the archive was altered)")
        if not info.isfile():
            kind = "a symbolic link" if info.issym() else "a hard link" if info.islnk() else "not a regular file"
            raise self.fail(name, f"{kind}; a package holds regular files only, refused (the archive was altered)")
        self.seen.append(name)
        if name == MANIFEST:
            self.read_manifest(info, tar)
            return
        listed = self.package.manifest["files"].get(name)
        if listed is None:
            raise self.fail(name, "not listed in the manifest; refused (the archive was altered)")
        if info.size != listed["size"]:
            raise self.fail(
                name, f"holds {info.size} bytes, the manifest says {listed['size']}: the archive was altered or damaged"
            )
        handle = tar.extractfile(info)
        digest = hashlib.sha256()
        if name in BACKBONE_MEMBERS:
            target = Path(self.package._tmp.name) / BACKBONE_MEMBERS[name]  # type: ignore[union-attr]
            with open(target, "wb") as out:
                for block in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(block)
                    out.write(block)
        else:
            data = handle.read()
            digest.update(data)
            self.package.files[name] = data
        found = digest.hexdigest()
        if found != listed["sha256"]:
            what = "the embedded backbone's file" if name in BACKBONE_MEMBERS else "member"
            raise self.fail(
                name,
                f"{what} has sha256 {found[:16]}…, the manifest expects {listed['sha256'][:16]}…: the archive was "
                "altered or damaged; re-create it with 'elmo-tasks package'",
            )

    def read_manifest(self, info: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        if info.size > MAX_MANIFEST_BYTES:
            raise self.fail(MANIFEST, f"is {info.size} bytes, more than a manifest can be; refused")
        try:
            manifest = json.loads(tar.extractfile(info).read().decode("utf-8"))  # type: ignore[union-attr]
        except (UnicodeDecodeError, ValueError) as err:
            raise self.fail(MANIFEST, f"is damaged ({brief(err)})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise self.fail(MANIFEST, f"is not the manifest of an elmo-tasks model package (format {FORMAT!r})")
        version = manifest.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise self.fail(MANIFEST, f"is damaged (format_version: expected an integer, found {version!r})")
        if version > FORMAT_VERSION:
            made_by = manifest.get("elmo_tasks_version", "a newer elmo-tasks")
            raise self.fail(
                None,
                f"package format {version} is newer than this elmo-tasks ({elmo_tasks_version()}) reads "
                f"(format {FORMAT_VERSION}); it was made by elmo-tasks {made_by}: upgrade elmo-tasks to read it",
            )
        problem = _manifest_problem(manifest)
        if problem:
            raise self.fail(MANIFEST, f"is damaged ({problem})")
        self.package.manifest = manifest


def _manifest_problem(manifest: dict) -> str | None:
    """What is wrong with a manifest of this format version, or ``None``."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        return "files: expected a mapping"
    for name, entry in files.items():
        if name not in KNOWN_MEMBERS:
            return f"files: unknown member {name!r}"
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("size"), int)
            and isinstance(entry.get("sha256"), str)
            and _SHA256.fullmatch(entry["sha256"])
        ):
            return f"files.{name}: expected size and sha256"
    for name in RUN_MEMBERS:
        if name not in files:
            return f"files: {name} is not listed"
    if not isinstance(manifest.get("task"), str):
        return "task: expected a task name"
    backbone = manifest.get("backbone")
    embedded_members = [name for name in BACKBONE_MEMBERS if name in files]
    if backbone is None:
        return "backbone: null, but the archive lists backbone files" if embedded_members else None
    if not isinstance(backbone, dict) or backbone.get("kind") not in ("named", "embedded"):
        return "backbone: expected null or a mapping with kind named or embedded"
    for key in ("options_sha256", "weights_sha256"):
        if not (isinstance(backbone.get(key), str) and _SHA256.fullmatch(backbone[key])):
            return f"backbone.{key}: expected a sha256"
    if backbone["kind"] == "named":
        if not isinstance(backbone.get("name"), str) or not backbone["name"]:
            return "backbone.name: expected a model name"
        return "backbone: named, but the archive lists backbone files" if embedded_members else None
    if len(embedded_members) != len(BACKBONE_MEMBERS):
        return "backbone: embedded, but the archive does not list both backbone files"
    sums = (files["backbone/options.json"]["sha256"], files["backbone/weights.hdf5"]["sha256"])
    if sums != (backbone["options_sha256"], backbone["weights_sha256"]):
        return "backbone: its sha256 differ from those of the files listed"
    return None
