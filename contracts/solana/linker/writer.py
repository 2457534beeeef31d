"""The SBPFv3 file: ELF header, two program headers, rodata, text, and section headers for tools.

    offset 0    ELF header (e_flags = 3, e_entry = 1 << 32 + entrypoint offset)
    64          PT_LOAD rodata, PF_R, vaddr = paddr = 0
    120         PT_LOAD text,   PF_X, vaddr = paddr = 1 << 32
    176         rodata (byte 0 unused: nothing lives at NULL), padded to 8
    ...         text
    ...         .shstrtab, then the section header table (NULL, .rodata, .text, .shstrtab)

The loader reads only the file header and the program headers; the section headers are there so that
`llvm-objdump -d` and `readelf` can show the program. No PT_DYNAMIC, no relocations, no symbols.
"""

from __future__ import annotations

from .elf import (
    EHDR, EM_BPF, ET_DYN, EV_CURRENT, PF_R, PF_X, PHDR, PT_LOAD, SHDR, SHF_ALLOC, SHF_EXECINSTR, SHT_NULL,
    SHT_PROGBITS, SHT_STRTAB,
)
from .layout import INSN_SIZE, MM_BYTECODE_START, MM_RODATA_START, Layout

EF_SBPF_V3 = 3
_PHNUM = 2


def write_v3(layout: Layout) -> bytes:
    rodata, text = bytes(layout.rodata), bytes(layout.text)
    assert len(rodata) % INSN_SIZE == 0 and len(text) % INSN_SIZE == 0
    rodata_off = EHDR.size + _PHNUM * PHDR.size
    text_off = rodata_off + len(rodata)
    names = [".rodata", ".text", ".shstrtab"]
    shstrtab = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    name_at = {n: shstrtab.index(n.encode() + b"\0") for n in names}
    shstrtab_off = text_off + len(text)
    shoff = shstrtab_off + len(shstrtab) + (-(shstrtab_off + len(shstrtab)) % 8)
    sections = [
        (0, SHT_NULL, 0, 0, 0, 0, 0),
        (name_at[".rodata"], SHT_PROGBITS, SHF_ALLOC, MM_RODATA_START, rodata_off, len(rodata), 8),
        (name_at[".text"], SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, MM_BYTECODE_START, text_off, len(text), 8),
        (name_at[".shstrtab"], SHT_STRTAB, 0, 0, shstrtab_off, len(shstrtab), 1),
    ]

    out = bytearray()
    ident = b"\x7fELF" + bytes([2, 1, EV_CURRENT, 0]) + bytes(8)  # ELF64, little-endian, OSABI 0
    out += EHDR.pack(ident, ET_DYN, EM_BPF, EV_CURRENT, MM_BYTECODE_START + layout.entry_offset, EHDR.size, shoff,
                     EF_SBPF_V3, EHDR.size, PHDR.size, _PHNUM, SHDR.size, len(sections), len(sections) - 1)
    for flags, offset, vaddr, size in ((PF_R, rodata_off, MM_RODATA_START, len(rodata)),
                                       (PF_X, text_off, MM_BYTECODE_START, len(text))):
        out += PHDR.pack(PT_LOAD, flags, offset, vaddr, vaddr, size, size, INSN_SIZE)
    out += rodata + text + shstrtab
    out += bytes(shoff - len(out))
    for name, sh_type, flags, addr, offset, size, align in sections:
        out += SHDR.pack(name, sh_type, flags, addr, offset, size, 0, 0, align, 0)
    return bytes(out)
