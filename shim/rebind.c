/* connroute: objects loaded with RTLD_DEEPBIND reach the shim anyway
 * (docs/INTERNALS.md, "RTLD_DEEPBIND hosts").
 *
 * glibc resolves the references of an object loaded with RTLD_DEEPBIND, and
 * of the dependencies loaded with it, in that object's own dependency tree
 * before the global scope: PHP's extensions (php-curl, and the libcurl it
 * brings in) call libcurl and libc directly and never reach a preloaded
 * library. After such a dlopen returns, every GOT/PLT slot of exactly those
 * objects that names a symbol of lib/hooks.def is given what the global
 * scope binds that name to (our hook): the value the slot would hold had the
 * object been loaded without RTLD_DEEPBIND. Nothing else is written.
 *
 * The hooks here are dlopen and dlmopen. Without RTLD_DEEPBIND (nearly every
 * call) they are one flag test and a tail call: glibc then sees the app's
 * code as the caller, whose RUNPATH it searches and whose $ORIGIN it
 * expands. With it, the call cannot be a tail call (we work after it), so
 * those two caller-dependent steps are done here for the caller. */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base.h"
#include "elfrel.h"
#include "engine.h"
#include "log.h"
#include "real.h"
#include "rebind.h"
#include "shim.h"
#include "sys.h"

/* Every interposed name, in lib/hooks.def's order. */
static const char *const names[] = {
#define CR_LIBC(name, ret, params) #name,
#define CR_CURL(name, ret, params) #name,
#include "hooks.def"
#undef CR_LIBC
#undef CR_CURL
};
#define NNAMES ARRAY_SIZE(names)

/* An object as dl_iterate_phdr and a link_map both show it: load bias and
 * dynamic section. */
struct objid {
	uintptr_t addr;
	uintptr_t ld;
};

#ifdef DLFO_STRUCT_HAS_EH_DBASE
typedef int (*find_object_fn)(void *, struct dl_find_object *);
static find_object_fn find_object; /* glibc >= 2.35 */
#endif

/* Everything below is guarded by mu, held across each dl_iterate_phdr walk
 * (never across the app's dlopen itself: its constructors may dlopen). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int armed;             /* cr_rebind_init ran: rebind at each RTLD_DEEPBIND dlopen */
static void *targets[NNAMES]; /* the global scope's definition of each name */
static struct objid self;     /* libconnroute.so: never rebound */
static size_t pagesize;
static struct objid pending[32]; /* RTLD_DEEPBIND roots loaded before cr_rebind_init */
static int npending;
static struct objid refused[64]; /* objects logged as not rebindable: once each */
static int nrefused;
static struct cr_elfslot slots[512];
static uintptr_t pages[512];
static int prots[512];

/* ------------------------------------------------------------ dlopen hooks */

static int elf_ok(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ElfW(Ehdr) eh;
	ssize_t n = read(fd, &eh, sizeof(eh));
	cr_sys_close(fd); /* never the hooked close */
	return n == (ssize_t)sizeof(eh) && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
	       eh.e_ident[EI_CLASS] == (__ELF_NATIVE_CLASS == 64 ? ELFCLASS64 : ELFCLASS32) &&
#if defined(__x86_64__)
	       eh.e_machine == EM_X86_64 &&
#elif defined(__aarch64__)
	       eh.e_machine == EM_AARCH64 &&
#endif
	       eh.e_type == ET_DYN;
}

static struct link_map *caller_map(const void *caller)
{
	Dl_info di;
	struct link_map *lm = NULL;
	if (!dladdr1(caller, &di, (void **)&lm, RTLD_DL_LINKMAP))
		return NULL;
	return lm;
}

/* The directory of the object LM (glibc's $ORIGIN) into DIR; its length,
 * or -1. */
static ssize_t origin_dir(const struct link_map *lm, char *dir, size_t cap)
{
	const char *n = lm ? lm->l_name : NULL;
	ssize_t dl;
	if (n && n[0] == '/') {
		dl = strrchr(n, '/') - n;
		if (dl >= (ssize_t)cap)
			return -1;
		memcpy(dir, n, (size_t)dl);
	} else if (!n || !n[0]) { /* the main program */
		dl = readlink("/proc/self/exe", dir, cap - 1);
		if (dl <= 0)
			return -1;
		while (dl > 0 && dir[dl - 1] != '/')
			dl--;
		if (dl > 1)
			dl--;
	} else {
		return -1; /* a relative object path: left to glibc */
	}
	dir[dl] = '\0';
	return dl;
}

