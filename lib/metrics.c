/* connroute: per-lane metrics; see metrics.h for the contract.
 *
 * Storage is one static table indexed by the stable lane id (BSS: pages of
 * lanes never used are never touched). Every figure is a relaxed atomic: a
 * hook adds to it, a scrape reads it, nobody waits. A scrape may therefore
 * see a request counted in one family and not yet in another; each histogram
 * is self-consistent because its count is rendered as the sum of the bucket
 * counts it read.
 *
 * Label sets from keys (upstream, priority) live in a small per-lane array
 * filled in order: a slot is claimed with a CAS on the claimed count only by
 * a thread that saw every earlier slot complete and different, so the same
 * set is never stored twice. Past the bound a key folds into
 * upstream="other", priority="other".
 *
 * Rendering is one table of families (name, type, help, which figure), in
 * the order of docs/metrics.md. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "config.h"
#include "metrics.h"

/* Latency buckets, 0.5 ms .. 30 s (upper bounds, inclusive as Prometheus'
 * `le`): fine where a loopback or LAN request lives, coarse where only
 * "slow" matters. */
#define NB 15
static const uint64_t bound_ns[NB] = {
	500000ull,     1000000ull,    2500000ull,    5000000ull,     10000000ull,
	25000000ull,   50000000ull,   100000000ull,  250000000ull,   500000000ull,
	1000000000ull, 2500000000ull, 5000000000ull, 10000000000ull, 30000000000ull,
};
static const char *const bound_txt[NB] = {
	"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
	"0.25",   "0.5",   "1",      "2.5",   "5",    "10",    "30",
};

struct hist {
	_Atomic uint64_t b[NB + 1]; /* per bucket, not cumulative; [NB] = +Inf */
	_Atomic uint64_t sum_ns;
};

#define UP_MAX   64
#define PRIO_MAX 32
#define SETS     16 /* label sets per lane, the last one is "other" */
#define OTHER    (SETS - 1)

enum { R_CONNECT, R_TIMEOUT, R_TRANSPORT, R_OTHER, R_N };
static const char *const reason_txt[R_N] = {"connect", "timeout", "transport", "other"};
static const char *const outcome_txt[CR_OUT_N] = {"ok", "error", "timeout", "overflow"};
static const char *const warm_txt[2] = {"hit", "miss"};
static const char *const reload_txt[2] = {"ok", "error"};

struct lset {
	atomic_int ready; /* labels written (release) */
	uint32_t hash;
	char upstream[UP_MAX];
	char priority[PRIO_MAX];
	struct hist dur;
	_Atomic uint64_t retries[R_N];
};

struct lane_m {
	atomic_int touched; /* anything recorded (or named): render it */
	atomic_int named;   /* 0 none, 1 being written, 2 set */
	char name[CR_NAME_MAX];
	_Atomic uint64_t opened, connect_errors, closed, overflows;
	_Atomic int64_t idle, queued, inflight;
	_Atomic uint64_t outcomes[CR_OUT_N];
	_Atomic uint64_t warm[2]; /* by warm_txt: hit, miss */
	_Atomic uint64_t alog_dropped;
	_Atomic uint64_t breaker_rejections, retries_throttled;
	struct hist connect, qwait;
	atomic_int nsets; /* slots claimed, at most OTHER */
	struct lset sets[SETS];
};

static struct lane_m lanes[CR_MAX_LANE_IDS];
static _Atomic uint64_t unmatched;
static _Atomic uint64_t reloads[2]; /* by reload_txt: ok, error */

#define RLX memory_order_relaxed

static struct lane_m *lane_of(int id)
{
	if (id < 0 || id >= CR_MAX_LANE_IDS)
		return NULL;
	struct lane_m *l = &lanes[id];
	if (!atomic_load_explicit(&l->touched, RLX))
		atomic_store_explicit(&l->touched, 1, RLX);
	return l;
}

static void add_u(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, RLX);
}

static void add_i(_Atomic int64_t *c, int64_t v)
{
	atomic_fetch_add_explicit(c, v, RLX);
}

static void observe(struct hist *h, uint64_t ns)
{
	int i = 0;
	while (i < NB && ns > bound_ns[i])
		i++;
	add_u(&h->b[i], 1);
	add_u(&h->sum_ns, ns);
}

/* ------------------------------------------------------------ label sets */

