"""configfs-tsm against a fake tree in tmp_path that behaves like the kernel's report object."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest

from thirdway.enclave.tsm import (
    PROCESS_NOTE,
    ConfigfsOps,
    TsmError,
    get_quote,
    platform_evidence,
)

REPORT_DATA = hashlib.sha512(b"public key" + b"nonce").digest()
OTHER_DATA = hashlib.sha512(b"someone else's key" + b"nonce").digest()


class FakeConfigfs(ConfigfsOps):
    """A report directory like the kernel's: mkdir populates it, writing ``inblob`` bumps
    ``generation`` and produces ``outblob``. Knobs inject the failures a real TSM can show."""

    def __init__(
        self,
        provider: str | None = "tdx_guest",
        efbig: bool = False,
        races: int = 0,
        hijacks: int = 0,
    ) -> None:
        self.provider = provider
        self.efbig = efbig
        self.races = races
        """How many reports see another writer between our two reads of ``generation``."""
        self.hijacks = hijacks
        """How many reports have their ``inblob`` overwritten by another writer right after
        ours (so ``outblob`` is a quote over someone else's report data)."""
        self.reports: list[Path] = []

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        self.reports.append(path)
        (path / "generation").write_text("0\n")
        if self.provider is not None:
            (path / "provider").write_text(self.provider + "\n")

    def rmdir(self, path: Path) -> None:
        for child in path.iterdir():
            child.unlink()
        super().rmdir(path)

    def write(self, path: Path, data: bytes) -> None:
        if path.name == "inblob" and self.efbig and len(data) > 32:
            raise OSError(errno.EFBIG, "File too large", str(path))
        path.write_bytes(data)
        self._bump(path.parent)
        (path.parent / "outblob").write_bytes(b"QUOTE(" + data + b")")
        if path.name == "inblob" and self.hijacks > 0:
            self.hijacks -= 1
            path.write_bytes(OTHER_DATA)
            self._bump(path.parent)
            (path.parent / "outblob").write_bytes(b"QUOTE(" + OTHER_DATA + b")")

    def read(self, path: Path, limit: int) -> bytes:
        if path.name == "outblob" and self.races > 0:
            self.races -= 1
            self._bump(path.parent)  # someone else wrote an option meanwhile
        return super().read(path, limit)

    @staticmethod
    def _bump(report: Path) -> None:
        counter = report / "generation"
        counter.write_text(f"{int(counter.read_text()) + 1}\n")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    report = tmp_path / "sys" / "kernel" / "config" / "tsm" / "report"
    report.mkdir(parents=True)
    return report


def test_happy_path_quotes_the_report_data_and_cleans_up(root: Path) -> None:
    fs = FakeConfigfs()
    evidence = get_quote(REPORT_DATA, root, fs)
    assert evidence.provider == "tdx_guest"
    assert evidence.inblob == REPORT_DATA
    assert evidence.outblob == b"QUOTE(" + REPORT_DATA + b")"
    assert evidence.generation == 1
    assert len(fs.reports) == 1 and not fs.reports[0].exists()
    assert list(root.iterdir()) == []


def test_platform_evidence_names_the_provider(root: Path) -> None:
    found = platform_evidence(REPORT_DATA, "require", root, FakeConfigfs(provider="sev_guest"))
    assert found.platform == "sev_guest"
    assert found.evidence is not None and found.evidence.provider == "sev_guest"
    assert "sev_guest" in found.note and "configfs-tsm" in found.note


def test_efbig_is_a_clear_error(root: Path) -> None:
    with pytest.raises(TsmError, match=r"refused the 64-byte inblob \(EFBIG\)"):
        get_quote(REPORT_DATA, root, FakeConfigfs(efbig=True))
    assert list(root.iterdir()) == []


def test_one_concurrent_writer_is_retried(root: Path) -> None:
    fs = FakeConfigfs(races=1)
    evidence = get_quote(REPORT_DATA, root, fs)
    assert len(fs.reports) == 2  # the raced report was dropped, a fresh one used
    assert evidence.outblob == b"QUOTE(" + REPORT_DATA + b")"


def test_a_writer_right_after_ours_is_caught_not_quoted(root: Path) -> None:
    """Another inblob write between ours and the first generation read used to go unseen (both
    reads saw the same value) and the quote covered the other writer's data. ``generation`` is
    now read before our write and must grow by exactly one."""
    fs = FakeConfigfs(hijacks=1)
    evidence = get_quote(REPORT_DATA, root, fs)
    assert len(fs.reports) == 2  # the hijacked report was dropped
    assert evidence.outblob == b"QUOTE(" + REPORT_DATA + b")"
    assert evidence.generation == 1
    with pytest.raises(TsmError, match="generation changed while reading the quote, twice"):
        get_quote(REPORT_DATA, root, FakeConfigfs(hijacks=2))
    assert list(root.iterdir()) == []


def test_a_generation_that_keeps_changing_is_an_error(root: Path) -> None:
    with pytest.raises(TsmError, match="generation changed while reading the quote, twice"):
        get_quote(REPORT_DATA, root, FakeConfigfs(races=2))


def test_a_missing_provider_is_an_error(root: Path) -> None:
    with pytest.raises(TsmError, match="has no provider"):
        get_quote(REPORT_DATA, root, FakeConfigfs(provider=None))
    with pytest.raises(TsmError, match="has no provider"):
        get_quote(REPORT_DATA, root, FakeConfigfs(provider=""))


def test_report_data_must_be_64_bytes(root: Path) -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        get_quote(b"short", root, FakeConfigfs())


def test_absent_tsm_means_process_and_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "no-tsm"
    found = platform_evidence(REPORT_DATA, "auto", missing)
    assert (found.platform, found.evidence, found.note) == ("process", None, PROCESS_NOTE)
    with pytest.raises(TsmError, match="required, but configfs-tsm is absent"):
        platform_evidence(REPORT_DATA, "require", missing)
    assert platform_evidence(REPORT_DATA, "off", missing).platform == "process"


def test_unusable_tsm_falls_back_to_process_only_in_auto(root: Path) -> None:
    found = platform_evidence(REPORT_DATA, "auto", root, FakeConfigfs(provider=None))
    assert found.platform == "process" and found.evidence is None
    assert found.note.startswith(PROCESS_NOTE) and "has no provider" in found.note
    with pytest.raises(TsmError, match="has no provider"):
        platform_evidence(REPORT_DATA, "require", root, FakeConfigfs(provider=None))


def test_a_plain_directory_is_not_mistaken_for_hardware(root: Path) -> None:
    """The real file operations on a tree without a kernel behind it: no provider, no quote."""
    found = platform_evidence(REPORT_DATA, "auto", root)
    assert found.platform == "process" and "configfs-tsm unusable" in found.note
