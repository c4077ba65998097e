/* connroute: the relocation slots that name given symbols in a loaded ELF
 * object (docs/INTERNALS.md, "RTLD_DEEPBIND hosts"). Layer 0.
 *
 * Pure parsing of what the dynamic linker mapped: the program headers, the
 * dynamic section, the symbol and relocation tables. Nothing is written and
 * nothing is read outside the object's own PT_LOAD segments (every table is
 * checked to lie inside one readable segment before it is read), so a
 * malformed or unknown layout is reported, never dereferenced. The caller
 * (shim/rebind.c) decides what to write into the slots found. */
#ifndef CR_ELFREL_H
#define CR_ELFREL_H

#include <elf.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>

/* ELF64_R_SYM and friends for the native class. */
#if __ELF_NATIVE_CLASS == 64
#define CR_ELF_R_SYM(i)     ELF64_R_SYM(i)
#define CR_ELF_R_TYPE(i)    ELF64_R_TYPE(i)
#define CR_ELF_R_INFO(s, t) ELF64_R_INFO(s, t)
#else
#define CR_ELF_R_SYM(i)     ELF32_R_SYM(i)
#define CR_ELF_R_TYPE(i)    ELF32_R_TYPE(i)
#define CR_ELF_R_INFO(s, t) ELF32_R_INFO(s, t)
/* The strings of the dynamic section's TAG entries (DT_NEEDED, DT_SONAME),
 * one a call: start with *POS = 0; NULL after the last. Entries whose
 * string is not inside the string table are skipped. */
const char *cr_elfrel_dyn_string(const struct cr_elfobj *o, long tag, size_t *pos);

#endif

enum cr_elfrel_status {
	CR_ELFREL_OK = 0,
	CR_ELFREL_LAYOUT,     /* a table outside the object's segments, a bad entry size, ... */
	CR_ELFREL_REL,        /* REL relocations (only RELA is known on x86_64/aarch64) */
	CR_ELFREL_NOSYMCOUNT, /* neither DT_HASH nor DT_GNU_HASH: the symbol count is unknown */
	CR_ELFREL_SLOT,       /* a matching slot outside a writable segment, or misaligned */
	CR_ELFREL_TYPE,       /* a matching relocation of a kind that cannot be rebound (text
				* relocation, pointer with an addend) */
	CR_ELFREL_TOO_MANY,   /* more matching slots than the caller's array holds */
	CR_ELFREL_ARCH,       /* built for an architecture whose relocations are not known */
};

/* A short phrase for a status ("unknown ELF layout", ...). */
const char *cr_elfrel_strerror(int status);

/* One loaded object, as cr_elfrel_open found it. Addresses are in memory. */
struct cr_elfobj {
	uintptr_t base; /* load bias (dl_phdr_info.dlpi_addr) */
	const ElfW(Phdr) * phdr;
	size_t phnum;
	uintptr_t lo, hi;             /* extent of the PT_LOAD segments */
	uintptr_t relro_lo, relro_hi; /* the pages the loader made read-only after relocating
				       * (PT_GNU_RELRO rounded down at both ends, as ld.so does) */
	const ElfW(Dyn) * dyn;        /* the dynamic section, up to its DT_NULL */
	size_t ndyn;
	const ElfW(Sym) * symtab;
	size_t nsyms;
	const char *strtab;
	size_t strsz;
	const ElfW(Rela) * rela; /* DT_RELA: GOT entries, data pointers */
	size_t nrela;
	const ElfW(Rela) * jmprel; /* DT_JMPREL: PLT jump slots */
	size_t njmprel;
};

/* Reads the object whose program headers are PHDR[0..PHNUM) at load bias
 * BASE (both from dl_iterate_phdr). PAGESIZE: the system's page size. An
 * object without a dynamic section or without relocations opens with no
 * relocation tables (nothing to find; its dynamic strings are still read).
 * CR_ELFREL_OK or another status. */
int cr_elfrel_open(struct cr_elfobj *o, uintptr_t base, const ElfW(Phdr) * phdr, size_t phnum,
		   size_t pagesize);

struct cr_elfslot {
	uintptr_t addr; /* the pointer-sized, aligned slot, inside a writable segment */
	unsigned name;  /* index into the caller's NAMES */
	unsigned type;  /* the relocation type (R_X86_64_JUMP_SLOT, ...) */
	unsigned relro; /* inside [relro_lo, relro_hi): read-only until made writable */
};

/* Every PLT jump slot, GOT entry and plain data pointer (addend 0) whose
 * relocation names one of NAMES[0..N). Returns how many (at most MAX are
 * stored in OUT), or minus a status when the object cannot be rebound as a
 * whole: a matching relocation of another kind, a bad slot, a bad symbol
 * index, more than MAX matches. */
long cr_elfrel_find(const struct cr_elfobj *o, const char *const *names, size_t n,
		    struct cr_elfslot *out, size_t max);

/* The strings of the dynamic section's TAG entries (DT_NEEDED, DT_SONAME),
 * one a call: start with *POS = 0; NULL after the last. Entries whose
 * string is not inside the string table are skipped. */
const char *cr_elfrel_dyn_string(const struct cr_elfobj *o, long tag, size_t *pos);

#endif