/* upstream = the key up to the first '/', priority = what follows (flags
 * after '+' dropped); truncated to the label buffers. */
static void split_key(const char *key, char *up, char *prio)
{
	size_t n = 0, m = 0;
	const char *p = key ? key : "";
	up[0] = prio[0] = '\0';
	while (*p && *p != '/' && *p != '+') {
		if (n < UP_MAX - 1)
			up[n++] = *p;
		p++;
	}
	up[n] = '\0';
	if (*p == '/') {
		p++;
		while (*p && *p != '+') {
			if (m < PRIO_MAX - 1)
				prio[m++] = *p;
			p++;
		}
	}
	prio[m] = '\0';
}

static uint32_t set_hash(const char *up, const char *prio)
{
	uint32_t h = cr_fnv32(CR_FNV32_INIT, up, strlen(up));
	h = cr_fnv32(h, "/", 1);
	return cr_fnv32(h, prio, strlen(prio));
}

/* A claimed slot becomes ready a few stores later; waiting for it is
 * bounded (a writer descheduled mid-copy makes us fold into "other" once
 * rather than spin). */
static int wait_ready(struct lset *s)
{
	for (int i = 0; i < 4096; i++)
		if (atomic_load_explicit(&s->ready, memory_order_acquire))
			return 1;
	return 0;
}

static struct lset *find_set(struct lane_m *l, const char *key)
{
	char up[UP_MAX], prio[PRIO_MAX];
	split_key(key, up, prio);
	uint32_t h = set_hash(up, prio);
	int seen = 0;

	for (int round = 0; round < 2 * SETS; round++) {
		int n = atomic_load_explicit(&l->nsets, memory_order_acquire);
		for (int i = seen; i < n; i++) {
			struct lset *s = &l->sets[i];
			if (!wait_ready(s))
				return &l->sets[OTHER];
			if (s->hash == h && strcmp(s->upstream, up) == 0 &&
			    strcmp(s->priority, prio) == 0)
				return s;
		}
		seen = n;
		if (n >= OTHER)
			return &l->sets[OTHER];
		if (atomic_compare_exchange_strong_explicit(
			    &l->nsets, &n, n + 1, memory_order_acq_rel, memory_order_acquire)) {
			struct lset *s = &l->sets[n];
			memcpy(s->upstream, up, sizeof(up));
			memcpy(s->priority, prio, sizeof(prio));
			s->hash = h;
			atomic_store_explicit(&s->ready, 1, memory_order_release);
			return s;
		}
		/* Another thread claimed slot n: look at it (it may be ours). */
	}
	return &l->sets[OTHER];
}

/* ------------------------------------------------------------- recording */

void cr_metrics_set_lane_name(int id, const char *name)
{
	if (id < 0 || id >= CR_MAX_LANE_IDS || !name)
		return;
	struct lane_m *l = &lanes[id];
	int expect = 0;
	/* Ids are stable per name: the first name given to an id stays. */
	if (!atomic_compare_exchange_strong(&l->named, &expect, 1))
		return;
	size_t n = strnlen(name, sizeof(l->name) - 1);
	memcpy(l->name, name, n);
	l->name[n] = '\0';
	atomic_store_explicit(&l->named, 2, memory_order_release);
	atomic_store_explicit(&l->touched, 1, RLX);
}

void cr_m_conn_opened(int id, uint64_t connect_ns, int ok)
{
	struct lane_m *l = lane_of(id);
	if (!l)
		return;
	add_u(ok ? &l->opened : &l->connect_errors, 1);
	/* 0 = duration unknown (a non-blocking connect in progress, a warm
	 * socket handed out): counted, not observed. */
	if (connect_ns)
		observe(&l->connect, connect_ns);
}

void cr_m_conn_closed(int id)
{
	struct lane_m *l = lane_of(id);
	if (l)
		add_u(&l->closed, 1);
}

void cr_m_idle(int id, int delta)
{
	struct lane_m *l = lane_of(id);
	if (l)
		add_i(&l->idle, delta);
}

void cr_m_queued(int id, int delta)
{
	struct lane_m *l = lane_of(id);
	if (l)
		add_i(&l->queued, delta);
}

void cr_m_queue_wait(int id, uint64_t ns)
{
	struct lane_m *l = lane_of(id);
	if (l)
		observe(&l->qwait, ns);
}

void cr_m_overflow(int id)
{
	struct lane_m *l = lane_of(id);
	if (l)
		add_u(&l->overflows, 1);
}

