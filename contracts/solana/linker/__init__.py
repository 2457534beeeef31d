"""The Tessera program's linker: relocatable BPF objects from clang-16 (`-mcpu=v2`) in, SBPFv3 out.

    elf.py       ELF constants, the reader of the input objects
    layout.py    one text and one rodata segment; global symbols; the entrypoint
    relocate.py  calls (internal: pc-relative; syscalls: static murmur3 hashes), rodata pointers
    syscalls.py  the allow-list of syscalls
    murmur3.py   murmur3_32, the syscall hash
    writer.py    the SBPFv3 ELF file

The format rules (checked against the runtime) are in /work/shared/SOLANA_PROGRAM.md, "SBPFv3";
contracts/solana/README.md describes the output.
"""

from __future__ import annotations

from .elf import parse_object
from .errors import BuildError
from .layout import place
from .murmur3 import murmur3_32
from .relocate import apply_relocations, check_calls
from .syscalls import ALLOWED_SYSCALLS, syscall_hash
from .writer import EF_SBPF_V3, write_v3

__all__ = ["ALLOWED_SYSCALLS", "EF_SBPF_V3", "BuildError", "link", "murmur3_32", "syscall_hash"]


def link(objects: list[tuple[str, bytes]]) -> bytes:
    """Links (name, relocatable object bytes) pairs, in the order given, into an SBPFv3 program."""
    parsed = [parse_object(name, blob) for name, blob in objects]
    layout = place(parsed)
    syscall_sites = apply_relocations(parsed, layout)
    check_calls(layout, syscall_sites)
    return write_v3(layout)
