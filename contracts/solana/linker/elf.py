"""ELF constants and the reader of the relocatable BPF objects clang-16 writes (`-target bpfel -c`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import BuildError

ET_REL, ET_DYN, EM_BPF = 1, 3, 247
EV_CURRENT = 1
SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 0, 1, 2, 3, 4, 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
STB_LOCAL = 0
STT_NOTYPE, STT_SECTION = 0, 3
SHN_UNDEF, SHN_ABS = 0, 0xFFF1
PT_LOAD = 1
PF_X, PF_W, PF_R = 1, 2, 4

# Relocation types of clang's BPF backend (llvm/BinaryFormat/ELFRelocs/BPF.def)
R_BPF_NONE = 0
R_BPF_64_64 = 1  # lddw: 64-bit immediate split over the two instruction slots
R_BPF_64_ABS64 = 2  # 64-bit data word (pointers inside .rodata)
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10  # call: 32-bit immediate

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
SHDR = struct.Struct("<IIQQQQIIQQ")
PHDR = struct.Struct("<IIQQQQQQ")
SYM = struct.Struct("<IBBHQQ")
REL = struct.Struct("<QQ")


@dataclass(frozen=True)
class InputSection:
    index: int
    name: str
    type: int
    flags: int
    size: int
    align: int
    data: bytes


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    bind: int
    type: int
    shndx: int

    @property
    def defined(self) -> bool:
        return self.shndx not in (SHN_UNDEF, SHN_ABS)


@dataclass(frozen=True)
class Relocation:
    offset: int  # inside the target section
    type: int
    symbol: int  # index into the object's symbols


@dataclass(frozen=True)
class ObjectFile:
    name: str
    sections: list[InputSection]
    symbols: list[Symbol]
    relocations: dict[int, list[Relocation]]  # target section index -> its relocations


def _cstr(table: bytes, offset: int) -> str:
    end = table.index(b"\0", offset)
    return table[offset:end].decode()


def parse_object(name: str, blob: bytes) -> ObjectFile:
    if len(blob) < EHDR.size:
        raise BuildError(f"{name}: too short to be an ELF object")
    ident, e_type, e_machine, _, _, _, e_shoff, _, _, _, _, e_shentsize, e_shnum, e_shstrndx = EHDR.unpack_from(blob)
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
        raise BuildError(f"{name}: not a 64-bit little-endian ELF object")
    if e_type != ET_REL or e_machine != EM_BPF:
        raise BuildError(f"{name}: expected a relocatable BPF object (clang -target bpfel -c)")
    raw = [SHDR.unpack_from(blob, e_shoff + i * e_shentsize) for i in range(e_shnum)]
    shstr_off, shstr_size = raw[e_shstrndx][4], raw[e_shstrndx][5]
    shstr = blob[shstr_off : shstr_off + shstr_size]
    sections = []
    for i, (sh_name, sh_type, sh_flags, _, sh_offset, sh_size, _, _, sh_align, _) in enumerate(raw):
        data = b"" if sh_type == SHT_NOBITS else blob[sh_offset : sh_offset + sh_size]
        sections.append(InputSection(i, _cstr(shstr, sh_name), sh_type, sh_flags, sh_size, max(sh_align, 1), data))

    symbols: list[Symbol] = []
    for i, header in enumerate(raw):
        if header[1] != SHT_SYMTAB:
            continue
        table, strtab = sections[i].data, sections[header[6]].data
        for off in range(0, len(table), SYM.size):
            st_name, st_info, _, st_shndx, st_value, st_size = SYM.unpack_from(table, off)
            symbols.append(Symbol(_cstr(strtab, st_name), st_value, st_size, st_info >> 4, st_info & 0xF, st_shndx))
        break

    relocations: dict[int, list[Relocation]] = {}
    for i, header in enumerate(raw):
        if header[1] == SHT_RELA:
            raise BuildError(f"{name}: RELA relocations in {sections[i].name} are not expected from clang's BPF backend")
        if header[1] != SHT_REL:
            continue
        entries = []
        for off in range(0, len(sections[i].data), REL.size):
            r_offset, r_info = REL.unpack_from(sections[i].data, off)
            entries.append(Relocation(r_offset, r_info & 0xFFFFFFFF, r_info >> 32))
        relocations[header[7]] = entries  # sh_info: the section they apply to
    return ObjectFile(name, sections, symbols, relocations)
