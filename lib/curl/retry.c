/* connroute: libcurl lanes — retries: only idempotent requests, only when
 * nothing (no header, no body byte, no upload byte) reached the app or the
 * server's reading of a body, within the lane's budget and the request's
 * deadline, with full-jitter backoff. libcurl itself already replays once on
 * a dead reused connection. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base.h"
#include "curl_int.h"
#include "health.h"
#include "key.h"
#include "log.h"
#include "metrics.h"

/* Is the request idempotent? By method (GET, HEAD, OPTIONS, PUT, DELETE, and
 * no custom method overriding it), by an Idempotency-Key header, or by the
 * key's +idempotent flag. */
static int is_idempotent(const struct cr_curl_easy *e, unsigned keyflags)
{
	if (keyflags & CR_KEYF_IDEMPOTENT)
		return 1;
	for (const struct curl_slist *l = e->headers; l; l = l->next) {
		if (l->data && (strncasecmp(l->data, "Idempotency-Key:", 16) == 0 ||
				strncasecmp(l->data, "X-Idempotent-Key:", 17) == 0))
			return 1;
	}
	if (e->custom_set) {
		static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", NULL};
		for (int i = 0; ok[i]; i++)
			if (strcmp(e->custom, ok[i]) == 0)
				return 1;
		return 0;
	}
	return e->method == CR_CURL_M_GET || e->method == CR_CURL_M_HEAD ||
	       e->method == CR_CURL_M_PUT;
}

static int retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR: return 1;
	default: return 0;
	}
}

/* No response byte reached the app's callbacks, and the request body (if
 * any) can be sent again: in-memory fields always, a read callback's stream
 * only if nothing was read from it or libcurl can rewind it. */
static int nothing_reached_app(const struct cr_curl_easy *e)
{
	const struct cr_curlfns *f = &e->lib->fns;
	curl_off_t down = 0, up = 0;
	long hdr = 0;
	f->easy_getinfo(e->h, CURLINFO_SIZE_DOWNLOAD_T, &down);
	f->easy_getinfo(e->h, CURLINFO_SIZE_UPLOAD_T, &up);
	f->easy_getinfo(e->h, CURLINFO_HEADER_SIZE, &hdr);
	return down == 0 && hdr == 0 && (up == 0 || !e->read_cb || e->seek_cb);
}

/* Per-lane retry budget over a sliding 10 s window (two 5 s buckets):
 * retries may be at most ratio x requests, but always at least
 * retry_budget_min per second. */
#define BUDGET_BUCKET_NS 5000000000ull
static struct budget {
	pthread_mutex_t mu;
	uint64_t bucket_start;
	long req[2], retry[2];
} budgets[CR_MAX_LANE_IDS];
static pthread_once_t budgets_once = PTHREAD_ONCE_INIT;

static void budgets_init(void)
{
	for (int i = 0; i < CR_MAX_LANE_IDS; i++)
		pthread_mutex_init(&budgets[i].mu, NULL);
}

static void budget_roll(struct budget *b, uint64_t t)
{
	if (t - b->bucket_start < BUDGET_BUCKET_NS)
		return;
	if (t - b->bucket_start < 2 * BUDGET_BUCKET_NS) {
		b->req[1] = b->req[0];
		b->retry[1] = b->retry[0];
	} else {
		b->req[1] = b->retry[1] = 0;
	}
	b->req[0] = b->retry[0] = 0;
	b->bucket_start = t;
}

void cr_curl_retry_note_request(int lane_id, uint64_t t_ns)
{
	struct budget *b = &budgets[lane_id % CR_MAX_LANE_IDS];
	pthread_once(&budgets_once, budgets_init);
	pthread_mutex_lock(&b->mu);
	budget_roll(b, t_ns);
	b->req[0]++;
	pthread_mutex_unlock(&b->mu);
}

static int budget_take(const struct cr_lane *l, uint64_t t)
{
	struct budget *b = &budgets[l->id % CR_MAX_LANE_IDS];
	int ok;
	pthread_once(&budgets_once, budgets_init);
	pthread_mutex_lock(&b->mu);
	budget_roll(b, t);
	double reqs = (double)(b->req[0] + b->req[1]);
	double allowed = l->retry_budget_ratio * reqs;
	double floor = (double)l->retry_budget_min_per_s * 10.0;
	if (allowed < floor)
		allowed = floor;
	ok = (double)(b->retry[0] + b->retry[1]) < allowed;
	if (ok)
		b->retry[0]++;
	pthread_mutex_unlock(&b->mu);
	return ok;
}

/* Full jitter: uniform in [0, min(cap, base * 2^attempt)). */
static long backoff_ms(int attempt)
{
	static __thread unsigned seed;
	long cap = 25L << (attempt < 4 ? attempt : 4);
	if (cap > 250)
		cap = 250;
	if (!seed)
		seed = (unsigned)cr_now_ns() ^ (unsigned)(uintptr_t)&seed;
	return (long)(rand_r(&seed) % (unsigned)cap);
}

long cr_curl_retry_next(struct cr_curl_easy *e, const struct cr_lane *lane, unsigned keyflags,
			int attempt, CURLcode rc, long rt_ms, uint64_t t0_ns, long waited_ms)
{
	if (attempt >= lane->retries || rc == CURLE_OK || !retryable(rc) ||
	    !is_idempotent(e, keyflags) || !nothing_reached_app(e))
		return -1;
	long pause = backoff_ms(attempt);
	uint64_t spent_ms = (cr_now_ns() - t0_ns) / 1000000ull + (uint64_t)waited_ms;
	if (rt_ms > 0 && (long)spent_ms + pause >= rt_ms)
		return -1;
	/* Retry throttling (lib/health.c): no retry while the lane's token
	 * bucket is at half or below; the attempt that is retried is reported
	 * here, the last one by the perform (cr_curl_health_after). */
	if (lane->health && !cr_health_retry_allowed(lane))
		return -1;
	if (!budget_take(lane, cr_now_ns()))
		return -1;
	if (lane->health)
		cr_curl_health_attempt(e, lane, rc);
	return pause;
}

void cr_curl_retry_count(const struct cr_lane *lane, const char *key, int attempt, CURLcode rc)
{
	atomic_fetch_add(&cr_curl_ctr.retries, 1);
	cr_m_retry(lane->id, key,
		   rc == CURLE_COULDNT_CONNECT      ? "connect"
		   : rc == CURLE_OPERATION_TIMEDOUT ? "timeout"
						    : "transport");
	cr_logmsg(CR_LL_DEBUG, "lane %s: retry %d after %s", lane->name, attempt + 1,
		  rc == CURLE_COULDNT_CONNECT ? "connect failure" : "transport error");
}
