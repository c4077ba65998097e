/* connroute: the relocation slots that name given symbols (lib/elfrel.h).
 * Every read is of memory checked to lie inside one of the object's PT_LOAD
 * segments first: the input is whatever the dynamic linker mapped, and an
 * unknown layout must be refused, never followed (docs/INTERNALS.md,
 * "RTLD_DEEPBIND hosts"). */
#include <elf.h>
#include <string.h>

#include "elfrel.h"

#if defined(__x86_64__)
#define R_SLOT              R_X86_64_JUMP_SLOT
#define R_GOT               R_X86_64_GLOB_DAT
#define R_PTR               R_X86_64_64
#define SLOT_ADDEND_IGNORED 1 /* x86_64's JUMP_SLOT and GLOB_DAT are S, without A */
#elif defined(__aarch64__)
#define R_SLOT              R_AARCH64_JUMP_SLOT
#define R_GOT               R_AARCH64_GLOB_DAT
#define R_PTR               R_AARCH64_ABS64
#define SLOT_ADDEND_IGNORED 0
#endif

/* The largest table we believe (entries): far above any real object, and
 * small enough that no size computation below can overflow. */
#define TABLE_MAX (1u << 26)

const char *cr_elfrel_strerror(int status)
{
	switch (status) {
	case CR_ELFREL_OK: return "ok";
	case CR_ELFREL_LAYOUT: return "unknown ELF layout";
	case CR_ELFREL_REL: return "REL relocations";
	case CR_ELFREL_NOSYMCOUNT: return "no symbol hash table";
	case CR_ELFREL_SLOT: return "a relocation slot outside a writable segment";
	case CR_ELFREL_TYPE: return "a reference that is not a GOT or PLT entry";
	case CR_ELFREL_TOO_MANY: return "too many references";
	case CR_ELFREL_ARCH: return "unknown architecture";
	}
	return "unknown status";
}

/* Is [P, P+LEN) inside one PT_LOAD segment whose flags include FLAG? */
static int in_seg(const struct cr_elfobj *o, uintptr_t p, size_t len, unsigned flag)
{
	for (size_t i = 0; i < o->phnum; i++) {
		const ElfW(Phdr) *ph = &o->phdr[i];
		if (ph->p_type != PT_LOAD || (ph->p_flags & flag) != flag)
			continue;
		uintptr_t s = o->base + ph->p_vaddr, e = s + ph->p_memsz;
		if (e < s)
			continue;
		if (p >= s && p <= e && len <= e - p)
			return 1;
	}
	return 0;
}

/* A d_ptr of the dynamic section as an address in memory, checked to hold
 * LEN readable bytes, or 0. glibc adds the load bias in place on x86_64 and
 * aarch64, but not for a read-only dynamic section (the vDSO's): accept
 * either, whichever lands inside the object. */
static uintptr_t dyn_addr(const struct cr_elfobj *o, ElfW(Addr) v, size_t len)
{
	if (in_seg(o, v, len, PF_R))
		return v;
	if (v + o->base >= v && in_seg(o, v + o->base, len, PF_R))
		return v + o->base;
	return 0;
}

static int sym_count_gnu(const struct cr_elfobj *o, uintptr_t at, size_t *out)
{
	const uint32_t *h = (const uint32_t *)at;
	if (!in_seg(o, at, 16, PF_R))
		return CR_ELFREL_LAYOUT;
	uint32_t nbuckets = h[0], symoffset = h[1], bloom_size = h[2];
	if (nbuckets > TABLE_MAX || bloom_size > TABLE_MAX)
		return CR_ELFREL_LAYOUT;
	uintptr_t bloom = at + 16;
	uintptr_t buckets = bloom + (uintptr_t)bloom_size * sizeof(ElfW(Addr));
	if (!in_seg(o, buckets, (size_t)nbuckets * 4, PF_R))
		return CR_ELFREL_LAYOUT;
	const uint32_t *b = (const uint32_t *)buckets, *chain = b + nbuckets;
	uint32_t max = 0;
	for (uint32_t i = 0; i < nbuckets; i++)
		if (b[i] > max)
			max = b[i];
	if (max < symoffset) {
		*out = symoffset;
		return CR_ELFREL_OK;
	}
	/* The last chain ends at the highest symbol: walk it to its end bit. */
	for (;;) {
		uintptr_t c = (uintptr_t)&chain[max - symoffset];
		if (max >= TABLE_MAX || !in_seg(o, c, 4, PF_R))
			return CR_ELFREL_LAYOUT;
		if (*(const uint32_t *)c & 1)
			break;
		max++;
	}
	*out = (size_t)max + 1;
	return CR_ELFREL_OK;
}

