/* connroute: libcurl lanes — resilience (docs/INTERNALS.md, "Resilience
 * (lib/health.c)"): the libcurl side of outlier ejection, the circuit
 * breaker and retry throttling. The policy is lib/health.c's; here is what a
 * transfer tells it and how libcurl is made to obey:
 *
 * - before a perform, the breaker of (lane, URL host:port) is asked; while
 *   open the perform fails at once with CURLE_COULDNT_CONNECT and a message
 *   in the app's error buffer (nothing is sent);
 * - an ejected address is skipped in the opensocket callback (installed only
 *   for lanes with ejection or warm pools): CURL_SOCKET_BAD makes libcurl
 *   7.88 go on to the name's next address (checked by the integration test
 *   resilience/curl_skips_an_ejected_address);
 * - after each attempt, its outcome goes to the addresses it used: the one
 *   libcurl ended on (CURLINFO_PRIMARY_IP) gets the attempt's outcome, every
 *   other address it tried this attempt failed to connect; the retry token
 *   bucket gets one outcome per attempt; the breaker one per request.
 *
 * Entry points are two calls around the perform (before/after) and one per
 * failed attempt (from retry.c); the multi interface (multi.c) calls the
 * same at a transfer's admission and completion. What they keep between
 * calls is the handle's (struct cr_curl_easy, hl_*), never the thread's. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "alog_curl.h"
#include "base.h"
#include "curl_int.h"
#include "health.h"
#include "lane.h"
#include "metrics.h"

/* The per-transfer state (the URL's host hash, the addresses tried this
 * attempt) is the handle's (struct cr_curl_easy, hl_*): a handle runs one
 * transfer at a time, and many multi transfers share one thread. */

static inline uint64_t host_of(const struct cr_curl_easy *e)
{
	return e->hl_host;
}

/* -1: says nothing about the upstream; 0 failed; 1 ok. */
static int outcome(const struct cr_curl_easy *e, CURLcode rc)
{
	long code = 0;
	switch (rc) {
	case CURLE_OK:
		e->lib->fns.easy_getinfo(e->h, CURLINFO_RESPONSE_CODE, &code);
		return code >= 500 && code <= 599 ? 0 : 1;
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR: return 0;
	default: return -1;
	}
}

/* The addresses the app gave for the URL's host:port with CURLOPT_RESOLVE
 * ("[+]HOST:PORT:ADDR[,ADDR]..."): known addresses of the host for eject_max
 * even before libcurl tried them (libcurl only falls back to the next one
 * on a connect failure; a name resolved by DNS makes its addresses known as
 * libcurl tries them). */
static void known_from_resolve(const struct cr_curl_easy *e, const struct cr_lane *lane)
{
	size_t hl = strlen(e->u_host);
	char port[8];
	int pl = snprintf(port, sizeof(port), ":%d:", e->u_port);
	uint64_t group = host_of(e);
	int64_t now = cr_health_now();
	for (const struct curl_slist *l = e->resolve; l; l = l->next) {
		const char *p = l->data;
		if (!p || *p == '-')
			continue;
		if (*p == '+')
			p++;
		if (strncasecmp(p, e->u_host, hl) != 0 || strncmp(p + hl, port, (size_t)pl) != 0)
			continue;
		p += hl + (size_t)pl;
		while (*p) {
			char a[64];
			size_t n = strcspn(p, ",");
			const char *s = p;
			size_t sn = n;
			if (sn >= 2 && s[0] == '[' && s[sn - 1] == ']') {
				s++;
				sn -= 2;
			}
			struct cr_dest d = {.port = (uint16_t)e->u_port};
			if (sn < sizeof(a)) {
				memcpy(a, s, sn);
				a[sn] = '\0';
				if (inet_pton(AF_INET, a, d.addr) == 1)
					d.family = AF_INET;
				else if (inet_pton(AF_INET6, a, d.addr) == 1)
					d.family = AF_INET6;
				if (d.family)
					(void)cr_health_ejected(lane, group, &d,
								now); /* registers it */
			}
			p += n;
			if (*p == ',')
				p++;
		}
	}
}

