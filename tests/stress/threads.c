/* Threaded stress of the engine for ThreadSanitizer (Criterion does not run
 * under TSan): libcurl lanes from 8 threads in 2 lanes against an in-process
 * server (half of them with more resolve flavours than pool slots) while the
 * config is reloaded; parked shares (persistent handles moving between
 * threads, shares taken from idle handles, reset, duphandle, getinfo,
 * recycled handles, the idle sweep); multi transfers in lanes (one multi per
 * thread, queued behind a limit); limits with waiters, and the fd table
 * with racing closers.
 * `make tsan` builds it with -fsanitize=thread and runs it; exit 0 = clean. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alog.h"
#include "alog_writer.h"
#include "cfgref.h"
#include "curl/lanes.h"
#include "engine.h"
#include "fdtab.h"
#include "health.h"
#include "metrics.h"
#include "key.h"
#include "limit.h"

#include "../unit/curlpool_server.h"

static struct cr_curllib *lib;
static uint32_t slot;

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

static void *curl_worker(void *arg)
{
	char url[128];
	cr_key_set((intptr_t)arg ? "w/b" : "w/a");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ts_port());
	for (int i = 0; i < 200; i++) {
		CURL *h = cr_curl_init(lib);
		cr_curl_setopt(lib, h, CURLOPT_URL, url, 0, 0);
		cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
		cr_curl_setopt(lib, h, CURLOPT_NOSIGNAL, NULL, 1, 0);
		if (cr_curl_perform(lib, h) != CURLE_OK)
			return (void *)1;
		cr_curl_cleanup(lib, h);
	}
	return NULL;
}

/* Multi transfers in lanes: each thread drives its own multi handle (lane a,
 * or lane c whose max_conns_per_host = 2 makes transfers queue while the
 * other thread's transfers hold and free its units), while the config is
 * reloaded under them. */
static void *multi_worker(void *arg)
{
	char url[128];
	cr_key_set((intptr_t)arg % 2 ? "m/c" : "m/a");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ts_port());
	for (int round = 0; round < 20; round++) {
		CURLM *m = curl_multi_init();
		CURL *h[6];
		for (int i = 0; i < 6; i++) {
			h[i] = cr_curl_init(lib);
			cr_curl_setopt(lib, h[i], CURLOPT_URL, url, 0, 0);
			cr_curl_setopt(lib, h[i], CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
			cr_curl_setopt(lib, h[i], CURLOPT_NOSIGNAL, NULL, 1, 0);
			if (cr_curl_mx_add(lib, m, h[i]) != CURLM_OK)
				return (void *)1;
		}
		struct cr_mx *x = cr_curl_mx_get(m);
		if (!x)
			return (void *)1;
		int got = 0, running = 1;
		for (int k = 0; k < 2000 && got < 6; k++) {
			cr_curl_mx_perform(x, &running);
			CURLMsg *msg;
			int left;
			while ((msg = cr_curl_mx_info_read(x, &left))) {
				if (msg->data.result != CURLE_OK)
					return (void *)1;
				got++;
				cr_curl_mx_remove(x, msg->easy_handle);
			}
			if (got < 6)
				cr_curl_mx_wait(x, NULL, 0, 50, NULL, round % 2);
		}
		/* Every other round, cleanup with the handles still in it. */
		if (round % 2)
			cr_curl_mx_cleanup(x);
		for (int i = 0; i < 6; i++)
			cr_curl_cleanup(lib, h[i]);
		if (!(round % 2))
			cr_curl_mx_cleanup(x);
		if (got < 6)
			return (void *)1;
	}
	return NULL;
}

/* More CURLOPT_RESOLVE flavours than pool slots, from several threads:
 * slot claims and evictions of idle pools while others check out. */
static void *flavour_worker(void *arg)
{
	char url[128], entry[128], host[32];
	for (int i = 0; i < 100; i++) {
		snprintf(host, sizeof(host), "f%d.test", (int)((intptr_t)arg * 100 + i) % 200);
		snprintf(url, sizeof(url), "http://%s:%d/", host, ts_port());
		snprintf(entry, sizeof(entry), "%s:%d:127.0.0.1", host, ts_port());
		struct curl_slist *rl = curl_slist_append(NULL, entry);
		CURL *h = cr_curl_init(lib);
		cr_curl_setopt(lib, h, CURLOPT_URL, url, 0, 0);
		cr_curl_setopt(lib, h, CURLOPT_RESOLVE, rl, 0, 0);
		cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
		cr_curl_setopt(lib, h, CURLOPT_NOSIGNAL, NULL, 1, 0);
		CURLcode rc = cr_curl_perform(lib, h);
		cr_curl_cleanup(lib, h);
		curl_slist_free_all(rl);
		if (rc != CURLE_OK)
			return (void *)1;
	}
	return NULL;
}

