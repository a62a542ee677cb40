"""MovieLens 100k: locate, download (checksum-verified), load, and split by time.

The data set's licence forbids redistribution, so it is never copied into the repository. It is
read from a directory given by ``--data``, else ``$NUDGE_ML100K_DIR``, else
``../shared/datasets/ml-100k`` next to the repository root. Elsewhere, ``python -m
training.movielens download --dest DIR`` fetches the official zip from GroupLens.

Checksums: the zip itself could not be fetched where this code was written, so what is pinned is
the sha256 of each extracted file (measured on the official release); they are verified after
extraction, and a mismatch deletes nothing but raises ``ChecksumError`` before the files are moved
into place.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol
from urllib.request import urlopen

import numpy as np
from numpy.typing import NDArray

OFFICIAL_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ENV_VAR = "NUDGE_ML100K_DIR"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "datasets" / "ml-100k"

# sha256 of the files inside the official ml-100k.zip (top folder "ml-100k/").
EXPECTED_SHA256: dict[str, str] = {
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.item": "6dd287831559152bea892eb27694a492ff14926ac5f7a16e5f8c4968e6fe13c3",
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
    "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
    "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
    "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
    "README": "b2f69dd0cab50c2b976da7c6113f267169cf0b35ade48de35fe75ed1b81c0f28",
}
# What a model is built from; their combined digest goes into the manifest.
TRAINING_FILES = ("u.data", "u.item")
ZIP_TOP_FOLDER = "ml-100k/"
# u.item encodes titles in latin-1, not UTF-8.
ITEM_ENCODING = "latin-1"
GENRE_FLAGS = 19
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 16


class ChecksumError(RuntimeError):
    """A data file does not have the sha256 of the official release."""


class DatasetNotFoundError(FileNotFoundError):
    """The ml-100k directory is missing; the message says how to get it."""


class Item(NamedTuple):
    item_id: str
    title: str
    year: int | None
    genres: tuple[str, ...]


class User(NamedTuple):
    user_id: str
    age: int
    gender: str
    occupation: str
    zip: str


@dataclass(frozen=True)
class Interactions:
    """Ratings as parallel arrays, in file order unless a method says otherwise.

    ``user`` and ``item`` hold MovieLens' integer ids; the rest of Nudge uses ``str(id)``.
    """

    user: NDArray[np.int64]
    item: NDArray[np.int64]
    rating: NDArray[np.int64]
    timestamp: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, index: NDArray[np.bool_] | NDArray[np.int64]) -> Interactions:
        return Interactions(self.user[index], self.item[index], self.rating[index], self.timestamp[index])

    def sorted_by_time(self) -> Interactions:
        # Stable, so equal timestamps keep file order: the evaluation protocol depends on it.
        return self.take(np.argsort(self.timestamp, kind="stable"))

    def sequences(self) -> dict[int, NDArray[np.int64]]:
        """Each user's items oldest to newest (stable on timestamp ties)."""
        ordered = self.sorted_by_time()
        by_user = np.argsort(ordered.user, kind="stable")
        users = ordered.user[by_user]
        items = ordered.item[by_user]
        bounds = np.flatnonzero(np.diff(users)) + 1
        return {
            int(chunk_users[0]): chunk_items
            for chunk_users, chunk_items in zip(np.split(users, bounds), np.split(items, bounds), strict=True)
            if chunk_users.size
        }

    @classmethod
    def concat(cls, parts: Sequence[Interactions]) -> Interactions:
        return cls(
            np.concatenate([p.user for p in parts]),
            np.concatenate([p.item for p in parts]),
            np.concatenate([p.rating for p in parts]),
            np.concatenate([p.timestamp for p in parts]),
        )


@dataclass(frozen=True)
class MovieLens:
    data_dir: Path
    interactions: Interactions
    items: list[Item]
    users: list[User]
    file_sha256: dict[str, str]

    @property
    def training_data_sha256(self) -> str:
        return combined_sha256(self.file_sha256, TRAINING_FILES)


def resolve_data_dir(flag: str | Path | None = None) -> Path:
    """--data wins over $NUDGE_ML100K_DIR, which wins over the default beside the repo."""
    if flag:
        return Path(flag).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return DEFAULT_DATA_DIR.resolve()


def _require(data_dir: Path, name: str) -> Path:
    path = data_dir / name
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{path} not found. Point --data or ${ENV_VAR} at an extracted ml-100k folder, or run "
            f"`python -m training.movielens download --dest DIR` (GroupLens licence: do not commit it)."
        )
    return path


def load_interactions(data_dir: Path) -> Interactions:
    raw = np.loadtxt(_require(data_dir, "u.data"), dtype=np.int64, delimiter="\t", ndmin=2)
    if raw.shape[1] != 4:
        raise ValueError(f"u.data: expected 4 tab-separated columns, got {raw.shape[1]}")
    return Interactions(
        user=np.ascontiguousarray(raw[:, 0]),
        item=np.ascontiguousarray(raw[:, 1]),
        rating=np.ascontiguousarray(raw[:, 2]),
        timestamp=np.ascontiguousarray(raw[:, 3]),
    )


def load_genres(data_dir: Path) -> list[str]:
    """Genre names by flag position (u.genre lines are ``name|index``)."""
    pairs: list[tuple[int, str]] = []
    for line in _require(data_dir, "u.genre").read_text(encoding=ITEM_ENCODING).splitlines():
        if line.strip():
            name, index = line.rsplit("|", 1)
            pairs.append((int(index), name))
    return [name for _, name in sorted(pairs)]


_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def _year(release_date: str, title: str) -> int | None:
    # Release dates look like 01-Jan-1995; a handful are blank, where the title often still has "(1995)".
    if release_date:
        return int(release_date.rsplit("-", 1)[-1])
    match = _YEAR_IN_TITLE.search(title)
    return int(match.group(1)) if match else None