/* S with $ORIGIN / ${ORIGIN} replaced by ORIGIN: malloc'd, or NULL. N bytes
 * of S (S need not end there). */
static char *with_origin(const char *s, size_t n, const char *origin)
{
	size_t ol = origin ? strlen(origin) : 0, cap = n + 1;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '$')
			cap += ol;
	char *out = malloc(cap), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t skip = n - i >= 7 && !strncmp(s + i, "$ORIGIN", 7)     ? 7
			      : n - i >= 9 && !strncmp(s + i, "${ORIGIN}", 9) ? 9
									      : 0;
		if (skip && !origin) {
			free(out);
			return NULL;
		}
		if (skip) {
			memcpy(o, origin, ol);
			o += ol;
			i += skip;
		} else {
			*o++ = s[i++];
		}
	}
	*o = '\0';
	return out;
}

/* FILE in the directories of LIST (':'-separated, $ORIGIN expanded): the
 * first loadable one, malloc'd, or NULL. */
static char *search_list(const char *list, const char *origin, const char *file)
{
	size_t fl = strlen(file);
	for (const char *p = list; p && *p;) {
		const char *end = p + strcspn(p, ":;");
		char *dir = end > p ? with_origin(p, (size_t)(end - p), origin) : strdup(".");
		p = *end ? end + 1 : end;
		if (!dir)
			continue;
		size_t dl = strlen(dir);
		char *path = malloc(dl + fl + 2);
		if (path) {
			memcpy(path, dir, dl);
			path[dl] = '/';
			memcpy(path + dl + 1, file, fl + 1);
		}
		free(dir);
		if (path && elf_ok(path))
			return path;
		free(path);
	}
	return NULL;
}

struct dynpaths {
	uintptr_t addr, ld;
	char *runpath, *rpath; /* malloc'd copies */
};

static int dynpaths_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct dynpaths *d = arg;
	(void)size;
	if ((uintptr_t)info->dlpi_addr != d->addr)
		return 0;
	struct cr_elfobj o;
	cr_elfrel_open(&o, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum,
		       (size_t)getpagesize());
	if ((uintptr_t)o.dyn != d->ld)
		return 0;
	size_t pos = 0;
	const char *s = cr_elfrel_dyn_string(&o, DT_RUNPATH, &pos);
	d->runpath = s ? strdup(s) : NULL;
	pos = 0;
	s = cr_elfrel_dyn_string(&o, DT_RPATH, &pos);
	d->rpath = s ? strdup(s) : NULL;
	return 1;
}

/* A bare name as glibc would search it for the caller: with a DT_RUNPATH,
 * LD_LIBRARY_PATH then the RUNPATH; else its DT_RPATH. What is not found
 * there is left to glibc, whose remaining steps (the main program's
 * DT_RPATH, LD_LIBRARY_PATH, ld.so.cache, the system directories) do not
 * depend on the caller. Returns a malloc'd path, or NULL. */
static char *search_for(const void *caller, const char *file)
{
	struct link_map *lm = caller_map(caller);
	if (!lm)
		return NULL;
	struct dynpaths d = {.addr = (uintptr_t)lm->l_addr, .ld = (uintptr_t)lm->l_ld};
	dl_iterate_phdr(dynpaths_cb, &d);
	char *found = NULL;
	if (d.runpath || d.rpath) {
		char origin[4096];
		const char *o = origin_dir(lm, origin, sizeof(origin)) >= 0 ? origin : NULL;
		if (d.runpath) {
			found = search_list(getenv("LD_LIBRARY_PATH"), NULL, file);
			if (!found)
				found = search_list(d.runpath, o, file);
		} else {
			found = search_list(d.rpath, o, file);
		}
	}
	free(d.runpath);
	free(d.rpath);
	return found;
}

/* FILE with $ORIGIN expanded against the caller (glibc expands it against
 * the object that called dlopen). malloc'd, or NULL. */
static char *expand_origin(const void *caller, const char *file)
{
	char origin[4096];
	if (origin_dir(caller_map(caller), origin, sizeof(origin)) < 0)
		return NULL;
	return with_origin(file, strlen(file), origin);
}

static void rebind_root_locked(struct objid root);