/* Parked shares (docs/INTERNALS.md, "libcurl lanes"): 12 persistent handles in a common
 * rack, taken in turn by 4 threads (a handle moves between threads, one at a time), each
 * performing, resetting, duplicating or asking getinfo; shares may be taken from idle
 * handles at once (steal idle 0), and a sweeper closes idle ones every few ms. */
#define RACK 12
static CURL *rack[RACK];
static int rack_busy[RACK];
static pthread_mutex_t rack_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop_sweep;

static void *rack_worker(void *arg)
{
	char url[128];
	unsigned seed = (unsigned)(intptr_t)arg * 7919u + 1;
	cr_key_set((intptr_t)arg % 2 ? "w/b" : "w/a");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ts_port());
	for (int i = 0; i < 300; i++) {
		int k;
		pthread_mutex_lock(&rack_mu);
		do
			k = (int)(rand_r(&seed) % RACK);
		while (rack_busy[k]);
		rack_busy[k] = 1;
		pthread_mutex_unlock(&rack_mu);
		CURL *h = rack[k];
		switch (rand_r(&seed) % 8) {
		case 0:
			cr_curl_reset(lib, h);
			cr_curl_setopt(lib, h, CURLOPT_URL, url, 0, 0);
			cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
			cr_curl_setopt(lib, h, CURLOPT_NOSIGNAL, NULL, 1, 0);
			break;
		case 1: {
			CURL *d = cr_curl_duphandle(lib, h);
			if (d && cr_curl_perform(lib, d) != CURLE_OK)
				return (void *)1;
			cr_curl_cleanup(lib, d);
			break;
		}
		case 2: {
			long code = 0;
			curl_socket_t fd;
			cr_curl_getinfo(lib, h, CURLINFO_RESPONSE_CODE, &code);
			cr_curl_getinfo(lib, h, CURLINFO_ACTIVESOCKET, &fd);
			break;
		}
		default:
			break;
		}
		if (cr_curl_perform(lib, h) != CURLE_OK)
			return (void *)1;
		pthread_mutex_lock(&rack_mu);
		rack_busy[k] = 0;
		pthread_mutex_unlock(&rack_mu);
	}
	return NULL;
}

/* New handles per request, some left idle a moment: recycled handles with their shares. */
static void *fresh_worker(void *arg)
{
	char url[128];
	(void)arg;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ts_port());
	for (int i = 0; i < 300; i++) {
		CURL *h = cr_curl_init(lib);
		long code = 0;
		cr_curl_getinfo(lib, h, CURLINFO_RESPONSE_CODE, &code); /* a stale handle's twin */
		cr_curl_setopt(lib, h, CURLOPT_URL, url, 0, 0);
		cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
		cr_curl_setopt(lib, h, CURLOPT_NOSIGNAL, NULL, 1, 0);
		if (cr_curl_perform(lib, h) != CURLE_OK)
			return (void *)1;
		cr_curl_cleanup(lib, h);
		if (i % 50 == 0)
			usleep(3000);
	}
	return NULL;
}

static void *sweeper(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop_sweep)) {
		cr_curl_idle_sweep();
		usleep(1000);
	}
	return NULL;
}

static atomic_int stop_reload;

/* Publishes a new config every few ms while the workers perform: the
 * refcounted swap and the pool retirement under TSan. */
/* The multi workers' limited lane: its units are taken and freed by the
 * multi threads only (an easy perform waiting for a unit is served first:
 * docs/INTERNALS.md, "libcurl lanes", multi transfers). With resilience:
 * the breaker asked at each admission from the queue, outcomes recorded at
 * completion, the handles' per-transfer state (never opens: healthy). */
#define LANE_C                                                                            \
	"[lane c]\nmatch = */c\nmax_conns_per_host = 2\nqueue_timeout = 60s\n"              \
	"eject_after = 100\nbreaker_failure_ratio = 0.9\nretry_tokens = 10\n"