def load_items(data_dir: Path) -> list[Item]:
    genre_names = load_genres(data_dir)
    items: list[Item] = []
    for line in _require(data_dir, "u.item").read_text(encoding=ITEM_ENCODING).splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        flags = fields[-GENRE_FLAGS:]
        genres = tuple(genre_names[i] for i, flag in enumerate(flags) if flag == "1")
        items.append(Item(item_id=fields[0], title=fields[1], year=_year(fields[2], fields[1]), genres=genres))
    return items


def load_users(data_dir: Path) -> list[User]:
    users: list[User] = []
    for line in _require(data_dir, "u.user").read_text(encoding=ITEM_ENCODING).splitlines():
        if line.strip():
            user_id, age, gender, occupation, zip_code = line.split("|")
            users.append(User(user_id, int(age), gender, occupation, zip_code))
    return users


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def combined_sha256(file_sha256s: Mapping[str, str], names: Iterable[str]) -> str:
    """sha256 of ``sha256sum``-style lines, so ``sha256sum u.data u.item | sha256sum`` reproduces it."""
    lines = "".join(f"{file_sha256s[name]}  {name}\n" for name in names)
    return hashlib.sha256(lines.encode()).hexdigest()


def load_movielens(data_dir: Path) -> MovieLens:
    return MovieLens(
        data_dir=data_dir,
        interactions=load_interactions(data_dir),
        items=load_items(data_dir),
        users=load_users(data_dir),
        file_sha256={name: file_sha256(_require(data_dir, name)) for name in (*TRAINING_FILES, "u.user")},
    )


def split_cutoff(interactions: Interactions, quantile: float = 0.8) -> int:
    """First timestamp of the replay period: the timestamp at the ``quantile`` position in time order."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if len(interactions) == 0:
        raise ValueError("no interactions to split")
    ordered = np.sort(interactions.timestamp)
    return int(ordered[min(int(quantile * len(ordered)), len(ordered) - 1)])


def time_split(interactions: Interactions, quantile: float = 0.8) -> tuple[Interactions, Interactions]:
    """(train, replay) by one global cutoff: every train event is strictly older than every replay event.

    Ties at the cutoff all go to replay, so the train part can be a little under ``quantile``.
    """
    cutoff = split_cutoff(interactions, quantile)
    is_train = interactions.timestamp < cutoff
    return interactions.take(is_train), interactions.take(~is_train)


# ---------------------------------------------------------------- download


class UrlOpener(Protocol):
    def __call__(self, url: str, *, timeout: float) -> Any: ...


def verify_checksums(data_dir: Path, expected: Mapping[str, str] = EXPECTED_SHA256) -> None:
    bad = [
        f"{name}: expected {want}, got {got}"
        for name, want in expected.items()
        if (got := file_sha256(_require(data_dir, name))) != want
    ]
    if bad:
        raise ChecksumError("ml-100k files differ from the official release:\n  " + "\n  ".join(bad))


def _extract(archive: zipfile.ZipFile, dest: Path) -> None:
    for member in archive.infolist():
        if member.is_dir() or not member.filename.startswith(ZIP_TOP_FOLDER):
            continue
        relative = Path(member.filename[len(ZIP_TOP_FOLDER) :])
        # Refuse absolute paths and ".." so a hostile zip cannot write outside dest.
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"unsafe path in archive: {member.filename}")
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out)


def download_ml100k(
    dest: Path,
    url: str = OFFICIAL_URL,
    opener: UrlOpener | None = None,
    expected: Mapping[str, str] = EXPECTED_SHA256,
) -> Path:
    """Fetch the official zip, extract it to a scratch folder beside ``dest``, verify, then move into place.

    ``dest`` receives the files directly (``dest/u.data`` ...). Nothing is left at ``dest`` if the
    checksums fail.
    """
    open_url: UrlOpener = opener or urlopen
    dest = dest.expanduser().resolve()
    if (dest / "u.data").exists():
        verify_checksums(dest, expected)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".ml-100k-") as scratch:
        zip_path = Path(scratch) / "ml-100k.zip"
        with open_url(url, timeout=DOWNLOAD_TIMEOUT_S) as response, zip_path.open("wb") as out:
            _copy_stream(response, out)
        extracted = Path(scratch) / "ml-100k"
        with zipfile.ZipFile(zip_path) as archive:
            _extract(archive, extracted)
        verify_checksums(extracted, expected)
        if dest.exists():
            dest.rmdir()  # only an empty leftover folder; a non-empty one raises rather than being clobbered
        extracted.rename(dest)
    return dest


def _copy_stream(src: IO[bytes], out: IO[bytes]) -> None:
    while chunk := src.read(_CHUNK):
        out.write(chunk)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.movielens", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    download = sub.add_parser("download", help="fetch the official zip and verify the files' sha256")
    download.add_argument("--dest", type=Path, default=None, help=f"default: ${ENV_VAR} or {DEFAULT_DATA_DIR}")
    download.add_argument("--url", default=OFFICIAL_URL)
    verify = sub.add_parser("verify", help="check an extracted folder against the pinned sha256")
    verify.add_argument("--data", default=None)
    args = parser.parse_args(argv)
    if args.command == "download":
        where = download_ml100k(args.dest or resolve_data_dir(None), url=args.url)
        print(f"ml-100k ready at {where} (checksums verified)")
    else:
        where = resolve_data_dir(args.data)
        verify_checksums(where)
        print(f"{where}: all {len(EXPECTED_SHA256)} files match the official release")
    return 0


if __name__ == "__main__":
    sys.exit(main())
