/* connroute: warm pools; see warm.h for ownership and invariants. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "cfgref.h"
#include "fdtab.h"
#include "limit.h"
#include "log.h"
#include "metrics.h"
#include "ownfd.h"
#include "real.h"
#include "sockopt.h"
#include "sys.h"
#include "thread.h"
#include "warm.h"

#define MAX_POOLS    256
#define MAX_READY    64
#define MAX_PENDING  128
#define ADAPTIVE_CAP 16

atomic_int cr_warm_active;

struct wsock {
	int fd;
	uint32_t slot;
	uint64_t ino;
	uint64_t born_ns;
};

struct warm_pool {
	int used;
	int lane_id;
	uint64_t conn_hash;
	struct cr_dest d; /* .host unused */
	struct wsock ready[MAX_READY];
	int n;
	int pending;
	int static_target; /* prewarm = ...*N */
	int adaptive;      /* preconnect_ratio > 0 */
	double ratio;
	long max_idle_ms;
	/* demand */
	uint64_t last_ns;
	double rate;  /* connects per second, smoothed */
	double lat_s; /* connect latency, smoothed */
	uint64_t fail_until_ns;
	int retired;
	/* Usefulness of adaptive preconnect to this destination: sockets
	 * served, and sockets that went to waste (expired or died unused, or
	 * sat ready while a connect went cold past them). A destination whose
	 * warm sockets are never used is not preconnected any more: an idle
	 * connection can block a single-threaded server (docs/config.md,
	 * preconnect_ratio). */
	long hits;
	long wasted;
	int adaptive_off;
};

#define WASTE_LIMIT 2

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static struct warm_pool pools[MAX_POOLS];
static int npools;

int cr_warm_lane_has_pools(const struct cr_lane *l)
{
	return l->nprewarm > 0 || l->preconnect_ratio > 0 || l->prewarm_url[0];
}

static void wake(void);

static atomic_int curl_prewarm_due;
static void (*_Atomic curl_prewarm)(const struct cr_config *cfg);

void cr_warm_set_curl_prewarm(void (*fn)(const struct cr_config *cfg))
{
	atomic_store(&curl_prewarm, fn);
}

void cr_warm_curl_due(void)
{
	atomic_store(&curl_prewarm_due, 1);
	wake();
}

static int same_dest(const struct cr_dest *a, const struct cr_dest *b)
{
	return a->family == b->family && a->port == b->port && memcmp(a->addr, b->addr, 16) == 0;
}

/* Under mu. */
static struct warm_pool *find_pool(int lane_id, uint64_t ch, const struct cr_dest *d, int create)
{
	struct warm_pool *freep = NULL;
	for (int i = 0; i < npools; i++) {
		struct warm_pool *p = &pools[i];
		if (p->used && !p->retired && p->lane_id == lane_id && p->conn_hash == ch &&
		    same_dest(&p->d, d))
			return p;
		if (!p->used && !freep)
			freep = p;
	}
	if (!create)
		return NULL;
	if (!freep && npools < MAX_POOLS)
		freep = &pools[npools++];
	if (!freep)
		return NULL;
	memset(freep, 0, sizeof(*freep));
	freep->used = 1;
	freep->lane_id = lane_id;
	freep->conn_hash = ch;
	freep->d = *d;
	freep->d.host = NULL;
	return freep;
}

/* Under mu. */
static void waste(struct warm_pool *p, int n)
{
	p->wasted += n;
	if (p->hits == 0 && p->wasted >= WASTE_LIMIT && p->adaptive && !p->adaptive_off) {
		p->adaptive_off = 1;
		cr_logmsg(CR_LL_INFO,
			  "warm pools: preconnect stops for a destination whose warm sockets "
			  "were never used (%ld wasted)",
			  p->wasted);
	}
}

/* Gives back a ready warm socket: closes it if the fd still holds our
 * socket, and releases its unit exactly once (if RELEASE). */
static void close_warm(const struct wsock *w, int release)
{
	struct cr_fdinfo info;
	if (cr_fdtab_take(w->fd, &info)) {
		if ((info.flags & CR_FDF_WARM) && info.ino == w->ino) {
			if (cr_fd_inode(w->fd) == w->ino)
				cr_real.close(w->fd);
		} else {
			/* Someone else's entry now (the app connected on the
			 * reused number, and its connect settled ours): leave
			 * it, and our unit was already given back then. */
			cr_fdtab_put(w->fd, &info);
			return;
		}
	} else {
		return; /* the app closed it and the close hook released it */
	}
	if (release)
		cr_limit_release(w->slot);
}

