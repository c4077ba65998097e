/* connroute: which libcurl the caller uses.
 *
 * The real functions are those of the libcurl the CALLER uses, not
 * RTLD_NEXT's: a Python extension may have loaded its own libcurl privately
 * (RTLD_LOCAL: invisible to RTLD_NEXT), and a process may hold two builds
 * (OpenSSL and GnuTLS flavours) whose handles must never cross. The caller's
 * object (dladdr) and its DT_NEEDED entries decide, then RTLD_NEXT, then any
 * loaded libcurl; the answer is cached per object (docs/INTERNALS.md,
 * "libcurl lanes").
 *
 * Objects come and go (dlopen, dlclose): a plugin loaded where an unloaded
 * one was must never get the old one's answer, so every cached answer is
 * dated by the loader's count of unloads (dl_iterate_phdr's dlpi_subs) and
 * dropped once an unload happened. A libcurl we use is pinned
 * (RTLD_NODELETE): its functions, handles and pools stay valid for the life
 * of the process, and its address is never another object's. */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "curl_find.h"
#include "real.h"

/* Each thread remembers its last answer: a call site always calls the same
 * libcurl while the object it is in stays loaded. */
static __thread const void *last_ret;
static __thread struct cr_curllib *last_lib;
static __thread int last_self;
static __thread unsigned long long last_subs;

static int subs_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs))
		*(unsigned long long *)arg = info->dlpi_subs;
	return 1; /* the count is the loader's, the same in every entry */
}

/* How many objects were unloaded so far: it only grows. */
static unsigned long long unloads(void)
{
	unsigned long long subs = 0;
	dl_iterate_phdr(subs_cb, &subs);
	return subs;
}

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
	/* Pinned: never unloaded from now on, even once the plugin that
	 * brought it in is gone; our handles, shares and exit handler call
	 * into it until the process ends. Never through the dlopen hook. */
	void *dl = cr_real.dlopen(path, RTLD_NOLOAD | RTLD_NODELETE | RTLD_LAZY);
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
	SYM(easy_upkeep, "curl_easy_upkeep"); /* optional, like these two */
	SYM(easy_header, "curl_easy_header");
	SYM(easy_nextheader, "curl_easy_nextheader");
	SYM(multi_init, "curl_multi_init");
	SYM(multi_add_handle, "curl_multi_add_handle");
	SYM(multi_remove_handle, "curl_multi_remove_handle");
	SYM(multi_cleanup, "curl_multi_cleanup");
	SYM(global_cleanup, "curl_global_cleanup");
	SYM(multi_setopt, "curl_multi_setopt");
	SYM(multi_perform, "curl_multi_perform");
	SYM(multi_socket_action, "curl_multi_socket_action");
	SYM(multi_socket_all, "curl_multi_socket_all"); /* optional, like these two */
	SYM(multi_socket, "curl_multi_socket");
	SYM(multi_poll, "curl_multi_poll");
	SYM(multi_wait, "curl_multi_wait");
	SYM(multi_timeout, "curl_multi_timeout");
	SYM(multi_info_read, "curl_multi_info_read");
	SYM(multi_fdset, "curl_multi_fdset");
#undef SYM
	/* dlsym on a library handle searches that library and its
	 * dependencies, in that order: for the curl_* names that is the
	 * library itself, never our hooks. Refuse a table that resolved to us. */
	Dl_info self, got;
	if (!f.easy_init || !f.easy_setopt || !f.easy_perform || !f.easy_cleanup || !f.easy_reset ||
	    !f.easy_duphandle || !f.easy_getinfo || !f.share_init || !f.share_setopt ||
	    !f.share_cleanup || !f.multi_init || !f.multi_add_handle || !f.multi_remove_handle ||
	    !f.multi_cleanup || !f.global_cleanup || !f.multi_setopt || !f.multi_perform ||
	    !f.multi_socket_action || !f.multi_wait || !f.multi_timeout || !f.multi_info_read ||
	    !f.multi_fdset)
		return NULL;
	if (dladdr((void *)register_path, &self) && dladdr(*(void **)&f.easy_init, &got) &&
	    self.dli_fbase == got.dli_fbase)
		return NULL;
	return cr_curl_lib_add(base, &f, path);
}

struct find_ctx {
	const char *soname; /* match this basename, or any libcurl if NULL */
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
/* Answers per calling object (its load address), all from the time when
 * caller_subs objects had been unloaded. */
static struct {
	const void *obj;
	struct cr_curllib *lib;
	int self;
} caller_cache[CALLER_CACHE];
static int caller_n;
static unsigned long long caller_subs;
static pthread_mutex_t caller_mu = PTHREAD_MUTEX_INITIALIZER;

/* SUBS: unloads() read before anything was looked up, so an answer is never
 * dated later than the state it was found in. */
static struct cr_curllib *find_caller(const void *ret, unsigned long long subs, int *self)
{
	Dl_info di;
	struct link_map *lm = NULL;
	struct cr_curllib *lib = NULL;
	if (!dladdr1(ret, &di, (void **)&lm, RTLD_DL_LINKMAP))
		di.dli_fbase = NULL;
	*self = 0;
	pthread_mutex_lock(&caller_mu);
	if (subs > caller_subs) {
		caller_n = 0; /* something was unloaded: forget every answer */
		caller_subs = subs;
	}
	for (int i = 0; subs == caller_subs && i < caller_n; i++)
		if (caller_cache[i].obj == di.dli_fbase) {
			lib = caller_cache[i].lib;
			*self = caller_cache[i].self;
			break;
		}
	pthread_mutex_unlock(&caller_mu);
	if (lib)
		return lib;

	if (di.dli_fbase && di.dli_fname && is_curl_name(di.dli_fname)) {
		lib = register_path(di.dli_fname, di.dli_fbase); /* libcurl calling itself */
		*self = lib != NULL;
	}
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
		if (subs == caller_subs && caller_n < CALLER_CACHE) {
			caller_cache[caller_n].obj = di.dli_fbase;
			caller_cache[caller_n].lib = lib;
			caller_cache[caller_n].self = *self;
			caller_n++;
		}
		pthread_mutex_unlock(&caller_mu);
	}
	return lib;
}

struct cr_curllib *cr_curl_find_caller(const void *ret, int *self)
{
	unsigned long long subs = unloads();
	int me = 0;
	if (ret != last_ret || subs != last_subs || !last_lib) {
		struct cr_curllib *lib = find_caller(ret, subs, &me);
		if (!lib)
			return NULL;
		last_ret = ret;
		last_lib = lib;
		last_self = me;
		last_subs = subs;
	}
	if (self)
		*self = last_self;
	return last_lib;
}