void cr_m_inflight(int id, int delta)
{
	struct lane_m *l = lane_of(id);
	if (l)
		add_i(&l->inflight, delta);
}

/* The label set of the last request this thread recorded: a client sends
 * its requests with one key, and find_set splits and hashes it each time.
 * A set, once claimed, keeps its labels for the life of the process. */
static __thread struct lset *tls_set;
static __thread const struct lane_m *tls_set_lane;
static __thread unsigned tls_set_gen;
static __thread char tls_set_key[128];
static atomic_uint sets_gen; /* cr_metrics_reset forgets every set */

void cr_m_request(int id, const char *key, uint64_t ns, int outcome)
{
	struct lane_m *l = lane_of(id);
	if (!l)
		return;
	if (outcome < 0 || outcome >= CR_OUT_N)
		outcome = CR_OUT_ERROR;
	add_u(&l->outcomes[outcome], 1);
	const char *k = key ? key : "";
	struct lset *s;
	unsigned gen = atomic_load_explicit(&sets_gen, memory_order_relaxed);
	if (tls_set_lane == l && tls_set_gen == gen && strcmp(k, tls_set_key) == 0) {
		s = tls_set;
	} else {
		s = find_set(l, key);
		size_t n = strlen(k);
		tls_set_lane = NULL;
		if (n < sizeof(tls_set_key) && s != &l->sets[OTHER]) {
			memcpy(tls_set_key, k, n + 1);
			tls_set = s;
			tls_set_lane = l;
			tls_set_gen = gen;
		}
	}
	observe(&s->dur, ns);
}

void cr_m_retry(int id, const char *key, const char *reason)
{
	struct lane_m *l = lane_of(id);
	int r = R_OTHER;
	if (!l)
		return;
	for (int i = 0; i < R_OTHER && reason; i++)
		if (strcmp(reason, reason_txt[i]) == 0)
			r = i;
	add_u(&find_set(l, key)->retries[r], 1);
}

void cr_m_warm(int id, int hit)
{
	struct lane_m *l = lane_of(id);
	if (l)
		add_u(&l->warm[hit ? 0 : 1], 1);
}

void cr_m_breaker_rejected(int id)
{
	struct lane_m *l = lane_of(id);
	if (l)
		add_u(&l->breaker_rejections, 1);
}

void cr_m_retry_throttled(int id)
{
	struct lane_m *l = lane_of(id);
	if (l)
		add_u(&l->retries_throttled, 1);
}

static void (*_Atomic health_fn)(int what, cr_m_emit_fn emit, void *ctx);

void cr_metrics_set_health(void (*fn)(int what, cr_m_emit_fn emit, void *ctx))
{
	atomic_store_explicit(&health_fn, fn, memory_order_release);
}

void cr_m_alog_dropped(int id, uint64_t n)
{
	struct lane_m *l = lane_of(id);
	if (l)
		add_u(&l->alog_dropped, n);
}

void cr_m_unmatched(void)
{
	add_u(&unmatched, 1);
}

void cr_m_reload(int ok)
{
	add_u(&reloads[ok ? 0 : 1], 1);
}

void cr_metrics_reset(void)
{
	memset(lanes, 0, sizeof(lanes));
	atomic_fetch_add(&sets_gen, 1);
	atomic_store(&unmatched, 0);
	atomic_store(&reloads[0], 0);
	atomic_store(&reloads[1], 0);
}

/* ------------------------------------------------------------- rendering */

struct out {
	char *buf;
	size_t cap, len;
};

__attribute__((format(printf, 2, 3))) static void outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	char *dst = o->len < o->cap ? o->buf + o->len : NULL;
	size_t room = o->len < o->cap ? o->cap - o->len : 0;
	va_start(ap, fmt);
	int n = vsnprintf(dst, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n;
}