static void *reloader(void *arg)
{
	(void)arg;
	for (int i = 0; i < 200 && !atomic_load(&stop_reload); i++) {
		struct cr_config *c = calloc(1, sizeof(*c));
		struct cr_diag d;
		const char *text = i % 2 ? "[lane a]\nmatch = */a\n[lane b]\nmatch = */b\nmax_conns_per_host = 2\n" LANE_C
					 : "[lane a]\nmatch = */a\nnodelay = off\n[lane b]\nmatch = */b\n" LANE_C;
		if (cr_config_load_string(text, "reload.conf", c, &d) != 0)
			return (void *)1;
		cr_engine_publish(c);
		usleep(2000);
	}
	return NULL;
}

static void *limit_worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++) {
		if (cr_limit_acquire(slot, 2, 1000, NULL) != 0)
			return (void *)1;
		cr_limit_release(slot);
	}
	return NULL;
}

static void *fd_worker(void *arg)
{
	int base = (int)(intptr_t)arg;
	struct cr_fdinfo in = {.slot = 1, .ino = 1}, out;
	for (int i = 0; i < 20000; i++) {
		cr_fdtab_put(base + i % 64, &in);
		cr_fdtab_take(base + (i * 7) % 64, &out);
	}
	return NULL;
}

/* The access log's ring: producers fill records while one consumer takes
 * them (phase 1, checked: per producer in order, nothing lost that was not
 * counted dropped, no torn record), then the writer formats them while two
 * threads flush (phase 2, /dev/null). */
#define ALOG_PRODUCERS 4
#define ALOG_PER 20000
static atomic_int alog_done;
static const struct cr_lane *alog_lane;

static void *alog_producer(void *arg)
{
	intptr_t me = (intptr_t)arg;
	char key[16], path[32];
	snprintf(key, sizeof(key), "p%d", (int)me);
	for (int i = 0; i < ALOG_PER; i++) {
		snprintf(path, sizeof(path), "/%d/%d", (int)me, i);
		struct cr_alog_call c = {.lane = alog_lane, .kind = CR_ALOG_HTTP, .key = key, .path = path,
					 .status = i, .reused = 0, .warm = 0};
		for (int k = 0; k < CR_AD_N; k++)
			c.dur_ns[k] = -1;
		c.dur_ns[CR_AD_TOTAL] = i;
		cr_alog_put(&c);
		if (i % 16 == 0)
			sched_yield(); /* let the consumer in: more records taken, not only dropped */
	}
	atomic_fetch_add(&alog_done, 1);
	return NULL;
}

static void *alog_consumer(void *arg)
{
	static struct cr_alog_rec out[64];
	long *taken = arg, last[ALOG_PRODUCERS];
	for (int i = 0; i < ALOG_PRODUCERS; i++)
		last[i] = -1;
	for (;;) {
		int done = atomic_load(&alog_done) == ALOG_PRODUCERS;
		size_t n = cr_alog_take(out, 64);
		for (size_t i = 0; i < n; i++) {
			const struct cr_alog_rec *r = &out[i];
			int p = r->str[r->str_off[CR_AS_KEY] + 1] - '0';
			char want[32];
			if (p < 0 || p >= ALOG_PRODUCERS)
				return (void *)1;
			snprintf(want, sizeof(want), "/%d/%d", p, r->status);
			if (strcmp(r->str + r->str_off[CR_AS_PATH], want) || r->status <= last[p] ||
			    r->dur_ns[CR_AD_TOTAL] != r->status)
				return (void *)1; /* torn, or out of order */
			last[p] = r->status;
			(*taken)++;
		}
		if (done && !n && !cr_alog_pending())
			return NULL;
	}
}

static void *alog_flusher(void *arg)
{
	(void)arg;
	while (atomic_load(&alog_done) < ALOG_PRODUCERS)
		cr_alog_writer_flush();
	cr_alog_writer_flush();
	return NULL;
}