int cr_elfrel_open(struct cr_elfobj *o, uintptr_t base, const ElfW(Phdr) * phdr, size_t phnum,
		   size_t pagesize)
{
	memset(o, 0, sizeof(*o));
	o->base = base;
	o->phdr = phdr;
	o->phnum = phnum;
#ifndef R_SLOT
	return CR_ELFREL_ARCH;
#endif
	if (!phdr || pagesize == 0 || (pagesize & (pagesize - 1)))
		return CR_ELFREL_LAYOUT;
	const ElfW(Phdr) *dynph = NULL;
	o->lo = UINTPTR_MAX;
	for (size_t i = 0; i < phnum; i++) {
		const ElfW(Phdr) *ph = &phdr[i];
		if (ph->p_type == PT_LOAD) {
			uintptr_t s = base + ph->p_vaddr, e = s + ph->p_memsz;
			if (s < o->lo)
				o->lo = s;
			if (e > o->hi)
				o->hi = e;
		} else if (ph->p_type == PT_DYNAMIC) {
			dynph = ph;
		} else if (ph->p_type == PT_GNU_RELRO) {
			uintptr_t s = base + ph->p_vaddr, e = s + ph->p_memsz;
			o->relro_lo = s & ~(uintptr_t)(pagesize - 1);
			o->relro_hi = e & ~(uintptr_t)(pagesize - 1);
			if (o->relro_hi <= o->relro_lo)
				o->relro_lo = o->relro_hi = 0;
		}
	}
	if (o->lo == UINTPTR_MAX)
		o->lo = 0;
	if (!dynph)
		return CR_ELFREL_OK; /* static: nothing is bound at run time */
	uintptr_t dynp = base + dynph->p_vaddr;
	size_t ndyn = dynph->p_memsz / sizeof(ElfW(Dyn));
	if (!in_seg(o, dynp, ndyn * sizeof(ElfW(Dyn)), PF_R))
		return CR_ELFREL_LAYOUT;
	const ElfW(Dyn) *dyn = (const ElfW(Dyn) *)dynp;

	ElfW(Addr) symtab = 0, strtab = 0, rela = 0, jmprel = 0, hash = 0, gnuhash = 0;
	size_t strsz = 0, relasz = 0, pltrelsz = 0, relsz = 0;
	long pltrel = -1, syment = -1, relaent = -1;
	size_t i;
	for (i = 0; i < ndyn && dyn[i].d_tag != DT_NULL; i++) {
		const ElfW(Dyn) *d = &dyn[i];
		switch (d->d_tag) {
		case DT_SYMTAB: symtab = d->d_un.d_ptr; break;
		case DT_STRTAB: strtab = d->d_un.d_ptr; break;
		case DT_STRSZ: strsz = d->d_un.d_val; break;
		case DT_SYMENT: syment = (long)d->d_un.d_val; break;
		case DT_RELA: rela = d->d_un.d_ptr; break;
		case DT_RELASZ: relasz = d->d_un.d_val; break;
		case DT_RELAENT: relaent = (long)d->d_un.d_val; break;
		case DT_JMPREL: jmprel = d->d_un.d_ptr; break;
		case DT_PLTRELSZ: pltrelsz = d->d_un.d_val; break;
		case DT_PLTREL: pltrel = (long)d->d_un.d_val; break;
		case DT_RELSZ: relsz = d->d_un.d_val; break;
		case DT_HASH: hash = d->d_un.d_ptr; break;
		case DT_GNU_HASH: gnuhash = d->d_un.d_ptr; break;
		default: break;
		}
	}
	if (i == ndyn)
		return CR_ELFREL_LAYOUT; /* no DT_NULL inside PT_DYNAMIC */
	if (relsz > 0 || (jmprel && pltrelsz > 0 && pltrel != DT_RELA))
		return CR_ELFREL_REL;
	if ((rela && relasz == 0) || relasz % sizeof(ElfW(Rela)) || pltrelsz % sizeof(ElfW(Rela)) ||
	    (relaent != -1 && relaent != (long)sizeof(ElfW(Rela))) ||
	    relasz / sizeof(ElfW(Rela)) > TABLE_MAX || pltrelsz / sizeof(ElfW(Rela)) > TABLE_MAX)
		return CR_ELFREL_LAYOUT;
	o->dyn = dyn;
	o->ndyn = i;
	if (strtab) {
		uintptr_t st = strsz ? dyn_addr(o, strtab, strsz) : 0;
		if (!st)
			return CR_ELFREL_LAYOUT;
		o->strtab = (const char *)st;
		o->strsz = strsz;
	}
	if (!(rela && relasz) && !(jmprel && pltrelsz))
		return CR_ELFREL_OK; /* no relocations: nothing to find */

	if (rela && relasz) {
		uintptr_t p = dyn_addr(o, rela, relasz);
		if (!p)
			return CR_ELFREL_LAYOUT;
		o->rela = (const ElfW(Rela) *)p;
		o->nrela = relasz / sizeof(ElfW(Rela));
	}
	if (jmprel && pltrelsz) {
		uintptr_t p = dyn_addr(o, jmprel, pltrelsz);
		if (!p)
			return CR_ELFREL_LAYOUT;
		o->jmprel = (const ElfW(Rela) *)p;
		o->njmprel = pltrelsz / sizeof(ElfW(Rela));
	}
	if (!symtab || !o->strtab || (syment != -1 && syment != (long)sizeof(ElfW(Sym))))
		return CR_ELFREL_LAYOUT;

	size_t nsyms = 0;
	if (gnuhash) {
		uintptr_t h = dyn_addr(o, gnuhash, 16);
		int r = h ? sym_count_gnu(o, h, &nsyms) : CR_ELFREL_LAYOUT;
		if (r != CR_ELFREL_OK)
			return r;
	} else if (hash) {
		uintptr_t h = dyn_addr(o, hash, 8);
		if (!h)
			return CR_ELFREL_LAYOUT;
		nsyms = ((const uint32_t *)h)[1];
	} else {
		return CR_ELFREL_NOSYMCOUNT;
	}
	if (nsyms > TABLE_MAX)
		return CR_ELFREL_LAYOUT;
	uintptr_t sp = dyn_addr(o, symtab, nsyms * sizeof(ElfW(Sym)));
	if (!sp)
		return CR_ELFREL_LAYOUT;
	o->symtab = (const ElfW(Sym) *)sp;
	o->nsyms = nsyms;
	return CR_ELFREL_OK;
}

