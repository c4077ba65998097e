/* connroute: per-fd records of pre-connect socket state; see sockrec.h. */
#include <stdatomic.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <pthread.h>

#include "fdpages.h"
#include "real.h"
#include "fdtab.h"
#include "sockrec.h"

#define MAXOPT 8
#define MAXVAL 16

struct rec {
	uint64_t ino;
	uint8_t nopts;
	uint8_t epolled;
	uint8_t overflow; /* an option we could not record */
	uint8_t shared;   /* dup'ed: another fd shares the open file */
	struct {
		int level, name;
		uint8_t len;
		uint8_t val[MAXVAL];
	} opt[MAXOPT];
};

static struct cr_fdpages pages;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static struct rec *rec_of(int fd, int create)
{
	return cr_fdpages_at(&pages, sizeof(struct rec), fd, create);
}

/* The record for FD's current socket, reset if it belonged to another. */
static struct rec *current(int fd, uint64_t ino)
{
	struct rec *r = rec_of(fd, 1);
	if (r && r->ino != ino) {
		memset(r, 0, sizeof(*r));
		r->ino = ino;
	}
	return r;
}

void cr_sockrec_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	uint64_t ino = cr_fd_inode(fd);
	if (!ino)
		return;
	pthread_mutex_lock(&mu);
	struct rec *r = current(fd, ino);
	if (r) {
		int i;
		for (i = 0; i < r->nopts; i++)
			if (r->opt[i].level == level && r->opt[i].name == name)
				break;
		if (len > MAXVAL || !val || (i == r->nopts && r->nopts == MAXOPT)) {
			r->overflow = 1;
		} else {
			if (i == r->nopts)
				r->nopts++;
			r->opt[i].level = level;
			r->opt[i].name = name;
			r->opt[i].len = (uint8_t)len;
			memcpy(r->opt[i].val, val, len);
		}
	}
	pthread_mutex_unlock(&mu);
}

/* Sets one flag on FD's current record. */
static void mark(int fd, int epolled)
{
	uint64_t ino = cr_fd_inode(fd);
	if (!ino)
		return;
	pthread_mutex_lock(&mu);
	struct rec *r = current(fd, ino);
	if (r) {
		if (epolled)
			r->epolled = 1;
		else
			r->shared = 1;
	}
	pthread_mutex_unlock(&mu);
}

void cr_sockrec_epoll_add(int fd)
{
	mark(fd, 1);
}

void cr_sockrec_forget(int fd)
{
	struct rec *r = rec_of(fd, 0);
	if (r && r->ino) {
		pthread_mutex_lock(&mu);
		memset(r, 0, sizeof(*r));
		pthread_mutex_unlock(&mu);
	}
}

void cr_sockrec_shared(int fd)
{
	mark(fd, 0);
}

/* Options that mean the same set after the handshake as before it. Window
 * scaling (SO_RCVBUF), MSS, device/mark routing, Fast Open act at SYN time:
 * a socket that had them set is connected cold, as the app asked. */
static int replayable(int level, int name)
{
	switch (level) {
	case SOL_SOCKET:
		return name == SO_KEEPALIVE || name == SO_SNDBUF || name == SO_LINGER ||
		       name == SO_RCVTIMEO || name == SO_SNDTIMEO || name == SO_PRIORITY ||
		       name == SO_OOBINLINE || name == SO_REUSEADDR || name == SO_REUSEPORT ||
		       name == SO_RCVLOWAT || name == SO_SNDLOWAT;
	case IPPROTO_TCP:
		return name == TCP_NODELAY || name == TCP_KEEPIDLE || name == TCP_KEEPINTVL ||
		       name == TCP_KEEPCNT || name == TCP_USER_TIMEOUT || name == TCP_QUICKACK ||
		       name == TCP_CORK || name == TCP_NOTSENT_LOWAT || name == TCP_CONGESTION;
	case IPPROTO_IP: return name == IP_TOS;
	case IPPROTO_IPV6: return name == IPV6_TCLASS;
	default: return 0;
	}
}

int cr_sockrec_substitutable(int fd, uint64_t ino)
{
	struct rec *r = rec_of(fd, 0);
	int ok = 1;
	if (!r)
		return 1;
	pthread_mutex_lock(&mu);
	if (r->ino == ino) {
		ok = !r->epolled && !r->shared && !r->overflow;
		for (int i = 0; ok && i < r->nopts; i++)
			ok = replayable(r->opt[i].level, r->opt[i].name);
	}
	pthread_mutex_unlock(&mu);
	return ok;
}

int cr_sockrec_replay(int fd, uint64_t ino, int to)
{
	struct rec copy, *r = rec_of(fd, 0);
	if (!r)
		return 0;
	pthread_mutex_lock(&mu);
	copy = *r;
	pthread_mutex_unlock(&mu);
	if (copy.ino != ino)
		return 0;
	if (copy.overflow)
		return -1;
	for (int i = 0; i < copy.nopts; i++) {
		/* SO_REUSEADDR/PORT only matter before bind; the warm socket is
		 * already connected. Anything else the kernel refuses now means
		 * the substitution would not be faithful. */
		if (copy.opt[i].level == SOL_SOCKET &&
		    (copy.opt[i].name == SO_REUSEADDR || copy.opt[i].name == SO_REUSEPORT))
			continue;
		if (cr_real.setsockopt(to, copy.opt[i].level, copy.opt[i].name, copy.opt[i].val,
				       copy.opt[i].len) != 0)
			return -1;
	}
	return 0;
}