static int alog_stress(void)
{
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag d;
	pthread_t t[ALOG_PRODUCERS + 2];
	long taken = 0;
	int bad = 0;
	if (cr_config_load_string("[global]\naccess_log = /dev/null\naccess_log_buffer = 256\n",
				  "alog.conf", cfg, &d) != 0)
		return 1;
	cr_engine_publish(cfg);
	alog_lane = &cfg->lanes[cfg->default_lane];
	cr_alog_reset(256);
	pthread_create(&t[ALOG_PRODUCERS], NULL, alog_consumer, &taken);
	for (intptr_t i = 0; i < ALOG_PRODUCERS; i++)
		pthread_create(&t[i], NULL, alog_producer, (void *)i);
	for (int i = 0; i <= ALOG_PRODUCERS; i++) {
		void *r;
		pthread_join(t[i], &r);
		bad += r != NULL;
	}
	long dropped = (long)cr_alog_dropped(alog_lane->id);
	if (taken + dropped != (long)ALOG_PRODUCERS * ALOG_PER)
		bad++;
	printf("alog: %ld taken, %ld dropped of %d\n", taken, dropped, ALOG_PRODUCERS * ALOG_PER);

	atomic_store(&alog_done, 0);
	cr_alog_reset(256);
	for (intptr_t i = 0; i < ALOG_PRODUCERS; i++)
		pthread_create(&t[i], NULL, alog_producer, (void *)i);
	pthread_create(&t[ALOG_PRODUCERS], NULL, alog_flusher, NULL);
	pthread_create(&t[ALOG_PRODUCERS + 1], NULL, alog_flusher, NULL);
	for (int i = 0; i < ALOG_PRODUCERS + 2; i++)
		pthread_join(t[i], NULL);
	cr_alog_reset(0);
	return bad;
}

/* Resilience (lib/health.c): threads record outcomes for the addresses of
 * one host (one always failing), ask the breaker and the token bucket, while
 * another renders the metrics (which reads every table). */
static struct cr_lane hl;
static atomic_int health_stop;

static void *health_worker(void *arg)
{
	int me = (int)(intptr_t)arg;
	uint64_t g = cr_health_host_name("api", 80);
	for (int i = 0; i < 40000; i++) {
		struct cr_dest d = {.family = AF_INET, .port = 80};
		d.addr[0] = 10;
		d.addr[3] = (uint8_t)(1 + (i + me) % 4);
		int64_t now = i / 20;
		if (!cr_health_ejected(&hl, g, &d, now))
			cr_health_addr_result(&hl, g, &d, d.addr[3] != 1, now);
		int adm = cr_health_admit(&hl, g, "api", 80, now, NULL);
		if (adm)
			cr_health_result(&hl, g, adm, (i % 3) != 0, now);
		cr_health_tokens_result(&hl, i & 1);
		(void)cr_health_retry_allowed(&hl);
		(void)cr_health_host_has_ejected(&hl, g, now);
		(void)cr_health_conn_ejected(cr_health_conn_key(hl.id, &d), now);
	}
	return NULL;
}

static void *health_scraper(void *arg)
{
	(void)arg;
	static char buf[1 << 17];
	while (!atomic_load(&health_stop))
		cr_metrics_render(buf, sizeof(buf));
	return NULL;
}

/* Pending raw connects (cr_health_pending / _settle): threads note and
 * take outcomes on one slot (the same fd number, sockets of different
 * inodes as far as the table knows), as fds 1024 apart would. */
static struct cr_config *hcfg;
static int hfd = -1;

static void *pend_worker(void *arg)
{
	int me = (int)(intptr_t)arg;
	for (int i = 0; i < 20000; i++) {
		struct cr_dest d = {.family = AF_INET, .port = 81};
		d.addr[0] = 10;
		d.addr[3] = (uint8_t)(1 + me);
		uint64_t ino = (uint64_t)(me + 1) * 1000000u + (uint64_t)i + 1;
		cr_health_pending(hfd, ino, &hl, &d, CR_ADMIT_YES);
		cr_health_pending_settle(hfd, ino, hcfg);
	}
	return NULL;
}

static int health_stress(void)
{
	struct cr_config *c = calloc(1, sizeof(*c));
	struct cr_diag d;
	if (cr_config_load_string("[lane h]\nmatch = */h\neject_after = 3\neject_time = 50ms\n"
				  "breaker_failure_ratio = 0.3\nbreaker_min_requests = 5\n"
				  "breaker_open = 20ms\nretry_tokens = 10\n",
				  "health.conf", c, &d) != 0)
		return 1;
	cr_engine_publish(c);
	hl = c->lanes[cr_config_find_lane(c, "h")];
	pthread_t t[8], sc;
	pthread_create(&sc, NULL, health_scraper, NULL);
	for (intptr_t i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, health_worker, (void *)i);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	/* A TCP socket never connected: its outcome reads as failed. */
	hcfg = c;
	hfd = socket(AF_INET, SOCK_STREAM, 0);
	for (intptr_t i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, pend_worker, (void *)i);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	close(hfd);
	atomic_store(&health_stop, 1);
	pthread_join(sc, NULL);
	return 0;
}

