/* connroute: fd table; see fdtab.h for the ownership rules. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "fdpages.h"
#include "fdtab.h"

#define MAX_FD CR_FDPAGES_MAX_FD

/* word: bit 63 tracked | bits 48..55 flags | bits 32..47 lane | bits 0..31 slot */
#define W_TRACKED (1ull << 63)

struct ent {
	_Atomic uint64_t word;
	_Atomic uint64_t ino;
};

static struct cr_fdpages pages;
atomic_long cr_fdtab_count;

static uint64_t pack(const struct cr_fdinfo *i)
{
	return W_TRACKED | ((uint64_t)(i->flags & 0xff) << 48) |
	       ((uint64_t)(i->lane & ((1u << CR_FDTAB_LANE_BITS) - 1)) << 32) | i->slot;
}

static void unpack(uint64_t w, struct ent *e, struct cr_fdinfo *out)
{
	out->slot = (uint32_t)w;
	out->lane = (int)((w >> 32) & ((1u << CR_FDTAB_LANE_BITS) - 1));
	out->flags = (unsigned)((w >> 48) & 0xff);
	out->ino = atomic_load_explicit(&e->ino, memory_order_relaxed);
}

static struct ent *slot_of(int fd, int create)
{
	return cr_fdpages_at(&pages, sizeof(struct ent), fd, create);
}

int cr_fdtab_put(int fd, const struct cr_fdinfo *info)
{
	struct ent *e;
	if (fd < 0 || (unsigned)fd >= MAX_FD)
		return -EBADF;
	e = slot_of(fd, 1);
	if (!e)
		return -ENOMEM;
	atomic_store_explicit(&e->ino, info->ino, memory_order_relaxed);
	uint64_t old = atomic_exchange_explicit(&e->word, pack(info), memory_order_acq_rel);
	if (!(old & W_TRACKED))
		atomic_fetch_add_explicit(&cr_fdtab_count, 1, memory_order_relaxed);
	return 0;
}

static int take_ent(struct ent *e, struct cr_fdinfo *out)
{
	uint64_t w;
	if (!(atomic_load_explicit(&e->word, memory_order_relaxed) & W_TRACKED))
		return 0;
	w = atomic_exchange_explicit(&e->word, 0, memory_order_acq_rel);
	if (!(w & W_TRACKED))
		return 0;
	atomic_fetch_sub_explicit(&cr_fdtab_count, 1, memory_order_relaxed);
	unpack(w, e, out);
	return 1;
}

int cr_fdtab_take(int fd, struct cr_fdinfo *out)
{
	struct ent *e = slot_of(fd, 0);
	return e ? take_ent(e, out) : 0;
}

int cr_fdtab_peek(int fd, struct cr_fdinfo *out)
{
	struct ent *e = slot_of(fd, 0);
	uint64_t w;
	if (!e)
		return 0;
	w = atomic_load_explicit(&e->word, memory_order_acquire);
	if (!(w & W_TRACKED))
		return 0;
	unpack(w, e, out);
	return 1;
}

void cr_fdtab_take_range(unsigned first, unsigned last,
			 void (*fn)(int fd, const struct cr_fdinfo *info, void *ctx), void *ctx)
{
	if (first >= MAX_FD || first > last)
		return;
	if (last >= MAX_FD)
		last = MAX_FD - 1;
	for (unsigned pi = first >> CR_FDPAGE_BITS; pi <= last >> CR_FDPAGE_BITS; pi++) {
		struct ent *p = cr_fdpages_page(&pages, pi);
		if (!p)
			continue;
		unsigned lo = pi << CR_FDPAGE_BITS, hi = lo + CR_FDPAGE_N - 1;
		if (lo < first)
			lo = first;
		if (hi > last)
			hi = last;
		for (unsigned fd = lo; fd <= hi; fd++) {
			struct cr_fdinfo info;
			if (take_ent(&p[fd & (CR_FDPAGE_N - 1)], &info) && fn)
				fn((int)fd, &info, ctx);
		}
	}
}

void cr_fdtab_reap_slot(uint32_t slot, void (*fn)(int fd, const struct cr_fdinfo *info, void *ctx),
			void *ctx)
{
	for (unsigned pi = 0; pi < CR_FDPAGES; pi++) {
		struct ent *p = cr_fdpages_page(&pages, pi);
		if (!p)
			continue;
		for (unsigned i = 0; i < CR_FDPAGE_N; i++) {
			struct ent *e = &p[i];
			uint64_t w = atomic_load_explicit(&e->word, memory_order_acquire);
			int fd = (int)((pi << CR_FDPAGE_BITS) | i);
			if (!(w & W_TRACKED) || (uint32_t)w != slot)
				continue;
			if (cr_fd_inode(fd) == atomic_load_explicit(&e->ino, memory_order_relaxed))
				continue;
			/* Only take it if nobody re-tracked the fd meanwhile. */
			if (atomic_compare_exchange_strong(&e->word, &w, 0)) {
				struct cr_fdinfo info;
				atomic_fetch_sub_explicit(&cr_fdtab_count, 1, memory_order_relaxed);
				unpack(w, e, &info);
				if (fn)
					fn(fd, &info, ctx);
			}
		}
	}
}

static _Atomic cr_fdtab_release_fn release_fn;

void cr_fdtab_set_release(cr_fdtab_release_fn fn)
{
	atomic_store(&release_fn, fn);
}

int cr_fdtab_settle(int fd)
{
	struct cr_fdinfo info;
	if (!cr_fdtab_take(fd, &info))
		return 0;
	cr_fdtab_release_fn fn = atomic_load(&release_fn);
	if (fn)
		fn(fd, &info, NULL);
	return 1;
}

void cr_fdtab_reset_child(void)
{
	for (unsigned pi = 0; pi < CR_FDPAGES; pi++) {
		struct ent *p = cr_fdpages_page(&pages, pi);
		for (unsigned i = 0; p && i < CR_FDPAGE_N; i++)
			atomic_store_explicit(&p[i].word, 0, memory_order_relaxed);
	}
	atomic_store(&cr_fdtab_count, 0);
}
