/* connroute: a sparse table indexed by fd number, the storage of both fd
 * tables (fdtab.c, sockrec.c).
 *
 * 1024 pages of 1024 entries; a page is mmap'ed (zero-filled) on first use
 * and never freed, so a pointer to an entry stays valid for the life of the
 * process and lookups need no lock. mmap rather than malloc: these are
 * filled from hooks, where the host's allocator may be in any state.
 * fds >= CR_FDPAGES_MAX_FD have no entry (callers then do not track them). */
#ifndef CR_FDPAGES_H
#define CR_FDPAGES_H

#include <stdatomic.h>
#include <stddef.h>

#define CR_FDPAGE_BITS    10
#define CR_FDPAGE_N       (1u << CR_FDPAGE_BITS)
#define CR_FDPAGES        1024u
#define CR_FDPAGES_MAX_FD (CR_FDPAGES * CR_FDPAGE_N)

struct cr_fdpages {
	void *_Atomic page[CR_FDPAGES];
};

/* FD's entry (ESIZE bytes each) in T; with CREATE its page is mapped if
 * needed. NULL when FD is out of range, or has no page and !CREATE (or the
 * mapping failed). */
void *cr_fdpages_at(struct cr_fdpages *t, size_t esize, int fd, int create);

/* Page PI (entries for fds PI << CR_FDPAGE_BITS ...), NULL if never mapped. */
static inline void *cr_fdpages_page(struct cr_fdpages *t, unsigned pi)
{
	return atomic_load_explicit(&t->page[pi], memory_order_acquire);
}

#endif