static long find_in(const struct cr_elfobj *o, const ElfW(Rela) * rel, size_t nrel,
		    const char *const *names, size_t n, struct cr_elfslot *out, size_t max,
		    size_t *count)
{
#ifndef R_SLOT
	(void)o;
	(void)rel;
	(void)nrel;
	(void)names;
	(void)n;
	(void)out;
	(void)max;
	(void)count;
	return -CR_ELFREL_ARCH;
#else
	for (size_t i = 0; i < nrel; i++) {
		const ElfW(Rela) *r = &rel[i];
		size_t sym = CR_ELF_R_SYM(r->r_info);
		unsigned type = (unsigned)CR_ELF_R_TYPE(r->r_info);
		if (sym == 0)
			continue;
		if (sym >= o->nsyms)
			return -CR_ELFREL_LAYOUT;
		size_t off = o->symtab[sym].st_name;
		if (off >= o->strsz)
			return -CR_ELFREL_LAYOUT;
		const char *name = o->strtab + off;
		size_t left = o->strsz - off;
		if (memchr(name, '\0', left) == NULL)
			return -CR_ELFREL_LAYOUT;
		size_t k;
		for (k = 0; k < n; k++)
			if (name[0] == names[k][0] && strcmp(name, names[k]) == 0)
				break;
		if (k == n)
			continue;
		if (type == R_PTR) {
			if (r->r_addend != 0)
				return -CR_ELFREL_TYPE;
		} else if (type == R_SLOT || type == R_GOT) {
			if (!SLOT_ADDEND_IGNORED && r->r_addend != 0)
				return -CR_ELFREL_TYPE;
		} else {
			return -CR_ELFREL_TYPE;
		}
		uintptr_t a = o->base + r->r_offset;
		if (a % sizeof(void *) || !in_seg(o, a, sizeof(void *), PF_W))
			return -CR_ELFREL_SLOT;
		if (*count >= max)
			return -CR_ELFREL_TOO_MANY;
		out[*count] = (struct cr_elfslot){.addr = a,
						  .name = (unsigned)k,
						  .type = type,
						  .relro = a >= o->relro_lo && a < o->relro_hi};
		(*count)++;
	}
	return 0;
#endif
}

long cr_elfrel_find(const struct cr_elfobj *o, const char *const *names, size_t n,
		    struct cr_elfslot *out, size_t max)
{
	size_t count = 0;
	long r = find_in(o, o->jmprel, o->njmprel, names, n, out, max, &count);
	if (r == 0)
		r = find_in(o, o->rela, o->nrela, names, n, out, max, &count);
	return r < 0 ? r : (long)count;
}

const char *cr_elfrel_dyn_string(const struct cr_elfobj *o, long tag, size_t *pos)
{
	for (size_t i = *pos; o->dyn && o->strtab && i < o->ndyn; i++) {
		if (o->dyn[i].d_tag != tag)
			continue;
		*pos = i + 1;
		size_t off = o->dyn[i].d_un.d_val;
		if (off >= o->strsz || !memchr(o->strtab + off, '\0', o->strsz - off))
			continue;
		return o->strtab + off;
	}
	*pos = o->ndyn;
	return NULL;
}
