/* lib/elfrel.c: the relocation slots of named symbols, on real loaded objects (checked
 * against readelf and against what the dynamic linker wrote into them) and on made-up
 * layouts that must be refused, never followed. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "elfrel.h"

#if defined(__x86_64__)
#define T_SLOT R_X86_64_JUMP_SLOT
#define T_GOT R_X86_64_GLOB_DAT
#define T_PTR R_X86_64_64
#define T_TEXT R_X86_64_PC32
#elif defined(__aarch64__)
#define T_SLOT R_AARCH64_JUMP_SLOT
#define T_GOT R_AARCH64_GLOB_DAT
#define T_PTR R_AARCH64_ABS64
#define T_TEXT R_AARCH64_PREL32
#endif

/* ------------------------------------------------------------- real objects */

struct found {
	const char *want; /* substring of the object's path; "" = the main program */
	char path[512];
	uintptr_t base;
	const ElfW(Phdr) *phdr;
	size_t phnum;
};

static int find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct found *f = arg;
	(void)size;
	const char *n = info->dlpi_name ? info->dlpi_name : "";
	if (f->want[0] ? strstr(n, f->want) == NULL : n[0] != '\0')
		return 0;
	snprintf(f->path, sizeof(f->path), "%s", n);
	f->base = info->dlpi_addr;
	f->phdr = info->dlpi_phdr;
	f->phnum = info->dlpi_phnum;
	return 1;
}

static int loaded(struct found *f, const char *want)
{
	memset(f, 0, sizeof(*f));
	f->want = want;
	return dl_iterate_phdr(find_cb, f);
}

/* How many GOT/PLT/pointer relocations readelf lists for NAME in PATH. */
static int readelf_count(const char *path, const char *name)
{
	char cmd[700], line[1024];
	snprintf(cmd, sizeof(cmd), "readelf -rW '%s' 2>/dev/null", path);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	int n = 0;
	size_t nl = strlen(name);
	while (fgets(line, sizeof(line), p)) {
		char off[64], info[64], type[64], val[64], sym[512];
		if (sscanf(line, "%63s %63s %63s %63s %511s", off, info, type, val, sym) != 5)
			continue;
		if (strcmp(type, "R_X86_64_JUMP_SLOT") && strcmp(type, "R_X86_64_GLOB_DAT") &&
		    strcmp(type, "R_X86_64_64") && strcmp(type, "R_AARCH64_JUMP_SLOT") &&
		    strcmp(type, "R_AARCH64_GLOB_DAT") && strcmp(type, "R_AARCH64_ABS64"))
			continue;
		if (strncmp(sym, name, nl) == 0 && (sym[nl] == '@' || sym[nl] == '\0'))
			n++;
	}
	pclose(p);
	return n;
}

static const char *const names[] = {"connect", "close", "curl_easy_init", "cr_no_such_symbol"};

Test(elfrel, finds_the_bound_slots_of_libcurl)
{
	struct found f;
	cr_assert(loaded(&f, "libcurl.so"), "libcurl is linked into the unit tests");
	struct cr_elfobj o;
	cr_assert_eq(cr_elfrel_open(&o, f.base, f.phdr, f.phnum, (size_t)getpagesize()), CR_ELFREL_OK);
	cr_expect_gt(o.nsyms, 100);
	struct cr_elfslot s[64];
	long n = cr_elfrel_find(&o, names, 4, s, 64);
	cr_assert_gt(n, 0);
	int per[4] = {0};
	for (long i = 0; i < n; i++) {
		per[s[i].name]++;
		/* What the dynamic linker bound there (libcurl is linked with -z now) is the
		 * global definition: libc's connect and close, libcurl's own curl_easy_init. */
		void *want = dlsym(RTLD_DEFAULT, names[s[i].name]);
		cr_expect_eq(*(void **)s[i].addr, want, "%s", names[s[i].name]);
		cr_expect(s[i].addr >= o.lo && s[i].addr < o.hi);
	}
	for (int k = 0; k < 4; k++)
		cr_expect_eq(per[k], readelf_count(f.path, names[k]), "%s: as many as readelf lists",
			     names[k]);
	cr_expect_eq(per[3], 0);
	cr_expect_geq(per[0], 1);
	cr_expect_geq(per[1], 1);
}

