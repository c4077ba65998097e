/* connroute: libcurl's easy interface.
 *
 * The real functions are those of the libcurl the CALLER uses, not
 * RTLD_NEXT's: a Python extension may have loaded its own libcurl privately
 * (RTLD_LOCAL: invisible to RTLD_NEXT), and a process may hold two builds
 * (OpenSSL and GnuTLS flavours) whose handles must never cross. A handle we
 * know maps to its library directly; otherwise the caller's object (dladdr)
 * and its DT_NEEDED entries decide, cached per object. */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>

#include "curlpool.h"
#include "engine.h"
#include "log.h"
#include "shim.h"

/* ----------------------------------------------------- library resolution */

static int is_curl_name(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	return strncmp(base, "libcurl.so", 10) == 0 || strncmp(base, "libcurl-", 8) == 0;
}

static struct cr_curllib *register_path(const char *path, const void *base)
{
	struct cr_curllib *lib = cr_curl_lib_find(base);
	if (lib)
		return lib;
	void *dl = dlopen(path, RTLD_NOLOAD | RTLD_LAZY);
	if (!dl)
		return NULL;
	struct cr_curlfns f;
	memset(&f, 0, sizeof(f));
#define SYM(field, name) (*(void **)&f.field = dlsym(dl, name))
	SYM(easy_init, "curl_easy_init");
	SYM(easy_setopt, "curl_easy_setopt");
	SYM(easy_perform, "curl_easy_perform");
	SYM(easy_cleanup, "curl_easy_cleanup");
	SYM(easy_reset, "curl_easy_reset");
	SYM(easy_duphandle, "curl_easy_duphandle");
	SYM(easy_getinfo, "curl_easy_getinfo");
	SYM(share_init, "curl_share_init");
	SYM(share_setopt, "curl_share_setopt");
	SYM(share_cleanup, "curl_share_cleanup");
	SYM(version_info, "curl_version_info");
#undef SYM
	/* dlsym on a library handle searches that library and its
	 * dependencies, in that order: for the curl_* names that is the
	 * library itself, never our hooks. Refuse a table that resolved to us. */
	Dl_info self, got;
	if (!f.easy_init || !f.easy_setopt || !f.easy_perform || !f.easy_cleanup || !f.easy_reset ||
	    !f.easy_duphandle || !f.easy_getinfo || !f.share_init || !f.share_setopt || !f.share_cleanup)
		return NULL;
	if (dladdr((void *)register_path, &self) && dladdr(*(void **)&f.easy_init, &got) &&
	    self.dli_fbase == got.dli_fbase)
		return NULL;
	return cr_curl_lib_add(base, &f, path);
}

struct find_ctx {
	const char *soname;  /* match this basename, or any libcurl if NULL */
	char path[512];
	const void *base;
};

static int find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct find_ctx *c = arg;
	const char *name = info->dlpi_name;
	(void)size;
	if (!name || !*name || !is_curl_name(name))
		return 0;
	if (c->soname) {
		const char *b = strrchr(name, '/');
		b = b ? b + 1 : name;
		if (strcmp(b, c->soname) != 0)
			return 0;
	}
	snprintf(c->path, sizeof(c->path), "%s", name);
	/* The base dladdr reports for an address inside this object. */
	for (int i = 0; i < info->dlpi_phnum; i++) {
		if (info->dlpi_phdr[i].p_type == PT_LOAD) {
			c->base = (const void *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr -
						 (info->dlpi_phdr[i].p_offset));
			break;
		}
	}
	return 1;
}

static struct cr_curllib *register_loaded(const char *soname)
{
	struct find_ctx c = {.soname = soname};
	if (!dl_iterate_phdr(find_cb, &c))
		return NULL;
	return register_path(c.path, c.base);
}

/* The libcurl a given object links against, from its DT_NEEDED. */
static struct cr_curllib *lib_needed_by(struct link_map *lm)
{
	const ElfW(Dyn) *dyn = lm ? lm->l_ld : NULL;
	const char *strtab = NULL;
	if (!dyn)
		return NULL;
	for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++)
		if (d->d_tag == DT_STRTAB) {
			/* ld.so relocates it in place on most targets; not on all. */
			ElfW(Addr) a = d->d_un.d_ptr;
			strtab = (const char *)(a < lm->l_addr ? a + lm->l_addr : a);
		}
	if (!strtab)
		return NULL;
	for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
		if (d->d_tag != DT_NEEDED)
			continue;
		const char *n = strtab + d->d_un.d_val;
		if (is_curl_name(n)) {
			struct cr_curllib *l = register_loaded(n);
			if (l)
				return l;
		}
	}
	return NULL;
}

#define CALLER_CACHE 16
static struct {
	const void *obj;
	struct cr_curllib *lib;
} caller_cache[CALLER_CACHE];
static atomic_int caller_n;
static pthread_mutex_t caller_mu = PTHREAD_MUTEX_INITIALIZER;

/* A call site always calls the same libcurl: remember the last one per
 * thread, so curl_easy_init does not pay dladdr on every call. */
static __thread const void *tls_last_ret;
static __thread struct cr_curllib *tls_last_lib;

static struct cr_curllib *lib_for_caller_slow(const void *ret);