static void *warm_main(void *arg);

static struct cr_thread warm_thread = {
	.name = "connroute-warm", .main = warm_main, .stack = 256 * 1024};
static pthread_once_t cv_once = PTHREAD_ONCE_INIT;

/* The refill thread waits with CLOCK_MONOTONIC deadlines: its condition
 * variable needs that clock before the thread first waits on it. */
static void cv_init(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &ca);
	pthread_condattr_destroy(&ca);
}

/* Nudges the refill thread (if it runs: a signal nobody waits for is lost,
 * and the thread looks at everything when it starts). */
static void wake(void)
{
	pthread_once(&cv_once, cv_init);
	pthread_mutex_lock(&mu);
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static void start_thread(void)
{
	pthread_once(&cv_once, cv_init);
	(void)cr_thread_kick(&warm_thread);
}

/* Static targets come from the config: resolve the hosts (numeric or by
 * name, once per config) and create the pools. Runs on the warm thread. */
static void apply_config(const struct cr_config *cfg)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < npools; i++) {
		struct warm_pool *p = &pools[i];
		if (!p->used || p->retired)
			continue;
		int keep = 0;
		for (int k = 0; k < cfg->nlanes && !keep; k++) {
			const struct cr_lane *l = &cfg->lanes[k];
			if (l->id == p->lane_id && l->conn_hash == p->conn_hash &&
			    cr_warm_lane_has_pools(l)) {
				keep = 1;
				p->static_target = 0;
				p->adaptive = l->preconnect_ratio > 0;
				p->ratio = l->preconnect_ratio;
				p->max_idle_ms = l->warm_max_idle_ms;
			}
		}
		if (!keep)
			p->retired = 1;
	}
	pthread_mutex_unlock(&mu);

	for (int k = 0; k < cfg->nlanes; k++) {
		const struct cr_lane *l = &cfg->lanes[k];
		for (int j = 0; j < l->nprewarm; j++) {
			struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
						 .ai_flags = AI_NUMERICSERV},
					*res = NULL;
			char port[8];
			snprintf(port, sizeof(port), "%d", l->prewarm[j].port);
			int rc = getaddrinfo(l->prewarm[j].host, port, &hints, &res);
			if (rc != 0 || !res) {
				cr_logmsg(CR_LL_WARN, "lane %s: prewarm %s:%d: %s; not prewarmed",
					  l->name, l->prewarm[j].host, l->prewarm[j].port,
					  gai_strerror(rc));
				continue;
			}
			struct cr_dest d;
			if (cr_dest_from_sockaddr(&d, res->ai_addr, res->ai_addrlen) == 0) {
				pthread_mutex_lock(&mu);
				struct warm_pool *p = find_pool(l->id, l->conn_hash, &d, 1);
				if (p) {
					p->static_target += l->prewarm[j].count;
					p->adaptive = l->preconnect_ratio > 0;
					p->ratio = l->preconnect_ratio;
					p->max_idle_ms = l->warm_max_idle_ms;
				}
				pthread_mutex_unlock(&mu);
			}
			freeaddrinfo(res);
		}
	}
}

static atomic_int config_dirty;

void cr_warm_config_changed(const struct cr_config *cfg)
{
	int active = 0;
	for (int i = 0; i < cfg->nlanes; i++)
		active |= cr_warm_lane_has_pools(&cfg->lanes[i]);
	atomic_store(&cr_warm_active, active);
	atomic_store(&config_dirty, 1);
	/* No thread from here: this runs in the constructor too. */
	wake();
}

void cr_warm_kick(void)
{
	start_thread();
}

static int target_of(const struct warm_pool *p)
{
	int t = p->static_target;
	if (p->adaptive && !p->adaptive_off && p->rate > 0) {
		/* Envoy's preconnect: enough sockets to cover the connects that
		 * arrive while one is being refilled. */
		double x = p->ratio * p->rate * (p->lat_s > 0 ? p->lat_s : 0.001);
		int want = x > ADAPTIVE_CAP ? ADAPTIVE_CAP : (int)x;
		if (want < x && want < ADAPTIVE_CAP)
			want++; /* ceil, without libm in the host */
		/* Demand fades: no connect for 10 s, no adaptive target. */
		if (cr_now_ns() - p->last_ns > 10000000000ull)
			want = 0;
		if (want > t)
			t = want;
	}
	return t > MAX_READY ? MAX_READY : t;
}