Test(elfrel, relro_of_a_bind_now_object_holds_its_plt_slots)
{
	struct found f;
	cr_assert(loaded(&f, "libcurl.so"));
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "readelf -d '%s' | grep -q BIND_NOW", f.path);
	if (system(cmd) != 0)
		cr_skip_test("this libcurl is not linked with -z now");
	struct cr_elfobj o;
	cr_assert_eq(cr_elfrel_open(&o, f.base, f.phdr, f.phnum, (size_t)getpagesize()), CR_ELFREL_OK);
	cr_assert_lt(o.relro_lo, o.relro_hi);
	struct cr_elfslot s[64];
	long n = cr_elfrel_find(&o, names, 2, s, 64);
	cr_assert_gt(n, 0);
	for (long i = 0; i < n; i++)
		cr_expect(s[i].relro, "%s at %#lx outside [%#lx, %#lx)", names[s[i].name],
			  (unsigned long)s[i].addr, (unsigned long)o.relro_lo, (unsigned long)o.relro_hi);
}

Test(elfrel, the_main_program_and_the_vdso)
{
	struct found f;
	cr_assert(loaded(&f, ""));
	struct cr_elfobj o;
	cr_assert_eq(cr_elfrel_open(&o, f.base, f.phdr, f.phnum, (size_t)getpagesize()), CR_ELFREL_OK);
	struct cr_elfslot s[64];
	/* This program calls close() and connect() through its PLT. */
	long n = cr_elfrel_find(&o, names, 2, s, 64);
	cr_expect_geq(n, 2);
	/* The vDSO: a read-only dynamic section, no relocations: opens, finds nothing. */
	if (loaded(&f, "linux-vdso")) {
		cr_expect_eq(cr_elfrel_open(&o, f.base, f.phdr, f.phnum, (size_t)getpagesize()),
			     CR_ELFREL_OK);
		cr_expect_eq(cr_elfrel_find(&o, names, 4, s, 64), 0);
	}
}

Test(elfrel, too_many_matches_is_a_refusal)
{
	struct found f;
	cr_assert(loaded(&f, "libcurl.so"));
	struct cr_elfobj o;
	cr_assert_eq(cr_elfrel_open(&o, f.base, f.phdr, f.phnum, (size_t)getpagesize()), CR_ELFREL_OK);
	struct cr_elfslot s[1];
	cr_expect_eq(cr_elfrel_find(&o, names, 2, s, 1), -CR_ELFREL_TOO_MANY);
}

/* ------------------------------------------------------------ made-up objects */

/* One image, load bias 0: page 0 read-only (tables), pages 1-2 writable (slots), page 1
 * inside PT_GNU_RELRO. */
#define PG 4096
static unsigned char img[3 * PG] __attribute__((aligned(PG)));

struct fake {
	ElfW(Phdr) ph[4];
	size_t phnum;
	ElfW(Dyn) *dyn;
	ElfW(Rela) *jmprel, *rela;
	ElfW(Sym) *sym;
	uint32_t *hash;
	uintptr_t got;  /* page 1 (relro) */
	uintptr_t got2; /* page 2 */
};

static void dyn_set(struct fake *f, long tag, ElfW(Addr) v)
{
	for (int i = 0; f->dyn[i].d_tag != DT_NULL; i++)
		if (f->dyn[i].d_tag == tag) {
			f->dyn[i].d_un.d_val = v;
			return;
		}
	cr_assert_fail("no tag %ld", tag);
}

static void dyn_drop(struct fake *f, long tag)
{
	int i, j;
	for (i = j = 0; f->dyn[i].d_tag != DT_NULL; i++)
		if (f->dyn[i].d_tag != tag)
			f->dyn[j++] = f->dyn[i];
	f->dyn[j].d_tag = DT_NULL;
}