/* After an RTLD_DEEPBIND load: the root's identity, then its objects. */
static void after_open(void *h)
{
	struct link_map *lm = NULL;
	if (dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0 || !lm)
		return;
	struct objid r = {(uintptr_t)lm->l_addr, (uintptr_t)lm->l_ld};
	pthread_mutex_lock(&mu);
	if (armed)
		rebind_root_locked(r);
	else if (npending < (int)ARRAY_SIZE(pending))
		pending[npending++] = r; /* before init: cr_rebind_init rebinds it */
	pthread_mutex_unlock(&mu);
}

__attribute__((noinline)) static void *deep_open(int is_m, Lmid_t lmid, const char *file, int mode,
						 const void *caller)
{
	int e = errno;
	void *h = NULL;
	char *path = NULL;
	if (!file) /* the main program: nothing is loaded */
		return is_m ? cr_real.dlmopen(lmid, file, mode) : cr_real.dlopen(file, mode);
	if (!strchr(file, '/')) {
		/* Already loaded under that name: what glibc checks first,
		 * whoever calls. */
		h = is_m ? cr_real.dlmopen(lmid, file, mode | RTLD_NOLOAD)
			 : cr_real.dlopen(file, mode | RTLD_NOLOAD);
		if (!h)
			path = search_for(caller, file);
	} else {
		if (strstr(file, "ORIGIN"))
			path = expand_origin(caller, file);
		/* Already loaded (the same file): relocated long ago, by
		 * whichever load mapped it; nothing new to rebind. */
		const char *use = path ? path : file;
		h = is_m ? cr_real.dlmopen(lmid, use, mode | RTLD_NOLOAD)
			 : cr_real.dlopen(use, mode | RTLD_NOLOAD);
	}
	if (!h) {
		const char *use = path ? path : file;
		errno = e;
		h = is_m ? cr_real.dlmopen(lmid, use, mode) : cr_real.dlopen(use, mode);
		e = errno;
		if (h)
			after_open(h);
	}
	free(path);
	errno = e;
	return h;
}

/* The fast path: one flag test and a tail call (glibc sees our caller). */
HOOK(void *, dlopen, (const char *file, int mode))
{
	if (__builtin_expect(!(mode & RTLD_DEEPBIND), 1) ||
	    atomic_load_explicit(&cr_state, memory_order_relaxed) == CR_ST_DISABLED)
		return cr_real.dlopen(file, mode);
	return deep_open(0, LM_ID_BASE, file, mode, __builtin_return_address(0));
}

/* Only the base namespace is ours: a new namespace has its own libc (its own
 * errno) and never sees this library. */
HOOK(void *, dlmopen, (Lmid_t lmid, const char *file, int mode))
{
	if (__builtin_expect(!(mode & RTLD_DEEPBIND), 1) || lmid != LM_ID_BASE ||
	    atomic_load_explicit(&cr_state, memory_order_relaxed) == CR_ST_DISABLED)
		return cr_real.dlmopen(lmid, file, mode);
	return deep_open(1, lmid, file, mode, __builtin_return_address(0));
}

/* --------------------------------------------------------------- rebinding */

static int same(struct objid a, struct objid b)
{
	return a.addr == b.addr && a.ld == b.ld;
}

static struct objid id_of(const struct dl_phdr_info *info)
{
	struct objid id = {(uintptr_t)info->dlpi_addr, 0};
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
			id.ld = (uintptr_t)info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
	return id;
}

static const char *name_of(const struct dl_phdr_info *info)
{
	return info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : "the main program";
}

/* Logged once per object, at info: the host keeps running, that object's
 * calls unrouted. */
static void refuse(const struct dl_phdr_info *info, struct objid id, const char *why, int err)
{
	for (int i = 0; i < nrefused; i++)
		if (same(refused[i], id))
			return;
	if (nrefused < (int)ARRAY_SIZE(refused))
		refused[nrefused++] = id;
	if (err)
		cr_logmsg(CR_LL_INFO,
			  "%s was loaded with RTLD_DEEPBIND and cannot be rebound (%s: %s): "
			  "its calls bypass connroute",
			  name_of(info), why, strerror(err));
	else
		cr_logmsg(CR_LL_INFO,
			  "%s was loaded with RTLD_DEEPBIND and cannot be rebound (%s): "
			  "its calls bypass connroute",
			  name_of(info), why);
}

/* Relocated and not being unloaded: the dynamic linker registers an object
 * for _dl_find_object only after relocating it (RELRO applied), and we are
 * inside dl_iterate_phdr, which holds the lock dlclose needs to unmap. So an
 * object another thread is still loading is never written to. */