struct pend {
	int fd;
	uint64_t ino; /* our socket's identity: the host may close the number */
	int pool;
	uint32_t slot;
	uint64_t start_ns;
	uint64_t deadline_ns;
};

/* Connects in progress: global and changed only under mu, so a fork child
 * can close its copies (the thread that knew them does not exist there). */
static struct pend g_pend[MAX_PENDING];
static int g_npend;

/* The host is near its fd limit (or the limit is tiny): warm pools stand
 * back. Said once per process at info. */
static void note_no_room(const struct cr_lane *l)
{
	static _Atomic pid_t said;
	pid_t me = getpid();
	if (atomic_exchange(&said, me) != me)
		cr_logmsg(CR_LL_INFO,
			  "lane %s: warm pools stand back: the process is near its fd limit "
			  "(RLIMIT_NOFILE "
			  "below 256, or a quarter of the numbers below %d in use)",
			  l->name, cr_ownfd_floor());
}

static void start_connects(void)
{
	struct pend *pend = g_pend;
	int *npend = &g_npend;
	const struct cr_config *cfg = cr_cfgref_acquire();
	if (!cfg)
		return;
	uint64_t t = cr_now_ns();
	for (int i = 0; i < npools && *npend < MAX_PENDING; i++) {
		pthread_mutex_lock(&mu);
		struct warm_pool *p = &pools[i];
		int need = p->used && !p->retired && t >= p->fail_until_ns
				   ? target_of(p) - p->n - p->pending
				   : 0;
		struct cr_dest d = p->d;
		int lane_id = p->lane_id;
		uint64_t ch = p->conn_hash;
		if (need > 0)
			p->pending += need; /* reserved; given back below if not started */
		pthread_mutex_unlock(&mu);
		if (need <= 0)
			continue;
		const struct cr_lane *l = NULL;
		for (int k = 0; k < cfg->nlanes && !l; k++)
			if (cfg->lanes[k].id == lane_id && cfg->lanes[k].conn_hash == ch)
				l = &cfg->lanes[k];
		int started = 0;
		while (l && started < need && *npend < MAX_PENDING) {
			uint32_t slot = CR_SLOT_NONE;
			if (l->max_conns_per_host > 0) {
				slot = cr_limit_slot(l->id, &d);
				/* An app connect waiting for a unit goes first. */
				if (cr_limit_waiting(slot) ||
				    cr_limit_acquire(slot, l->max_conns_per_host, 0, NULL) != 0)
					break; /* at the lane's limit: warm sockets never exceed it */
			}
			/* Our sockets never take a number the host could be
			 * counting on (docs/INTERNALS.md, "connroute's own fds").
			 * No floor at all (a tiny fd limit): not even a socket for a
			 * moment, which could make the host's own open fail. */
			int fd = cr_ownfd_floor() == 0
					 ? -1
					 : cr_ownfd_raise(socket(d.family,
								 SOCK_STREAM | SOCK_NONBLOCK |
									 SOCK_CLOEXEC,
								 0),
							  0);
			if (fd < 0) {
				cr_limit_release(slot);
				note_no_room(l);
				pthread_mutex_lock(&mu);
				p->fail_until_ns = cr_now_ns() + 1000000000ull;
				pthread_mutex_unlock(&mu);
				break;
			}
			uint64_t ino = cr_fd_inode(fd);
			cr_sockopt_apply(fd, l, d.family, 1);
			struct sockaddr_storage ss;
			socklen_t sl;
			memset(&ss, 0, sizeof(ss));
			if (d.family == AF_INET) {
				struct sockaddr_in *in = (struct sockaddr_in *)&ss;
				in->sin_family = AF_INET;
				in->sin_port = htons(d.port);
				memcpy(&in->sin_addr, d.addr, 4);
				sl = sizeof(*in);
			} else {
				struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
				in6->sin6_family = AF_INET6;
				in6->sin6_port = htons(d.port);
				memcpy(&in6->sin6_addr, d.addr, 16);
				sl = sizeof(*in6);
			}
			int r = cr_real.connect(fd, (struct sockaddr *)&ss, sl);
			if (r != 0 && errno != EINPROGRESS) {
				cr_ownfd_close(fd, ino);
				cr_limit_release(slot);
				pthread_mutex_lock(&mu);
				p->fail_until_ns = cr_now_ns() + 1000000000ull;
				pthread_mutex_unlock(&mu);
				break;
			}
			long ct = l->connect_timeout_ms > 0 ? l->connect_timeout_ms : 5000;
			pthread_mutex_lock(&mu);
			pend[*npend] = (struct pend){.fd = fd,
						     .ino = ino,
						     .pool = i,
						     .slot = slot,
						     .start_ns = cr_now_ns(),
						     .deadline_ns = cr_now_ns() +
								    (uint64_t)ct * 1000000ull};
			(*npend)++;
			pthread_mutex_unlock(&mu);
			started++;
		}
		if (started < need) {
			pthread_mutex_lock(&mu);
			p->pending -= need - started;
			pthread_mutex_unlock(&mu);
		}
	}
	cr_cfgref_release(cfg);
}