static void build(struct fake *f)
{
	memset(img, 0, sizeof(img));
	memset(f, 0, sizeof(*f));
	uintptr_t b = (uintptr_t)img;
	unsigned char *p = img;
	static const char strtab[] = "\0connect\0close\0other";
	memcpy(p, strtab, sizeof(strtab));
	uintptr_t str = b;
	p += 64;
	f->sym = (ElfW(Sym) *)p;
	f->sym[1].st_name = 1; /* connect */
	f->sym[2].st_name = 9; /* close */
	f->sym[3].st_name = 15; /* other */
	p += 4 * sizeof(ElfW(Sym));
	f->hash = (uint32_t *)p;
	f->hash[0] = 1; /* nbucket */
	f->hash[1] = 4; /* nchain = symbols */
	p += 64;
	f->got = b + PG;
	f->got2 = b + 2 * PG;
	f->jmprel = (ElfW(Rela) *)p;
	f->jmprel[0] = (ElfW(Rela)){.r_offset = f->got, .r_info = CR_ELF_R_INFO(1, T_SLOT)};
	f->jmprel[1] = (ElfW(Rela)){.r_offset = f->got + 8, .r_info = CR_ELF_R_INFO(3, T_SLOT)};
	p += 2 * sizeof(ElfW(Rela));
	f->rela = (ElfW(Rela) *)p;
	f->rela[0] = (ElfW(Rela)){.r_offset = f->got2, .r_info = CR_ELF_R_INFO(2, T_GOT)};
	f->rela[1] = (ElfW(Rela)){.r_offset = f->got + 16, .r_info = CR_ELF_R_INFO(1, T_PTR)};
	f->rela[2] = (ElfW(Rela)){.r_offset = f->got + 24, .r_info = CR_ELF_R_INFO(0, 8 /* RELATIVE */)};
	p += 3 * sizeof(ElfW(Rela));
	f->dyn = (ElfW(Dyn) *)p;
	ElfW(Dyn) d[] = {
		{DT_SYMTAB, {(uintptr_t)f->sym}}, {DT_STRTAB, {str}}, {DT_STRSZ, {sizeof(strtab)}},
		{DT_SYMENT, {sizeof(ElfW(Sym))}}, {DT_HASH, {(uintptr_t)f->hash}},
		{DT_RELA, {(uintptr_t)f->rela}}, {DT_RELASZ, {3 * sizeof(ElfW(Rela))}},
		{DT_RELAENT, {sizeof(ElfW(Rela))}}, {DT_JMPREL, {(uintptr_t)f->jmprel}},
		{DT_PLTRELSZ, {2 * sizeof(ElfW(Rela))}}, {DT_PLTREL, {DT_RELA}}, {DT_NULL, {0}},
	};
	memcpy(p, d, sizeof(d));
	f->ph[0] = (ElfW(Phdr)){.p_type = PT_LOAD, .p_flags = PF_R, .p_vaddr = b, .p_memsz = PG};
	f->ph[1] = (ElfW(Phdr)){.p_type = PT_LOAD, .p_flags = PF_R | PF_W, .p_vaddr = b + PG,
				.p_memsz = 2 * PG};
	f->ph[2] = (ElfW(Phdr)){.p_type = PT_GNU_RELRO, .p_flags = PF_R, .p_vaddr = b + PG,
				.p_memsz = PG + 40};
	f->ph[3] = (ElfW(Phdr)){.p_type = PT_DYNAMIC, .p_flags = PF_R, .p_vaddr = (uintptr_t)p,
				.p_memsz = sizeof(d)};
	f->phnum = 4;
}

static const char *const two[] = {"close", "connect"};

static long open_find(struct fake *f, struct cr_elfslot *s, size_t max)
{
	struct cr_elfobj o;
	int st = cr_elfrel_open(&o, 0, f->ph, f->phnum, PG);
	if (st != CR_ELFREL_OK)
		return -st;
	return cr_elfrel_find(&o, two, 2, s, max);
}

Test(elfrel_made_up, finds_slots_by_name_and_kind)
{
	struct fake f;
	build(&f);
	struct cr_elfobj o;
	cr_assert_eq(cr_elfrel_open(&o, 0, f.ph, f.phnum, PG), CR_ELFREL_OK);
	cr_expect_eq(o.nsyms, 4);
	cr_expect_eq(o.relro_lo, (uintptr_t)img + PG);
	cr_expect_eq(o.relro_hi, (uintptr_t)img + 2 * PG, "the partial last page stays writable");
	struct cr_elfslot s[8];
	cr_assert_eq(cr_elfrel_find(&o, two, 2, s, 8), 3);
	/* Jump slots first, then the GOT and pointer relocations. */
	cr_expect_eq(s[0].addr, f.got);
	cr_expect_eq(s[0].name, 1);
	cr_expect_eq(s[0].type, T_SLOT);
	cr_expect(s[0].relro);
	cr_expect_eq(s[1].addr, f.got2);
	cr_expect_eq(s[1].name, 0);
	cr_expect_eq(s[1].type, T_GOT);
	cr_expect_not(s[1].relro);
	cr_expect_eq(s[2].addr, f.got + 16);
	cr_expect_eq(s[2].type, T_PTR);
}

Test(elfrel_made_up, gnu_hash_gives_the_symbol_count)
{
	struct fake f;
	build(&f);
	/* nbuckets 2, symoffset 1, bloom 1 word; buckets {1, 3}; chain for 1..3, end bit on 3. */
	uint32_t *g = (uint32_t *)(img + 2048);
	g[0] = 2;
	g[1] = 1;
	g[2] = 1;
	g[3] = 6;
	uint32_t *buckets = (uint32_t *)((unsigned char *)(g + 4) + sizeof(ElfW(Addr)));
	buckets[0] = 1;
	buckets[1] = 3;
	uint32_t *chain = buckets + 2;
	chain[0] = 10;
	chain[1] = 21; /* end of bucket 0's chain */
	chain[2] = 31; /* end of bucket 1's chain: symbol 3 */
	dyn_drop(&f, DT_HASH);
	/* DT_GNU_HASH at the end (the list is shorter by one now). */
	int i = 0;
	while (f.dyn[i].d_tag != DT_NULL)
		i++;
	f.dyn[i] = (ElfW(Dyn)){DT_GNU_HASH, {(uintptr_t)g}};
	f.dyn[i + 1] = (ElfW(Dyn)){DT_NULL, {0}};
	struct cr_elfobj o;
	cr_assert_eq(cr_elfrel_open(&o, 0, f.ph, f.phnum, PG), CR_ELFREL_OK);
	cr_expect_eq(o.nsyms, 4);
	struct cr_elfslot s[8];
	cr_expect_eq(cr_elfrel_find(&o, two, 2, s, 8), 3);
}