static struct cr_curllib *lib_for_caller(const void *ret)
{
	if (ret == tls_last_ret && tls_last_lib)
		return tls_last_lib;
	struct cr_curllib *lib = lib_for_caller_slow(ret);
	if (lib) {
		tls_last_ret = ret;
		tls_last_lib = lib;
	}
	return lib;
}

static struct cr_curllib *lib_for_caller_slow(const void *ret)
{
	Dl_info di;
	struct link_map *lm = NULL;
	struct cr_curllib *lib = NULL;
	if (!dladdr1(ret, &di, (void **)&lm, RTLD_DL_LINKMAP))
		di.dli_fbase = NULL;
	int n = atomic_load_explicit(&caller_n, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (caller_cache[i].obj == di.dli_fbase)
			return caller_cache[i].lib;

	if (di.dli_fbase && di.dli_fname && is_curl_name(di.dli_fname))
		lib = register_path(di.dli_fname, di.dli_fbase); /* libcurl calling itself */
	if (!lib && lm)
		lib = lib_needed_by(lm);
	if (!lib) {
		/* The caller does not link libcurl directly (a wrapper, a
		 * function pointer from dlsym): the global one, else any. */
		void *next = dlsym(RTLD_NEXT, "curl_easy_init");
		Dl_info ni;
		if (next && dladdr(next, &ni) && ni.dli_fname)
			lib = register_path(ni.dli_fname, ni.dli_fbase);
		if (!lib)
			lib = register_loaded(NULL);
	}
	if (lib && di.dli_fbase) {
		pthread_mutex_lock(&caller_mu);
		n = atomic_load(&caller_n);
		if (n < CALLER_CACHE) {
			caller_cache[n].obj = di.dli_fbase;
			caller_cache[n].lib = lib;
			atomic_store_explicit(&caller_n, n + 1, memory_order_release);
		}
		pthread_mutex_unlock(&caller_mu);
	}
	return lib;
}

static inline struct cr_curllib *lib_for(CURL *h, const void *ret)
{
	struct cr_curllib *lib = h ? cr_curl_lib_of(h) : NULL;
	return lib ? lib : lib_for_caller(ret);
}

static inline int active(void)
{
	return atomic_load_explicit(&cr_state, memory_order_relaxed) == CR_ST_READY &&
	       (!cr_in_shim || cr_shim_guard_left());
}

/* ------------------------------------------------------------------ hooks */

HOOK(CURL *, curl_easy_init, (void))
{
	struct cr_curllib *lib = lib_for_caller(__builtin_return_address(0));
	if (!lib)
		return NULL;
	if (!active())
		return cr_curl_lib_fns(lib)->easy_init();
	return cr_curl_init(lib);
}

HOOK(CURLcode, curl_easy_setopt, (CURL *h, CURLoption opt, ...))
{
	va_list ap;
	long l = 0;
	void *p = NULL;
	curl_off_t o = 0;
	/* The option number says the argument's type (curl.h's CURLOPTTYPE_*). */
	va_start(ap, opt);
	if (opt < CURLOPTTYPE_OBJECTPOINT)
		l = va_arg(ap, long);
	else if (opt < CURLOPTTYPE_OFF_T)
		p = va_arg(ap, void *);
	else if (opt < CURLOPTTYPE_BLOB)
		o = va_arg(ap, curl_off_t);
	else
		p = va_arg(ap, void *);
	va_end(ap);
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return CURLE_FAILED_INIT;
	if (!active()) {
		const struct cr_curlfns *f = cr_curl_lib_fns(lib);
		if (opt < CURLOPTTYPE_OBJECTPOINT)
			return f->easy_setopt(h, opt, l);
		if (opt < CURLOPTTYPE_OFF_T || opt >= CURLOPTTYPE_BLOB)
			return f->easy_setopt(h, opt, p);
		return f->easy_setopt(h, opt, o);
	}
	return cr_curl_setopt(lib, h, opt, p, l, o);
}

HOOK(CURLcode, curl_easy_perform, (CURL *h))
{
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return CURLE_FAILED_INIT;
	if (!active())
		return cr_curl_lib_fns(lib)->easy_perform(h);
	/* libcurl's own connect() calls are the lane's business already
	 * (socket options through the sockopt callback, limits per transfer):
	 * the raw connect hook stays out of them. */
	cr_in_shim = 1;
	CURLcode rc = cr_curl_perform(lib, h);
	cr_in_shim = 0;
	return rc;
}

HOOK(void, curl_easy_cleanup, (CURL *h))
{
	if (!h)
		return;
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return;
	if (!active()) {
		cr_curl_lib_fns(lib)->easy_cleanup(h);
		return;
	}
	cr_curl_cleanup(lib, h);
}

HOOK(void, curl_easy_reset, (CURL *h))
{
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return;
	if (!active()) {
		cr_curl_lib_fns(lib)->easy_reset(h);
		return;
	}
	cr_curl_reset(lib, h);
}

HOOK(CURL *, curl_easy_duphandle, (CURL *h))
{
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return NULL;
	if (!active())
		return cr_curl_lib_fns(lib)->easy_duphandle(h);
	return cr_curl_duphandle(lib, h);
}