int cr_curl_health_before(struct cr_curl_easy *e, const struct cr_lane *lane, const char *key,
			  uint64_t t_start, int *adm)
{
	e->hl_ntried = 0;
	*adm = CR_ADMIT_YES;
	e->hl_host = cr_health_host_name(e->u_host, e->u_port);
	if (lane->health & CR_H_EJECT) {
		if (e->resolve)
			known_from_resolve(e, lane);
		/* Its parked share holds a connection to an address ejected
		 * since: closed, another share is found for this perform. */
		if (cr_curl_shares_doomed(e))
			cr_curl_shares_discard(e->lib, e);
	}
	if (!(lane->health & CR_H_BREAKER))
		return 0;
	int st;
	*adm = cr_health_admit(lane, host_of(e), e->u_host, e->u_port, cr_health_now(), &st);
	if (*adm != CR_ADMIT_NO)
		return 0;
	if (e->errbuf)
		snprintf(e->errbuf, CURL_ERROR_SIZE,
			 "connroute: lane '%.48s': circuit breaker %s for %.80s:%d; request not "
			 "sent",
			 lane->name, st == CR_BRK_OPEN ? "open" : "half-open (probes in flight)",
			 e->u_host, e->u_port);
	cr_m_request(lane->id, key, cr_now_ns() - t_start, CR_OUT_ERROR);
	cr_curl_alog(e, lane, key, CURLE_COULDNT_CONNECT, t_start, 0, 2);
	/* As for the failed connect it stands for, the handle's results are
	 * not the previous transfer's (RESPONSE_CODE 0, not its 200): a
	 * performed handle is answered by a fresh twin until its next
	 * perform (handles.c, cr_curl_getinfo). */
	e->stale = e->performed;
	return -1;
}

static void attempt(struct cr_curl_easy *e, const struct cr_lane *lane, int ok)
{
	int n = e->hl_ntried;
	e->hl_ntried = 0;
	if (lane->health & CR_H_THROTTLE && ok >= 0)
		cr_health_tokens_result(lane, ok);
	if (!(lane->health & CR_H_EJECT))
		return;
	char *ip = NULL;
	long port = 0;
	struct cr_dest p = {.family = AF_UNSPEC};
	e->lib->fns.easy_getinfo(e->h, CURLINFO_PRIMARY_IP, &ip);
	e->lib->fns.easy_getinfo(e->h, CURLINFO_PRIMARY_PORT, &port);
	if (ip && ip[0]) {
		if (inet_pton(AF_INET, ip, p.addr) == 1)
			p.family = AF_INET;
		else if (inet_pton(AF_INET6, ip, p.addr) == 1)
			p.family = AF_INET6;
		p.port = (uint16_t)port;
	}
	uint64_t group = host_of(e);
	int64_t now = cr_health_now();
	for (int i = 0; i < n && i < CR_CURL_TRIED_MAX; i++) {
		const struct cr_dest *d = &e->hl_tried[i];
		int last = d->family == p.family && d->port == p.port &&
			   !memcmp(d->addr, p.addr, d->family == AF_INET ? 4 : 16);
		if (!last)
			cr_health_addr_result(lane, group, d, 0, now); /* libcurl moved on */
	}
	if (p.family == AF_UNSPEC)
		return;
	if (ok >= 0)
		cr_health_addr_result(lane, group, &p, ok, now);
	if (e->share)
		cr_curl_shares_note_addr(e->share, cr_health_conn_key(lane->id, &p));
}

void cr_curl_health_attempt(struct cr_curl_easy *e, const struct cr_lane *lane, CURLcode rc)
{
	attempt(e, lane, outcome(e, rc));
}

void cr_curl_health_after(struct cr_curl_easy *e, const struct cr_lane *lane, CURLcode rc, int adm)
{
	int ok = outcome(e, rc);
	attempt(e, lane, ok);
	if ((lane->health & CR_H_BREAKER) && ok >= 0)
		cr_health_result(lane, host_of(e), adm, ok, cr_health_now());
}

void cr_curl_health_request(struct cr_curl_easy *e, const struct cr_lane *lane, CURLcode rc,
			    int adm)
{
	int ok = outcome(e, rc);
	if ((lane->health & CR_H_BREAKER) && ok >= 0)
		cr_health_result(lane, host_of(e), adm, ok, cr_health_now());
}

void cr_curl_health_eyeballs(struct cr_curl_easy *e, const struct cr_lane *lane)
{
	long v = cr_health_host_has_ejected(lane, host_of(e), cr_health_now()) ? 1
									       : e->app_happy_ms;
	if (e->held[OV_HAPPY].l != v)
		cr_curl_hold(e, OV_HAPPY, (union cr_ov_val){.l = v});
}

int cr_curl_health_skip(struct cr_curl_easy *e, const struct cr_dest *d)
{
	if (!(e->lane->health & CR_H_EJECT))
		return 0;
	if (cr_health_ejected(e->lane, host_of(e), d, cr_health_now()))
		return 1;
	if (e->hl_ntried < CR_CURL_TRIED_MAX)
		e->hl_tried[e->hl_ntried++] = *d;
	return 0;
}