static int complete(const struct dl_phdr_info *info)
{
#ifdef DLFO_STRUCT_HAS_EH_DBASE
	for (int i = 0; i < info->dlpi_phnum; i++) {
		if (info->dlpi_phdr[i].p_type != PT_LOAD)
			continue;
		struct dl_find_object r;
		void *probe = (void *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
		return find_object && find_object(probe, &r) == 0 && r.dlfo_link_map &&
		       (uintptr_t)r.dlfo_link_map->l_addr == (uintptr_t)info->dlpi_addr;
	}
#endif
	(void)info;
	return 0;
}

/* The current protection of each of pages[0..n) from /proc/self/maps
 * (PROT_* bits, -1 where unmapped). -1 if it cannot be read. */
static int read_prots(int n)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	for (int i = 0; i < n; i++)
		prots[i] = -1;
	char buf[4096], line[96];
	size_t ll = 0;
	ssize_t got;
	while ((got = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t k = 0; k < got; k++) {
			if (buf[k] != '\n') {
				if (ll < sizeof(line) - 1)
					line[ll++] = buf[k];
				continue;
			}
			line[ll] = '\0';
			ll = 0;
			char *end;
			unsigned long lo = strtoul(line, &end, 16), hi;
			if (*end != '-')
				continue;
			hi = strtoul(end + 1, &end, 16);
			if (*end != ' ' || strlen(end) < 5)
				continue;
			int prot = (end[1] == 'r' ? PROT_READ : 0) |
				   (end[2] == 'w' ? PROT_WRITE : 0) |
				   (end[3] == 'x' ? PROT_EXEC : 0);
			for (int i = 0; i < n; i++)
				if (pages[i] >= lo && pages[i] < hi)
					prots[i] = prot;
		}
	}
	cr_sys_close(fd);
	return got < 0 ? -1 : 0;
}

/* Writes the global definition into every slot of one object loaded with
 * RTLD_DEEPBIND that differs from it (bound to the deep scope's definition,
 * or a lazy PLT slot still pointing into the object itself). */
static void rebind_object(const struct dl_phdr_info *info, struct objid id, struct cr_elfobj *o,
			  int st)
{
	if (same(id, self) || !complete(info))
		return;
	if (st != CR_ELFREL_OK) {
		refuse(info, id, cr_elfrel_strerror(st), 0);
		return;
	}
	long n = cr_elfrel_find(o, names, NNAMES, slots, ARRAY_SIZE(slots));
	if (n < 0) {
		refuse(info, id, cr_elfrel_strerror((int)-n), 0);
		return;
	}
	long w = 0;
	for (long i = 0; i < n; i++) {
		void *v = __atomic_load_n((void **)slots[i].addr, __ATOMIC_RELAXED);
		void *t = targets[slots[i].name];
		if (t && v != t)
			slots[w++] = slots[i];
	}
	if (w == 0)
		return;

	/* The pages to make writable for the stores: RELRO pages are
	 * read-only once relocated. Their real protection is read from
	 * /proc/self/maps (without it: what the ELF headers say). */
	int np = 0;
	for (long i = 0; i < w; i++) {
		uintptr_t pg = slots[i].addr & ~(uintptr_t)(pagesize - 1);
		int k;
		for (k = 0; k < np && pages[k] != pg; k++)
			;
		if (k == np)
			pages[np++] = pg;
	}
	if (read_prots(np) != 0) {
		for (int k = 0; k < np; k++) {
			prots[k] = PROT_READ | PROT_WRITE;
			for (long i = 0; i < w; i++)
				if ((slots[i].addr & ~(uintptr_t)(pagesize - 1)) == pages[k] &&
				    slots[i].relro)
					prots[k] = PROT_READ;
		}
	}
	int changed;
	for (changed = 0; changed < np; changed++) {
		if (prots[changed] < 0)
			break;
		if ((prots[changed] & PROT_WRITE) == 0 &&
		    mprotect((void *)pages[changed], pagesize, prots[changed] | PROT_WRITE) != 0)
			break;
	}
	if (changed < np) {
		int err = prots[changed] < 0 ? EFAULT : errno;
		for (int k = 0; k < changed; k++)
			if ((prots[k] & PROT_WRITE) == 0)
				(void)mprotect((void *)pages[k], pagesize, prots[k]);
		refuse(info, id, "its read-only GOT cannot be made writable", err);
		return;
	}
	/* One aligned pointer store each: a thread calling through the slot
	 * meanwhile sees the old target or the new one, never a mix. */
	for (long i = 0; i < w; i++)
		__atomic_store_n((void **)slots[i].addr, targets[slots[i].name], __ATOMIC_RELEASE);
	for (int k = 0; k < np; k++)
		if ((prots[k] & PROT_WRITE) == 0)
			(void)mprotect((void *)pages[k], pagesize, prots[k]);
	cr_logmsg(CR_LL_DEBUG,
		  "%s: %ld reference%s rebound to the global scope (loaded with RTLD_DEEPBIND)",
		  name_of(info), w, w == 1 ? "" : "s");
}