static void finish_pending(int timeout_ms)
{
	struct pend *pend = g_pend;
	int *npend = &g_npend;
	struct pollfd pfd[MAX_PENDING];
	for (int i = 0; i < *npend; i++)
		pfd[i] = (struct pollfd){.fd = pend[i].fd, .events = POLLOUT};
	int n = poll(pfd, (nfds_t)*npend, timeout_ms);
	uint64_t t = cr_now_ns();
	for (int i = 0; i < *npend;) {
		int done = 0, ok = 0;
		if (cr_fd_inode(pend[i].fd) != pend[i].ino) {
			/* The host closed our number (closefrom, close_range) and
			 * may have reused it: the fd is not ours to read, keep or
			 * close. Drop the entry; cr_ownfd_close below refuses. */
			done = 1;
		} else if (n > 0 && pfd[i].revents) {
			int err = 0;
			socklen_t el = sizeof(err);
			if (getsockopt(pend[i].fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
				err = errno;
			done = 1;
			ok = err == 0;
		} else if (t >= pend[i].deadline_ns) {
			done = 1;
		}
		if (!done) {
			i++;
			continue;
		}
		struct warm_pool *p = &pools[pend[i].pool];
		int kept = 0;
		if (ok) {
			/* Complete the socket's connect state now (the kernel's
			 * SS_CONNECTING -> SS_CONNECTED happens on the next
			 * connect() call), so the app sees exactly one 0 from a
			 * re-connect (ours) and EISCONN after, as without us. */
			struct sockaddr_storage peer;
			socklen_t pl = sizeof(peer);
			if (getpeername(pend[i].fd, (struct sockaddr *)&peer, &pl) == 0)
				(void)cr_real.connect(pend[i].fd, (struct sockaddr *)&peer, pl);
			struct wsock w = {.fd = pend[i].fd,
					  .slot = pend[i].slot,
					  .ino = pend[i].ino,
					  .born_ns = t};
			struct cr_fdinfo info = {.slot = w.slot,
						 .lane = p->lane_id,
						 .flags = CR_FDF_WARM,
						 .ino = w.ino};
			/* An entry left by a close we did not see, on the number our
			 * socket now has: settle it first, or its unit leaks. */
			(void)cr_fdtab_settle(w.fd);
			pthread_mutex_lock(&mu);
			p->pending--;
			double lat = (double)(t - pend[i].start_ns) / 1e9;
			p->lat_s = p->lat_s > 0 ? 0.8 * p->lat_s + 0.2 * lat : lat;
			if (!p->retired && p->n < MAX_READY && cr_fdtab_put(w.fd, &info) == 0) {
				p->ready[p->n++] = w;
				kept = 1;
			}
			pthread_mutex_unlock(&mu);
		} else {
			pthread_mutex_lock(&mu);
			p->pending--;
			p->fail_until_ns = t + 1000000000ull;
			pthread_mutex_unlock(&mu);
		}
		pthread_mutex_lock(&mu);
		if (!kept) {
			cr_ownfd_close(pend[i].fd, pend[i].ino);
			cr_limit_release(pend[i].slot);
		}
		pend[i] = pend[--(*npend)];
		pthread_mutex_unlock(&mu);
		pfd[i] = pfd[*npend];
	}
}

/* Is a warm socket still usable? Dead when the peer closed it (EOF) or it
 * failed; a server that speaks first (SMTP, MySQL, SSH greetings) leaves
 * data waiting, which is fine: the app reads it as it would have. */
static int alive(int fd)
{
	char c;
	ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK;
	if (r == 0)
		return 0;
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 &&
	       ti.tcpi_state == 1 /* ESTABLISHED */;
}

/* Still the socket we made? The app may have closed the fd behind our back
 * and reused the number: then it is the app's, never to be probed or closed. */
static int still_ours(const struct wsock *w)
{
	return cr_fd_inode(w->fd) == w->ino;
}

static void sweep(void)
{
	uint64_t t = cr_now_ns();
	struct wsock drop[MAX_READY];
	for (int i = 0; i < npools; i++) {
		int nd = 0;
		pthread_mutex_lock(&mu);
		struct warm_pool *p = &pools[i];
		for (int j = 0; p->used && j < p->n;) {
			struct wsock *w = &p->ready[j];
			/* A destination preconnect gave up on keeps no idle socket
			 * either: the server may be blocked on it (one client at a
			 * time), and the app's own connection waits behind it. */
			int expired = p->retired || (p->adaptive_off && p->static_target == 0) ||
				      (p->max_idle_ms > 0 &&
				       t - w->born_ns >= (uint64_t)p->max_idle_ms * 1000000ull);
			int dead = !expired && (!still_ours(w) || !alive(w->fd));
			if (expired || dead) {
				if (!p->retired && !p->adaptive_off)
					waste(p, 1);
				drop[nd++] = *w;
				p->ready[j] = p->ready[--p->n];
			} else {
				j++;
			}
		}
		if (p->used && p->retired && p->n == 0 && p->pending == 0)
			p->used = 0;
		for (int k = 0; k < nd; k++)
			close_warm(&drop[k], 1);
		pthread_mutex_unlock(&mu);
	}
}

static void *warm_main(void *arg)
{
	uint64_t last_sweep = 0;
	(void)arg;
	for (;;) {
		if (atomic_exchange(&config_dirty, 0)) {
			const struct cr_config *cfg = cr_cfgref_acquire();
			if (cfg) {
				apply_config(cfg);
				cr_cfgref_release(cfg);
			}
			atomic_store(&curl_prewarm_due, 1);
		}
		void (*prewarm)(const struct cr_config *) = atomic_load(&curl_prewarm);
		if (atomic_exchange(&curl_prewarm_due, 0) && prewarm) {
			const struct cr_config *cfg = cr_cfgref_acquire();
			if (cfg) {
				prewarm(cfg);
				cr_cfgref_release(cfg);
			}
		}
		start_connects();
		if (g_npend > 0)
			finish_pending(20);
		uint64_t t = cr_now_ns();
		if (t - last_sweep >= 250000000ull) {
			sweep();
			last_sweep = t;
		}
		if (g_npend == 0) {
			struct timespec dl;
			cr_deadline_after(&dl, 100);
			pthread_mutex_lock(&mu);
			pthread_cond_timedwait(&cv, &mu, &dl);
			pthread_mutex_unlock(&mu);
		}
	}
	return NULL;
}

int cr_warm_take(const struct cr_lane *lane, const struct cr_dest *d, uint32_t *slot, uint64_t *ino)
{
	struct cr_dest key = *d;
	key.host = NULL;
	for (int tries = 0; tries < MAX_READY; tries++) {
		struct wsock w;
		pthread_mutex_lock(&mu);
		struct warm_pool *p = find_pool(lane->id, lane->conn_hash, &key, 0);
		if (!p || p->n == 0) {
			if (p)
				pthread_cond_signal(&cv);
			pthread_mutex_unlock(&mu);
			if (p) {
				cr_m_warm(lane->id, 0);
			}
			return -1;
		}
		w = p->ready[--p->n]; /* the newest: least likely to be idle-killed */
		pthread_cond_signal(&cv);
		pthread_mutex_unlock(&mu);

		struct cr_fdinfo info;
		if (!cr_fdtab_take(w.fd, &info))
			continue; /* the app closed it: the close hook gave the unit back */
		if (!(info.flags & CR_FDF_WARM) || info.ino != w.ino) {
			/* Another owner's entry (its connect settled ours and
			 * released our unit): leave it as it is. */
			cr_fdtab_put(w.fd, &info);
			continue;
		}
		if (cr_fd_inode(w.fd) != w.ino) {
			/* Closed behind our back, number reused: not ours to
			 * close; give the unit back once. */
			cr_limit_release(w.slot);
			continue;
		}
		if (!alive(w.fd)) {
			cr_real.close(w.fd);
			cr_limit_release(w.slot);
			continue;
		}
		cr_m_warm(lane->id, 1);
		pthread_mutex_lock(&mu);
		p->hits++;
		pthread_mutex_unlock(&mu);
		*slot = w.slot;
		*ino = w.ino;
		return w.fd;
	}
	return -1;
}

void cr_warm_note(const struct cr_lane *lane, const struct cr_dest *d, uint64_t connect_ns)
{
	if (lane->preconnect_ratio <= 0)
		return;
	struct cr_dest key = *d;
	key.host = NULL;
	uint64_t t = cr_now_ns();
	pthread_mutex_lock(&mu);
	struct warm_pool *p = find_pool(lane->id, lane->conn_hash, &key, 1);
	if (p) {
		p->adaptive = 1;
		p->ratio = lane->preconnect_ratio;
		p->max_idle_ms = lane->warm_max_idle_ms;
		if (p->last_ns) {
			double dt = (double)(t - p->last_ns) / 1e9;
			double inst = dt > 1e-6 ? 1.0 / dt : 1e6;
			p->rate = p->rate > 0 ? 0.9 * p->rate + 0.1 * inst : inst;
		}
		p->last_ns = t;
		if (connect_ns > 1) {
			double lat = (double)connect_ns / 1e9;
			p->lat_s = p->lat_s > 0 ? 0.9 * p->lat_s + 0.1 * lat : lat;
		}
		/* Cold past ready warm sockets it could not use (bound,
		 * epoll-registered...): this app's connects to this destination
		 * are not served warm, and an idle one may already block a
		 * one-client-at-a-time server. Enough evidence at once. */
		if (connect_ns && p->n > 0)
			waste(p, WASTE_LIMIT);
		pthread_cond_signal(&cv);
	}
	pthread_mutex_unlock(&mu);
	if (p)
		start_thread();
}

void cr_warm_forget(int fd)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < npools; i++) {
		struct warm_pool *p = &pools[i];
		for (int j = 0; p->used && j < p->n; j++) {
			if (p->ready[j].fd == fd) {
				p->ready[j] = p->ready[--p->n];
				break;
			}
		}
	}
	pthread_mutex_unlock(&mu);
}