int main(void)
{
	struct cr_curlfns f = {curl_easy_init, curl_easy_setopt, curl_easy_perform, curl_easy_cleanup,
			       curl_easy_reset, curl_easy_duphandle, curl_easy_getinfo, curl_share_init,
			       curl_share_setopt, curl_share_cleanup, curl_version_info,
			       curl_easy_upkeep, curl_easy_header, curl_easy_nextheader, curl_multi_init,
			       curl_multi_add_handle, curl_multi_remove_handle, curl_multi_cleanup,
			       curl_global_cleanup, curl_multi_setopt, curl_multi_perform,
			       curl_multi_socket_action, curl_multi_socket_all, NULL, curl_multi_wait,
			       curl_multi_poll, curl_multi_timeout, curl_multi_info_read,
			       curl_multi_fdset};
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag d;
	pthread_t t[8], mt[4];
	int bad = 0;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	lib = cr_curl_lib_add((void *)curl_easy_init, &f, "libcurl");
	cr_limits_init(256, NULL, NULL);
	if (cr_config_load_string("[lane a]\nmatch = */a\neject_after = 100\nbreaker_failure_ratio = 0.9\n"
				  "retry_tokens = 10\n[lane b]\nmatch = */b\nmax_conns_per_host = 2\n" LANE_C,
				  "stress.conf", cfg, &d) != 0)
		return 2;
	cr_engine_publish(cfg);
	ts_start();

	pthread_t rl;
	pthread_create(&rl, NULL, reloader, NULL);
	for (intptr_t i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, i < 4 ? curl_worker : flavour_worker, (void *)(i < 4 ? i % 2 : i - 4));
	for (intptr_t i = 0; i < 4; i++)
		pthread_create(&mt[i], NULL, multi_worker, (void *)i);
	for (int i = 0; i < 8; i++) {
		void *r;
		pthread_join(t[i], &r);
		bad += r != NULL;
	}
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(mt[i], &r);
		if (r)
			fprintf(stderr, "stress: multi worker %d failed\n", i);
		bad += r != NULL;
	}
	atomic_store(&stop_reload, 1);
	{
		void *r;
		pthread_join(rl, &r);
		bad += r != NULL;
	}
	/* Parked shares: taken at once from idle handles, swept every few ms. */
	{
		struct cr_config *c = calloc(1, sizeof(*c));
		if (cr_config_load_string("[lane a]\nmatch = */a\nidle_timeout = 5ms\n[lane b]\nmatch = */b\n"
					  "max_idle_per_host = 2\nidle_timeout = 5ms\n",
					  "parked.conf", c, &d) != 0)
			return 2;
		cr_engine_publish(c);
		cr_curl_set_steal_idle_ms(0);
		cr_curl_set_sweep_every_ms(1);
		char url[128];
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ts_port());
		for (int k = 0; k < RACK; k++) {
			rack[k] = cr_curl_init(lib);
			cr_curl_setopt(lib, rack[k], CURLOPT_URL, url, 0, 0);
			cr_curl_setopt(lib, rack[k], CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
			cr_curl_setopt(lib, rack[k], CURLOPT_NOSIGNAL, NULL, 1, 0);
		}
		pthread_t sw;
		pthread_create(&sw, NULL, sweeper, NULL);
		for (intptr_t i = 0; i < 6; i++)
			pthread_create(&t[i], NULL, i < 4 ? rack_worker : fresh_worker, (void *)i);
		for (int i = 0; i < 6; i++) {
			void *r;
			pthread_join(t[i], &r);
			bad += r != NULL;
		}
		atomic_store(&stop_sweep, 1);
		pthread_join(sw, NULL);
		for (int k = 0; k < RACK; k++)
			cr_curl_cleanup(lib, rack[k]);
	}

	struct cr_dest dst = {.family = AF_INET, .port = 1};
	slot = cr_limit_slot(0, &dst);
	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, limit_worker, NULL);
	for (int i = 0; i < 8; i++) {
		void *r;
		pthread_join(t[i], &r);
		bad += r != NULL;
	}
	for (intptr_t i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, fd_worker, (void *)(i * 32));
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ts_stop();
	bad += alog_stress();
	bad += health_stress();
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	printf("stress: %d failures; %ld pooled performs, %ld shares, %ld pools evicted, %ld handles reused, "
	       "%ld shares taken, %ld closed idle, %ld twins, %d connections\n",
	       bad, st.performs_pooled, st.shares_created, st.pools_evicted, st.handles_reused, st.shares_taken,
	       st.shares_closed_idle, st.twins, ts_accepted());
	return bad ? 1 : 0;
}
