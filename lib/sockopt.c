/* connroute: a lane's socket options on a socket; see sockopt.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>

#include "real.h"
#include "lane.h"
#include "log.h"
#include "sockopt.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* One warning per (lane, option), keyed by the lane's stable id (an index
 * shifts across reloads and would warn again, or never, for another lane).
 * One warning per (lane, option) for options the kernel refuses (SO_MARK
 * without CAP_NET_ADMIN...): the config asked, we say once that it could not
 * be done, and the connection goes ahead. */
static atomic_uint warned[CR_MAX_LANE_IDS];

enum { W_NODELAY = 1, W_KEEPALIVE = 2, W_TOS = 4, W_PRIO = 8, W_MARK = 16, W_BIND = 32 };

static void warn_once(const struct cr_lane *l, unsigned bit, const char *what, int err)
{
	unsigned old = atomic_fetch_or(&warned[(unsigned)l->id % CR_MAX_LANE_IDS], bit);
	if (!(old & bit))
		cr_logmsg(CR_LL_WARN, "lane %s: cannot set %s: %s (further failures not logged)",
			  l->name, what, strerror(err));
}

static void setopt(int fd, const struct cr_lane *l, int level, int name, int val, unsigned bit,
		   const char *what)
{
	if (cr_real.setsockopt(fd, level, name, &val, sizeof(val)) != 0)
		warn_once(l, bit, what, errno);
}

int cr_sockopt_unbound(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ((struct sockaddr_in *)&ss)->sin_port == 0 &&
		       ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (ss.ss_family == AF_INET6)
		return ((struct sockaddr_in6 *)&ss)->sin6_port == 0 &&
		       IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr);
	return 0;
}

void cr_sockopt_apply(int fd, const struct cr_lane *l, int family, int allow_bind)
{
	int saved = errno;
	if (l->nodelay >= 0)
		setopt(fd, l, IPPROTO_TCP, TCP_NODELAY, l->nodelay, W_NODELAY, "TCP_NODELAY");
	if (l->keepalive_idle_s > 0) {
		setopt(fd, l, SOL_SOCKET, SO_KEEPALIVE, 1, W_KEEPALIVE, "SO_KEEPALIVE");
		setopt(fd, l, IPPROTO_TCP, TCP_KEEPIDLE, l->keepalive_idle_s, W_KEEPALIVE,
		       "TCP_KEEPIDLE");
	}
	if (l->keepalive_interval_s > 0)
		setopt(fd, l, IPPROTO_TCP, TCP_KEEPINTVL, l->keepalive_interval_s, W_KEEPALIVE,
		       "TCP_KEEPINTVL");
	if (l->keepalive_count > 0)
		setopt(fd, l, IPPROTO_TCP, TCP_KEEPCNT, l->keepalive_count, W_KEEPALIVE,
		       "TCP_KEEPCNT");
	if (l->tos >= 0) {
		if (family == AF_INET6)
			setopt(fd, l, IPPROTO_IPV6, IPV6_TCLASS, l->tos, W_TOS, "IPV6_TCLASS");
		/* A dual-stack socket may still carry IPv4 (mapped addresses). */
		if (family == AF_INET || family == AF_INET6) {
			int v = l->tos, e = 0;
			if (cr_real.setsockopt(fd, IPPROTO_IP, IP_TOS, &v, sizeof(v)) != 0)
				e = errno;
			if (e && family == AF_INET)
				warn_once(l, W_TOS, "IP_TOS", e);
		}
	}
	if (l->priority >= 0)
		setopt(fd, l, SOL_SOCKET, SO_PRIORITY, (int)l->priority, W_PRIO, "SO_PRIORITY");
	if (l->mark >= 0)
		setopt(fd, l, SOL_SOCKET, SO_MARK, (int)(uint32_t)l->mark, W_MARK, "SO_MARK");
	if (allow_bind && l->bind_set && l->bind_addr.ss_family == family &&
	    cr_sockopt_unbound(fd)) {
		int one = 1;
		(void)cr_real.setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
					 sizeof(one));
		if (bind(fd, (const struct sockaddr *)&l->bind_addr, l->bind_len) != 0)
			warn_once(l, W_BIND, "the source address (bind)", errno);
	}
	errno = saved;
}