int cr_warm_evict(const struct cr_lane *lane, const struct cr_dest *d)
{
	struct cr_dest key = *d;
	int done = 0;
	key.host = NULL;
	pthread_mutex_lock(&mu);
	struct warm_pool *p = find_pool(lane->id, lane->conn_hash, &key, 0);
	if (p && p->n > 0) {
		struct wsock w = p->ready[0]; /* the oldest */
		p->ready[0] = p->ready[--p->n];
		close_warm(&w, 1);
		done = 1;
	}
	pthread_mutex_unlock(&mu);
	return done;
}

void cr_warm_atfork_prepare(void)
{
	pthread_mutex_lock(&mu);
}

void cr_warm_atfork_parent(void)
{
	pthread_mutex_unlock(&mu);
}

void cr_warm_atfork_child(void)
{
	/* The child never uses the parent's warm sockets, ready or still
	 * connecting: close its copies, give back the units, and start over
	 * on first use. mu was held across the fork, so the lists are whole. */
	for (int i = 0; i < npools; i++) {
		struct warm_pool *p = &pools[i];
		for (int j = 0; p->used && j < p->n; j++)
			close_warm(&p->ready[j], 1);
		p->n = 0;
		p->pending = 0;
	}
	for (int i = 0; i < g_npend; i++) {
		cr_ownfd_close(g_pend[i].fd, g_pend[i].ino);
		cr_limit_release(g_pend[i].slot);
	}
	g_npend = 0;
	cr_thread_atfork_child(&warm_thread);
	cv_init();
	atomic_store(&config_dirty, 1);
	pthread_mutex_unlock(&mu);
}
