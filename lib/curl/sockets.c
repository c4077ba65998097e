/* connroute: libcurl lanes — libcurl's socket callbacks: warm sockets
 * (opensocket), the lane's socket options (sockopt), closes (closesocket),
 * and the count of connections each perform made.
 *
 * Counting (docs/metrics.md): every socket libcurl makes for a connection
 * passes the sockopt callback once (warm or not) and is counted opened when
 * the perform attempt that made it returns, with libcurl's connect time; it
 * is counted closed once when libcurl closes it: by the fd table's release
 * for a warm socket (the route layer tracks it), here for any other. */
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base.h"
#include "curl_int.h"
#include "fdtab.h"
#include "lane.h"
#include "limit.h"
#include "metrics.h"
#include "route.h"
#include "warm.h"

/* Installed for lanes with warm pools or outlier ejection. Warm pools for
 * libcurl: a new connection to a destination the lane keeps
 * warm sockets for gets one (libcurl then skips its connect: the sockopt
 * callback answers CURL_SOCKOPT_ALREADY_CONNECTED); otherwise the socket is
 * made exactly as libcurl's default would. */
curl_socket_t cr_curl_sockets_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct cr_curl_easy *e = clientp;
	struct cr_dest d;
	/* e->lane is NULL outside a perform of ours (a multi transfer of a
	 * handle nobody gave back): libcurl's default socket. */
	if (e->lane && purpose == CURLSOCKTYPE_IPCXN && a->socktype == SOCK_STREAM &&
	    (a->protocol == 0 || a->protocol == IPPROTO_TCP) &&
	    cr_dest_from_sockaddr(&d, &a->addr, a->addrlen) == 0) {
		/* An ejected address: libcurl goes on to the name's next one
		 * (docs/INTERNALS.md, "Resilience"). */
		if (e->lane->health && cr_curl_health_skip(e, &d))
			return CURL_SOCKET_BAD;
		if (!cr_warm_lane_has_pools(e->lane))
			return socket(a->family, a->socktype, a->protocol);
		uint32_t slot;
		uint64_t ino;
		cr_warm_kick();
		int fd = cr_warm_take(e->lane, &d, &slot, &ino);
		if (fd >= 0) {
			struct cr_fdinfo info = {.slot = slot,
						 .lane = e->lane->id,
						 .flags = CR_FDF_ROUTED | CR_FDF_AGAIN0,
						 .ino = ino};
			if (cr_fdtab_put(fd, &info) != 0)
				cr_limit_release(slot);
			e->warm_fd = fd;
			return fd;
		}
		cr_warm_note(e->lane, &d, 0);
	}
	return socket(a->family, a->socktype, a->protocol);
}

/* Counts libcurl's connection closes for the lane's active gauge. libcurl
 * copies the callback and its data into each connection when it is made,
 * so the data is the lane id, never a pointer that could go stale. */
__thread unsigned long cr_curl_tls_closes;

int cr_curl_sockets_close(void *clientp, curl_socket_t fd)
{
	struct cr_fdinfo info;
	cr_curl_tls_closes++;
	if (!cr_fdtab_any() || !cr_fdtab_peek(fd, &info))
		cr_m_conn_closed((int)(intptr_t)clientp - 1);
	return cr_route_close_fd(fd);
}

/* The lane's socket options, then (chained) the app's callback. */
int cr_curl_sockets_opt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	struct cr_curl_easy *e = clientp;
	int r = CURL_SOCKOPT_OK;
	if (!e->lane) /* outside a perform of ours: the app's part only */
		return e->app_sockopt ? e->app_sockopt(e->app_sockopt_data, fd, purpose)
				      : CURL_SOCKOPT_OK;
	if (purpose == CURLSOCKTYPE_IPCXN)
		e->new_conns++; /* before the app's callback: libcurl closes a refused one */
	if (purpose == CURLSOCKTYPE_IPCXN && fd == e->warm_fd) {
		/* Served from the warm pool: connected, with the lane's options
		 * already. The app's callback still sees its socket. */
		e->warm_fd = -1;
		e->warm_used = 1;
		if (e->app_sockopt &&
		    e->app_sockopt(e->app_sockopt_data, fd, purpose) == CURL_SOCKOPT_ERROR)
			return CURL_SOCKOPT_ERROR;
		/* libcurl 7.87-7.88 connect() anyway (curl issue 10626): the
		 * connect hook answers that one with 0 (CR_FDF_AGAIN0). */
		return e->lib->already_connected_ok ? CURL_SOCKOPT_ALREADY_CONNECTED
						    : CURL_SOCKOPT_OK;
	}
	if (e->app_sockopt)
		r = e->app_sockopt(e->app_sockopt_data, fd, purpose);
	if (r != CURL_SOCKOPT_OK || purpose != CURLSOCKTYPE_IPCXN)
		return r;
	if (!e->lane->passthrough) {
		/* TCP only, as on the raw connect path (docs/INTERNALS.md, "Raw
		 * connect"): libcurl passes its UDP (TFTP) and AF_UNIX
		 * (--unix-socket) sockets here too, where the TCP options fail
		 * and would print a warning on the app's stderr. */
		int dom = 0, proto = 0;
		socklen_t dl = sizeof(dom), pl = sizeof(proto);
		if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) == 0 &&
		    proto == IPPROTO_TCP && getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl) == 0)
			cr_sockopt_apply(fd, e->lane, dom, !e->app_bind);
	}
	/* A new connection: the response-header deadline armed at the start
	 * assumed a reused one; give the connect its own time first. */
	if (e->rht_ms > 0 && !e->rht_ref_ns && !e->rht_relaxed) {
		long d = (long)((cr_now_ns() - e->perform_t0_ns) / 1000000ull) +
			 (e->ct_ms > 0 ? e->ct_ms : 0) + e->rht_ms;
		cr_curl_perform_set_timeout(e, cr_curl_min_nonzero(e->rt_ms, d));
	}
	return r;
}

void cr_curl_sockets_count(struct cr_curl_easy *e)
{
	int n = e->new_conns;
	if (n <= 0)
		return;
	e->new_conns = 0;
	/* libcurl reports one connect time per transfer (its last
	 * connection's): the others are counted without a duration. */
	curl_off_t cns = 0;
	e->lib->fns.easy_getinfo(e->h, CURLINFO_CONNECT_TIME_T, &cns);
	cr_m_conn_opened(e->lane->id, (uint64_t)cns * 1000ull, 1);
	while (--n > 0)
		cr_m_conn_opened(e->lane->id, 0, 1);
}
