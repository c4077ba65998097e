/* connroute: sparse fd-indexed storage; see fdpages.h. */
#include <sys/mman.h>

#include "fdpages.h"

void *cr_fdpages_at(struct cr_fdpages *t, size_t esize, int fd, int create)
{
	unsigned u = (unsigned)fd, pi = u >> CR_FDPAGE_BITS;
	if (fd < 0 || u >= CR_FDPAGES_MAX_FD)
		return NULL;
	char *p = cr_fdpages_page(t, pi);
	if (!p && create) {
		void *m = mmap(NULL, CR_FDPAGE_N * esize, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		void *expect = NULL;
		if (m == MAP_FAILED)
			return NULL;
		/* Two threads may race to map the page: one wins, the other
		 * unmaps its copy and uses the winner's. */
		if (atomic_compare_exchange_strong(&t->page[pi], &expect, m)) {
			p = m;
		} else {
			munmap(m, CR_FDPAGE_N * esize);
			p = expect;
		}
	}
	return p ? p + (size_t)(u & (CR_FDPAGE_N - 1)) * esize : NULL;
}
