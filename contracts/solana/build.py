"""Build the Tessera Solana program: clang-16 compiles C to BPF objects, linker/ links them into SBPFv3.

cargo-build-sbf and platform-tools are not installable here, so the link step is project code:
`contracts/solana/linker/` (ELF reading, layout, relocation, syscall allow-list, the SBPFv3 writer).
This file is the command line and the compiler driver.

Usage: python contracts/solana/build.py [--out PATH]      (default: contracts/solana/tessera.so)
The output is reproducible: no timestamps or paths reach it, and sources are processed in sorted order.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `contracts.solana.linker` importable
    sys.path.append(str(ROOT))

from contracts.solana.linker import ALLOWED_SYSCALLS, BuildError, link  # noqa: E402

__all__ = ["ALLOWED_SYSCALLS", "BuildError", "build", "compile_sources", "find_clang", "link", "main"]

SRC_DIR = HERE / "src"
DEFAULT_OUT = HERE / "tessera.so"

# -mcpu=v2: no alu32 (SBPF's 32-bit arithmetic sign-extends, eBPF's zero-extends) and no 32-bit
# jumps; its output is valid SBPFv3 code.
CLANG_FLAGS = [
    "-target", "bpfel", "-mcpu=v2", "-O2", "-ffreestanding", "-fno-builtin",
    "-fno-stack-protector", "-g0", "-Wall", "-Wextra", "-Werror", "-std=c11",
]


def find_clang() -> str | None:
    return shutil.which(os.environ.get("TESSERA_CLANG", "clang-16"))


def compile_sources(src_dir: Path = SRC_DIR, clang: str | None = None) -> list[tuple[str, bytes]]:
    clang = clang or find_clang()
    if clang is None:
        raise BuildError("clang-16 is not installed: run `sudo apt-get install clang-16` (Debian) and build again")
    sources = sorted(src_dir.glob("*.c"))
    if not sources:
        raise BuildError(f"no C sources in {src_dir}")
    objects = []
    with tempfile.TemporaryDirectory(prefix="tessera-sbf-") as tmp:
        for src in sources:
            obj = Path(tmp) / (src.stem + ".o")
            # Compile from inside src_dir with relative names so no absolute path reaches the object.
            cmd = [clang, *CLANG_FLAGS, "-c", src.name, "-o", str(obj)]
            proc = subprocess.run(cmd, cwd=src_dir, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"clang failed on {src.name}:\n{proc.stderr.strip()}")
            objects.append((src.name, obj.read_bytes()))
    return objects


def build(out: Path | None = DEFAULT_OUT, src_dir: Path = SRC_DIR) -> bytes:
    program = link(compile_sources(src_dir))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(program)
    return program


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Tessera Solana program (SBPFv3).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output path (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        program = build(args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(program)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