/* A label value: backslash, double quote and newline escaped. */
static void out_value(struct out *o, const char *s)
{
	char tmp[2 * CR_NAME_MAX + 2 * UP_MAX];
	size_t n = 0;
	for (; *s && n + 3 < sizeof(tmp); s++) {
		if (*s == '\\' || *s == '"') {
			tmp[n++] = '\\';
			tmp[n++] = *s;
		} else if (*s == '\n') {
			tmp[n++] = '\\';
			tmp[n++] = 'n';
		} else {
			tmp[n++] = *s;
		}
	}
	tmp[n] = '\0';
	outf(o, "%s", tmp);
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Lanes are rendered by id; a lane the engine never named (cannot happen
 * once the engine assigns ids) shows as "id<N>". */
static int present(int id)
{
	return atomic_load_explicit(&lanes[id].touched, RLX) != 0;
}

static void lane_label(struct out *o, int id)
{
	outf(o, "lane=\"");
	if (atomic_load_explicit(&lanes[id].named, memory_order_acquire) == 2)
		out_value(o, lanes[id].name);
	else
		outf(o, "id%d", id);
	outf(o, "\"");
}

/* EXTRA: further labels, already formatted with a leading comma, or "". */
static void sample_u(struct out *o, const char *name, int id, const char *extra, uint64_t v)
{
	outf(o, "%s{", name);
	lane_label(o, id);
	outf(o, "%s} %llu\n", extra, (unsigned long long)v);
}

static void sample_i(struct out *o, const char *name, int id, int64_t v)
{
	outf(o, "%s{", name);
	lane_label(o, id);
	outf(o, "} %lld\n", (long long)v);
}

/* LABELS: the full label list without braces (e.g. lane="x",upstream="y"). */
static void hist_render(struct out *o, const char *name, const char *labels,
			const struct hist *const *hs, int nh)
{
	uint64_t cum = 0, sum = 0;
	for (int i = 0; i <= NB; i++) {
		for (int k = 0; k < nh; k++)
			cum += atomic_load_explicit(&hs[k]->b[i], RLX);
		outf(o, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels,
		     i < NB ? bound_txt[i] : "+Inf", (unsigned long long)cum);
	}
	for (int k = 0; k < nh; k++)
		sum += atomic_load_explicit(&hs[k]->sum_ns, RLX);
	/* Exact decimal seconds from integer nanoseconds. */
	outf(o, "%s_sum{%s} %llu.%09llu\n", name, labels, (unsigned long long)(sum / 1000000000ull),
	     (unsigned long long)(sum % 1000000000ull));
	outf(o, "%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
}

/* The lane label alone, into a buffer (for hist_render). */
static void lane_labels_buf(int id, char *buf, size_t cap)
{
	struct out o = {buf, cap, 0};
	lane_label(&o, id);
	if (o.len >= cap)
		buf[cap - 1] = '\0';
}

static void lane_hist(struct out *o, const char *name, int id, const struct hist *h)
{
	char labels[4 * CR_NAME_MAX];
	lane_labels_buf(id, labels, sizeof(labels));
	hist_render(o, name, labels, &h, 1);
}

/* The label sets of a lane that are complete, with "other" last when used.
 * Returns their count; IDX gets slot numbers. */
static int lane_sets(struct lane_m *l, int *idx)
{
	int n = atomic_load_explicit(&l->nsets, memory_order_acquire), k = 0;
	if (n > OTHER)
		n = OTHER;
	for (int i = 0; i < n; i++)
		if (atomic_load_explicit(&l->sets[i].ready, memory_order_acquire))
			idx[k++] = i;
	struct lset *ot = &l->sets[OTHER];
	uint64_t any = 0;
	for (int i = 0; i <= NB; i++)
		any |= atomic_load_explicit(&ot->dur.b[i], RLX);
	for (int r = 0; r < R_N; r++)
		any |= atomic_load_explicit(&ot->retries[r], RLX);
	if (any)
		idx[k++] = OTHER;
	return k;
}

static const char *set_up(struct lane_m *l, int i)
{
	return i == OTHER ? "other" : l->sets[i].upstream;
}

static const char *set_prio(struct lane_m *l, int i)
{
	return i == OTHER ? "other" : l->sets[i].priority;
}

/* ---------------------------------------------------- families, by kind */

struct family;
typedef void (*render_fn)(struct out *o, const struct family *f);

struct family {
	const char *name, *type, *help;
	render_fn render;
	size_t off;                /* the lane's figure(s) in struct lane_m */
	const char *label;         /* over an array of N figures, or NULL (N = 1) */
	const char *const *values; /* the label's values, in the array's order */
	int n;
	_Atomic uint64_t *global; /* a process-wide figure (array) */
};

#define LANE_FIGURE(id, f, T) ((T *)(void *)((char *)&lanes[id] + (f)->off))

/* ",LABEL=\"VALUE\"" for figure J of F, or "". */
static const char *extra_label(char *buf, size_t cap, const struct family *f, int j)
{
	if (!f->label)
		return "";
	snprintf(buf, cap, ",%s=\"%s\"", f->label, f->values[j]);
	return buf;
}

/* Counters of every lane present. */
static void render_lane_counter(struct out *o, const struct family *f)
{
	char extra[64];
	for (int id = 0; id < CR_MAX_LANE_IDS; id++)
		if (present(id))
			for (int j = 0; j < (f->label ? f->n : 1); j++)
				sample_u(o, f->name, id, extra_label(extra, sizeof(extra), f, j),
					 atomic_load_explicit(
						 &LANE_FIGURE(id, f, _Atomic uint64_t)[j], RLX));
}

/* Gauges of every lane present. */
static void render_lane_gauge(struct out *o, const struct family *f)
{
	for (int id = 0; id < CR_MAX_LANE_IDS; id++)
		if (present(id))
			sample_i(o, f->name, id,
				 atomic_load_explicit(LANE_FIGURE(id, f, _Atomic int64_t), RLX));
}

/* Connections open: opened - closed, never below 0 (each read once). */
static void render_lane_active(struct out *o, const struct family *f)
{
	for (int id = 0; id < CR_MAX_LANE_IDS; id++)
		if (present(id)) {
			uint64_t op = atomic_load_explicit(&lanes[id].opened, RLX);
			uint64_t cl = atomic_load_explicit(&lanes[id].closed, RLX);
			sample_i(o, f->name, id, op > cl ? (int64_t)(op - cl) : 0);
		}
}

static void render_lane_hist(struct out *o, const struct family *f)
{
	for (int id = 0; id < CR_MAX_LANE_IDS; id++)
		if (present(id))
			lane_hist(o, f->name, id, LANE_FIGURE(id, f, struct hist));
}

/* A process-wide counter, or one per label value. */
static void render_global_counter(struct out *o, const struct family *f)
{
	if (!f->label) {
		outf(o, "%s %llu\n", f->name,
		     (unsigned long long)atomic_load_explicit(f->global, RLX));
		return;
	}
	for (int j = 0; j < f->n; j++)
		outf(o, "%s{%s=\"%s\"} %llu\n", f->name, f->label, f->values[j],
		     (unsigned long long)atomic_load_explicit(&f->global[j], RLX));
}

/* Per (lane, upstream, priority): the label sets. */
static void render_durations(struct out *o, const struct family *f)
{
	const char *name = f->name;
	for (int id = 0; id < CR_MAX_LANE_IDS; id++) {
		struct lane_m *l = &lanes[id];
		int idx[SETS], n;
		if (!present(id) || (n = lane_sets(l, idx)) == 0)
			continue;
		for (int a = 0; a < n; a++) {
			const char *up = set_up(l, idx[a]), *pr = set_prio(l, idx[a]);
			const struct hist *hs[SETS];
			int nh = 0, dup = 0;
			/* A tuple rendered once, summing slots that carry it (a real
			 * upstream named "other" meets the fold slot). */
			for (int b = 0; b < a && !dup; b++)
				dup = !strcmp(up, set_up(l, idx[b])) &&
				      !strcmp(pr, set_prio(l, idx[b]));
			if (dup)
				continue;
			for (int b = a; b < n; b++)
				if (!strcmp(up, set_up(l, idx[b])) &&
				    !strcmp(pr, set_prio(l, idx[b])))
					hs[nh++] = &l->sets[idx[b]].dur;
			char labels[4 * CR_NAME_MAX + 4 * UP_MAX];
			struct out lo = {labels, sizeof(labels), 0};
			lane_label(&lo, id);
			outf(&lo, ",upstream=\"");
			out_value(&lo, up);
			outf(&lo, "\",priority=\"");
			out_value(&lo, pr);
			outf(&lo, "\"");
			if (lo.len >= sizeof(labels))
				continue;
			hist_render(o, name, labels, hs, nh);
		}
	}
}

/* Per (lane, upstream, reason): summed over priorities; "other" only when
 * some retry had an unknown reason. */
static void render_retries(struct out *o, const struct family *f)
{
	const char *name = f->name;
	for (int id = 0; id < CR_MAX_LANE_IDS; id++) {
		struct lane_m *l = &lanes[id];
		int idx[SETS], n;
		if (!present(id) || (n = lane_sets(l, idx)) == 0)
			continue;
		for (int a = 0; a < n; a++) {
			const char *up = set_up(l, idx[a]);
			int dup = 0;
			for (int b = 0; b < a && !dup; b++)
				dup = !strcmp(up, set_up(l, idx[b]));
			if (dup)
				continue;
			uint64_t v[R_N] = {0};
			for (int b = a; b < n; b++)
				if (!strcmp(up, set_up(l, idx[b])))
					for (int r = 0; r < R_N; r++)
						v[r] += atomic_load_explicit(
							&l->sets[idx[b]].retries[r], RLX);
			for (int r = 0; r < R_N; r++) {
				if (r == R_OTHER && !v[r])
					continue;
				outf(o, "%s{", name);
				lane_label(o, id);
				outf(o, ",upstream=\"");
				out_value(o, up);
				outf(o, "\",retry_reason=\"%s\"} %llu\n", reason_txt[r],
				     (unsigned long long)v[r]);
			}
		}
	}
}

#ifndef CONNROUTE_VERSION
#define CONNROUTE_VERSION "unknown"
#endif

/* Whose endpoint this is: two processes configured with one TCP address
 * would otherwise be told apart by nobody (the second cannot bind), and
 * `connroute stats PID` would show the first one's figures. The CLI refuses
 * an answer whose pid is not the one it asked for. */
static void render_build_info(struct out *o, const struct family *f)
{
	outf(o, "%s{version=\"%s\",pid=\"%ld\"} 1\n", f->name, CONNROUTE_VERSION, (long)getpid());
}

#define FAM(n, t, h, r)  .name = (n), .type = (t), .help = (h), .render = (r)
#define LANE(field)      .off = offsetof(struct lane_m, field)
#define LABEL(name, txt) .label = (name), .values = (txt), .n = (int)ARRAY_SIZE(txt)

/* Resilience (lib/health.c), through the function it registered. */
struct health_out {
	struct out *o;
	const struct family *f;
	const char *name, *label;
	int counts[CR_MAX_LANE_IDS];
};

static void health_sample(void *ctx, int lane, const char *label, int64_t v)
{
	struct health_out *h = ctx;
	if (lane < 0 || lane >= CR_MAX_LANE_IDS)
		return;
	if (!h->name) { /* counting */
		h->counts[lane]++;
		return;
	}
	outf(h->o, "%s{", h->name);
	lane_label(h->o, lane);
	outf(h->o, ",%s=\"", h->label);
	out_value(h->o, label);
	if (h->f->n == 0) /* milliseconds left */
		outf(h->o, "\"} %lld.%03lld\n", (long long)(v / 1000), (long long)(v % 1000));
	else
		outf(h->o, "\"} %lld\n", (long long)v);
}

static void render_health(struct out *o, const struct family *f)
{
	void (*fn)(int, cr_m_emit_fn, void *) = atomic_load_explicit(&health_fn,
								     memory_order_acquire);
	struct health_out h = {.o = o, .f = f, .name = f->name, .label = f->label};
	if (fn)
		fn(f->n, health_sample, &h);
}

static void render_ejected(struct out *o, const struct family *f)
{
	void (*fn)(int, cr_m_emit_fn, void *) = atomic_load_explicit(&health_fn,
								     memory_order_acquire);
	static struct health_out h; /* the render runs on one thread at a time */
	memset(&h, 0, sizeof(h));
	if (fn)
		fn(0, health_sample, &h);
	for (int id = 0; id < CR_MAX_LANE_IDS; id++)
		if (present(id))
			sample_i(o, f->name, id, h.counts[id]);
}

static const struct family families[] = {
	{FAM("connroute_build_info", "gauge",
	     "Always 1: the connroute version and the process id serving this endpoint.",
	     render_build_info)},
	{FAM("http_client_request_duration_seconds", "histogram",
	     "Duration of HTTP client requests (libcurl performs), from the call to its return, "
	     "time queued for a limit and retries included.",
	     render_durations)},
	{FAM("http_client_requests_total", "counter",
	     "HTTP client requests (libcurl performs) by outcome: ok (a response), error, timeout, "
	     "overflow (refused at the lane's limit).",
	     render_lane_counter),
	 LANE(outcomes), LABEL("outcome", outcome_txt)},
	{FAM("http_client_retry_count_total", "counter",
	     "Requests connroute retried (idempotent only, within the lane's retry budget), by "
	     "reason.",
	     render_retries)},
	{FAM("connroute_connections_opened_total", "counter",
	     "Connections established: routed raw connect() calls and new libcurl connections.",
	     render_lane_counter),
	 LANE(opened)},
	{FAM("connroute_connect_errors_total", "counter", "Connection attempts that failed.",
	     render_lane_counter),
	 LANE(connect_errors)},
	{FAM("connroute_connections_closed_total", "counter",
	     "Connections closed that connroute saw close (routed raw sockets; libcurl connections "
	     "where the engine observes the close).",
	     render_lane_counter),
	 LANE(closed)},
	{FAM("connroute_connections_active", "gauge",
	     "Connections open: opened_total - closed_total (not below 0).", render_lane_active)},
	{FAM("connroute_connections_idle", "gauge",
	     "Idle pooled connections (libcurl connections at rest in the lane's pools).",
	     render_lane_gauge),
	 LANE(idle)},
	{FAM("connroute_connect_duration_seconds", "histogram",
	     "Time to establish a connection (TCP, and TLS for libcurl), failed attempts included.",
	     render_lane_hist),
	 LANE(connect)},
	{FAM("connroute_inflight_requests", "gauge", "Requests (libcurl performs) in progress.",
	     render_lane_gauge),
	 LANE(inflight)},
	{FAM("connroute_queued", "gauge",
	     "Connects and requests waiting for a unit of the lane's max_conns_per_host now.",
	     render_lane_gauge),
	 LANE(queued)},
	{FAM("connroute_queue_wait_seconds", "histogram",
	     "Time spent waiting for a unit of max_conns_per_host, per wait that happened.",
	     render_lane_hist),
	 LANE(qwait)},
	{FAM("connroute_limit_overflows_total", "counter",
	     "Connects and requests refused at max_conns_per_host (queue timeout, or "
	     "non-blocking).",
	     render_lane_counter),
	 LANE(overflows)},
	{FAM("connroute_warm_pool_total", "counter",
	     "Connections wanted from the lane's warm pool: hit (a warm socket was used) or miss.",
	     render_lane_counter),
	 LANE(warm), LABEL("result", warm_txt)},
	{FAM("connroute_unmatched_keys_total", "counter",
	     "Routing decisions whose key matched no lane and fell back to lane default.",
	     render_global_counter),
	 .global = &unmatched},
	{FAM("connroute_config_reloads_total", "counter",
	     "Configuration reloads: ok (applied) or error (rejected, the old configuration "
	     "stays).",
	     render_global_counter),
	 LABEL("result", reload_txt), .global = reloads},
	{FAM("connroute_access_log_dropped_total", "counter",
	     "Access log lines lost: the log's buffer was full (the request was never delayed) or "
	     "its output failed.",
	     render_lane_counter),
	 LANE(alog_dropped)},
	{FAM("connroute_ejections_total", "counter",
	     "Times an address was ejected (outlier ejection, eject_after), by address.",
	     render_health),
	 .label = "address", .n = 1},
	{FAM("connroute_ejected", "gauge", "Addresses ejected now.", render_ejected)},
	{FAM("connroute_ejected_remaining_seconds", "gauge",
	     "Each address ejected now, with the time left before it is let back in.",
	     render_health),
	 .label = "address", .n = 0},
	{FAM("connroute_breaker_state", "gauge",
	     "Circuit breaker per (lane, host): 0 closed, 1 open, 2 half-open.", render_health),
	 .label = "host", .n = 2},
	{FAM("connroute_breaker_rejections_total", "counter",
	     "Requests and connects refused at once by an open circuit breaker.",
	     render_lane_counter),
	 LANE(breaker_rejections)},
	{FAM("connroute_retries_throttled_total", "counter",
	     "Retries not made because the lane's retry token bucket was at half or below.",
	     render_lane_counter),
	 LANE(retries_throttled)},
};

size_t cr_metrics_render(char *buf, size_t cap)
{
	struct out o = {buf, buf ? cap : 0, 0};

	for (size_t i = 0; i < ARRAY_SIZE(families); i++) {
		family(&o, families[i].name, families[i].type, families[i].help);
		families[i].render(&o, &families[i]);
	}
	if (buf && cap)
		buf[o.len < cap ? o.len : cap - 1] = '\0';
	return o.len; /* as snprintf: it fit if < CAP */
}