Test(elfrel_made_up, bad_layouts_are_refused)
{
	struct fake f;
	struct cr_elfslot s[8];

	build(&f);
	dyn_drop(&f, DT_HASH);
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_NOSYMCOUNT, "no hash table");

	build(&f);
	dyn_set(&f, DT_PLTREL, DT_REL);
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_REL);

	build(&f);
	dyn_set(&f, DT_SYMTAB, 0x10);
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_LAYOUT, "symbol table outside the object");

	build(&f);
	dyn_drop(&f, DT_STRTAB);
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_LAYOUT, "no string table");

	build(&f);
	dyn_set(&f, DT_RELASZ, 1 << 20);
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_LAYOUT, "relocations past the segment");

	build(&f);
	dyn_set(&f, DT_SYMENT, 7);
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_LAYOUT, "odd symbol size");

	build(&f);
	f.hash[1] = 3; /* symbol 3 now out of range */
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_LAYOUT, "symbol index past the table");

	build(&f);
	f.sym[1].st_name = 4000;
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_LAYOUT, "name past the string table");

	build(&f);
	f.ph[3].p_memsz = 2 * sizeof(ElfW(Dyn)); /* cut before DT_NULL */
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_LAYOUT, "dynamic section without its end");
}

Test(elfrel_made_up, slots_that_cannot_be_rebound)
{
	struct fake f;
	struct cr_elfslot s[8];

	build(&f);
	f.jmprel[0].r_offset = (uintptr_t)img + 128; /* the read-only page */
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_SLOT);

	build(&f);
	f.jmprel[0].r_offset = f.got + 4;
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_SLOT, "misaligned");

	build(&f);
	f.rela[1].r_info = CR_ELF_R_INFO(1, T_TEXT);
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_TYPE, "a text relocation");

	build(&f);
	f.rela[1].r_addend = 16;
	cr_expect_eq(open_find(&f, s, 8), -CR_ELFREL_TYPE, "a pointer into the function");

	build(&f);
	cr_expect_eq(open_find(&f, s, 2), -CR_ELFREL_TOO_MANY);

	/* A relocation of an unknown kind for a name nobody asked for is not our business. */
	build(&f);
	f.jmprel[1].r_info = CR_ELF_R_INFO(3, T_TEXT);
	cr_expect_eq(open_find(&f, s, 8), 3);
}

Test(elfrel_made_up, no_dynamic_section_or_no_relocations)
{
	struct fake f;
	struct cr_elfslot s[8];
	build(&f);
	f.phnum = 3; /* no PT_DYNAMIC */
	cr_expect_eq(open_find(&f, s, 8), 0);
	build(&f);
	dyn_drop(&f, DT_RELA);
	dyn_drop(&f, DT_RELASZ);
	dyn_drop(&f, DT_JMPREL);
	dyn_drop(&f, DT_PLTRELSZ);
	dyn_drop(&f, DT_SYMTAB); /* not needed when nothing is relocated */
	cr_expect_eq(open_find(&f, s, 8), 0);
}

Test(elfrel, dynamic_strings_of_libcurl)
{
	struct found f;
	cr_assert(loaded(&f, "libcurl.so"));
	struct cr_elfobj o;
	cr_assert_eq(cr_elfrel_open(&o, f.base, f.phdr, f.phnum, (size_t)getpagesize()), CR_ELFREL_OK);
	size_t pos = 0;
	const char *so = cr_elfrel_dyn_string(&o, DT_SONAME, &pos);
	cr_assert_not_null(so);
	cr_expect_str_eq(so, "libcurl.so.4");
	cr_expect_null(cr_elfrel_dyn_string(&o, DT_SONAME, &pos), "one SONAME");
	int libc = 0, n = 0;
	const char *s;
	for (pos = 0; (s = cr_elfrel_dyn_string(&o, DT_NEEDED, &pos));)
		n++, libc += strcmp(s, "libc.so.6") == 0;
	cr_expect_eq(libc, 1);
	cr_expect_gt(n, 2);
}