/* A walk of dl_iterate_phdr: the root object, then each later object that
 * satisfies a DT_NEEDED of an object taken before it. glibc
 * loads an object's new dependencies right after it, breadth first, and
 * serialises loads, so these are exactly the objects the root's dlopen
 * loaded (another thread's later load is never needed by them). */
struct walk {
	struct objid root;
	int found_root;
	const char *want[256]; /* DT_NEEDED names not yet met (valid during the walk) */
	int nwant;
};

static int wanted(struct walk *wk, const struct cr_elfobj *o, const char *path)
{
	size_t pos = 0;
	const char *soname = cr_elfrel_dyn_string(o, DT_SONAME, &pos);
	const char *base = path ? strrchr(path, '/') : NULL;
	base = base ? base + 1 : path;
	int hit = 0;
	for (int i = 0; i < wk->nwant; i++) {
		const char *w = wk->want[i];
		if ((soname && strcmp(w, soname) == 0) || (base && strcmp(w, base) == 0) ||
		    (path && strcmp(w, path) == 0)) {
			wk->want[i] = wk->want[--wk->nwant]; /* met: the first match only */
			i--;
			hit = 1;
		}
	}
	return hit;
}

static void want_needed(struct walk *wk, const struct cr_elfobj *o)
{
	size_t pos = 0;
	const char *n;
	while ((n = cr_elfrel_dyn_string(o, DT_NEEDED, &pos))) {
		int k;
		for (k = 0; k < wk->nwant && strcmp(wk->want[k], n) != 0; k++)
			;
		if (k == wk->nwant && wk->nwant < (int)ARRAY_SIZE(wk->want))
			wk->want[wk->nwant++] = n;
	}
}

static int walk_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct walk *wk = arg;
	(void)size;
	struct objid id = id_of(info);
	struct cr_elfobj o;
	int st = cr_elfrel_open(&o, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum, pagesize);
	if (!wk->found_root) {
		if (!same(id, wk->root))
			return 0;
		wk->found_root = 1;
	} else if (!wanted(wk, &o, info->dlpi_name)) {
		return 0;
	}
	want_needed(wk, &o);
	rebind_object(info, id, &o, st);
	return 0;
}

static void rebind_root_locked(struct objid root)
{
	struct walk wk = {.root = root};
	dl_iterate_phdr(walk_cb, &wk);
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&mu);
}

static void atfork_release(void)
{
	pthread_mutex_unlock(&mu);
}

void cr_rebind_init(void)
{
	int e = errno;
	Dl_info di;
	struct link_map *lm = NULL;
	pthread_mutex_lock(&mu);
	pagesize = (size_t)sysconf(_SC_PAGESIZE);
	if (dladdr1((void *)cr_rebind_init, &di, (void **)&lm, RTLD_DL_LINKMAP) && lm)
		self = (struct objid){(uintptr_t)lm->l_addr, (uintptr_t)lm->l_ld};
	for (size_t i = 0; i < NNAMES; i++)
		targets[i] = dlsym(RTLD_DEFAULT, names[i]);
	int ok = 0;
#ifdef DLFO_STRUCT_HAS_EH_DBASE
	*(void **)&find_object = dlsym(RTLD_DEFAULT, "_dl_find_object");
	ok = find_object != NULL;
#endif
	if (!ok) {
		cr_logmsg(CR_LL_INFO,
			  "this C library has no _dl_find_object (glibc 2.35): objects "
			  "loaded with RTLD_DEEPBIND are not rebound and bypass connroute");
	} else {
		/* The hooks work in every state: every RTLD_DEEPBIND load made
		 * before now (another library's constructor) was recorded. No
		 * other object is looked at: a scan of every object's
		 * relocations would cost each process start about a
		 * millisecond, for loads no hook saw (there are none). */
		for (int i = 0; i < npending; i++)
			rebind_root_locked(pending[i]);
		npending = 0;
		armed = 1;
	}
	pthread_mutex_unlock(&mu);
	pthread_atfork(atfork_prepare, atfork_release, atfork_release);
	errno = e;
}
