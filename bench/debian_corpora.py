"""Assemble benchmark corpora of four kinds from Debian packages (prose, HTML, C source, Python source).

    python bench/debian_corpora.py [--out ~/.cache/seqlab/corpora] [--max-bytes 1500000]

Prints one directory per corpus. Each is a deterministic selection (sorted paths, capped in
total size) so figures can be re-measured: the packages are fetched with `apt-get download`
and unpacked with `dpkg-deb -x` (no root needed, nothing installed).
"""

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

# name: (Debian package or None for files already on the machine, root inside it, glob, what it is)
CORPORA = {
    "prose": ("fortunes", "usr/share/games/fortunes", "*", "fortune-mod's quotations and stories"),
    "html": ("python3.11-doc", "usr/share/doc/python3.11/html/library", "*.html", "Python 3.11 library docs, HTML"),
    "c": ("linux-libc-dev", "usr/include/linux", "*.h", "Linux kernel UAPI headers, C"),
    "python": ("libpython3.11-stdlib", "usr/lib/python3.11", "*.py", "Python 3.11's standard library, Python"),
}


def unpack(package: str, cache: Path) -> Path:
    root = cache / "debs" / package
    if not root.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True)
            (deb,) = Path(tmp).glob("*.deb")
            root.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def is_text(path: Path) -> bool:
    """Plain files only: fortune's .dat indexes and .u8 symlinks are not corpus text."""
    return path.is_file() and not path.is_symlink() and path.suffix not in {".dat", ".u8"}


def assemble(name: str, out: Path, max_bytes: int) -> Path:
    package, inner, pattern, _ = CORPORA[name]
    source = unpack(package, out) / inner
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    total = 0
    for path in sorted(p for p in source.rglob(pattern) if is_text(p)):
        size = path.stat().st_size
        if total + size > max_bytes:
            continue
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        total += size
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path.home() / ".cache" / "seqlab" / "corpora")
    ap.add_argument("--max-bytes", type=int, default=1_500_000,
                    help="cap on each corpus (default about tinyshakespeare's size)")
    ap.add_argument("names", nargs="*", default=list(CORPORA))
    args = ap.parse_args()
    for name in args.names:
        path = assemble(name, args.out, args.max_bytes)
        n_bytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        print(f"{name}\t{path}\t{n_bytes:,} bytes\t{CORPORA[name][3]}")


if __name__ == "__main__":
    main()
