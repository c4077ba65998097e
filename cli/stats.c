/* connroute(1): `stats` and `reload`, clients of a running process's metrics
 * endpoint (lib/bg.c serves it).
 *
 * A target is a PID (its endpoint is found from its CONNROUTE_CONFIG, the
 * `[global] metrics` address with %p expanded), an ADDRESS (127.0.0.1:9464,
 * [::1]:9464, unix:/path, unix:@name), or nothing: the one process of this
 * user running under connroute with an endpoint. */
#include <ctype.h>
#include <dirent.h>
#include <getopt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "endpoint.h"
#include "trust.h"

#define SCRAPE_MAX (64u << 20)
#define MAX_LANES  256
#define MAX_LE     32

/* --------------------------------------------------------------- targets */

struct target {
	char spec[300];        /* the address, %p expanded, as shown to the user */
	char config[PATH_MAX]; /* the process's config file ("" for an ADDRESS) */
	long pid;              /* 0 for an ADDRESS */
	struct sockaddr_storage ss;
	socklen_t len;
};

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

/* /proc/PID/environ into BUF (NUL-separated); length or -1. */
static ssize_t read_environ(long pid, char *buf, size_t cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = 0;
	for (int i = 0; i < 64 && n + 1 < cap; i++) {
		ssize_t k = read(fd, buf + n, cap - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	buf[n] = '\0';
	return (ssize_t)n;
}

static const char *env_value(const char *env, size_t n, const char *name)
{
	size_t kl = strlen(name);
	for (const char *p = env; p < env + n; p += strlen(p) + 1)
		if (!strncmp(p, name, kl) && p[kl] == '=')
			return p + kl + 1;
	return NULL;
}

/* The value of `metrics` in [global] of a file that does not parse as a
 * whole: 0, or -1 if there is no such line. */
static int metrics_line(const char *path, char *out, size_t n)
{
	FILE *f = fopen(path, "re");
	char line[512];
	int global = 0, rc = -1;
	while (f && fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t");
		if (*p == '[') {
			global = !strncmp(p, "[global]", 8);
			continue;
		}
		if (!global || strncmp(p, "metrics", 7))
			continue;
		p += 7;
		p += strspn(p, " \t");
		if (*p != '=' && *p != ':')
			continue;
		p++;
		p += strspn(p, " \t");
		char *end = strstr(p, " ;");
		if (!end)
			end = strstr(p, "\t;");
		if (!end)
			end = p + strcspn(p, "\r\n");
		while (end > p &&
		       (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
			end--;
		if (end > p && (size_t)(end - p) < n) {
			memcpy(out, p, (size_t)(end - p));
			out[end - p] = '\0';
			rc = 0;
		}
	}
	if (f)
		fclose(f);
	return rc;
}

/* Fills T from process PID. QUIET: no message (scanning). 0 or -1. */
static int target_from_pid(long pid, struct target *t, int quiet)
{
	static char env[1 << 17];
	ssize_t n = read_environ(pid, env, sizeof(env));
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	if (n < 0) {
		if (!quiet)
			fprintf(stderr,
				"connroute: cannot read the environment of process %ld: %s\n", pid,
				strerror(errno));
		return -1;
	}
	/* The file the shim read: CONNROUTE_CONFIG, else the system file. */
	const char *env_cfg = env_value(env, (size_t)n, "CONNROUTE_CONFIG");
	int origin;
	const char *cfgpath = cr_cli_config_path(env_cfg, env_cfg != NULL, &origin);
	if (!cfgpath[0]) {
		if (!quiet)
			fprintf(stderr,
				"connroute: process %ld has no config file (CONNROUTE_CONFIG %s, "
				"no %s), so no metrics endpoint; give its ADDRESS\n",
				pid, env_cfg ? "empty" : "unset", CONNROUTE_SYSCONF);
		return -1;
	}
	if (cfgpath[0] == '/')
		snprintf(t->config, sizeof(t->config), "%s", cfgpath);
	else
		snprintf(t->config, sizeof(t->config), "/proc/%ld/cwd/%s", pid, cfgpath);

	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag *diag = calloc(1, sizeof(*diag));
	int rc = -1;
	if (!cfg || !diag)
		goto out;
	if (cr_config_load_file(t->config, cfg, diag) != 0) {
		/* The process keeps its last valid config (a reload was rejected):
		 * its address is most likely still the file's metrics line. The
		 * endpoint's pid is checked either way. */
		if (metrics_line(t->config, cfg->metrics, sizeof(cfg->metrics)) != 0) {
			if (!quiet)
				fprintf(stderr,
					"connroute: process %ld: %s\n(the process may still run an "
					"older, valid version of it; give its ADDRESS)\n",
					pid, diag->msg[0]);
			goto out;
		}
	}
	if (!cfg->metrics[0]) {
		if (!quiet)
			fprintf(stderr,
				"connroute: process %ld: %s sets no [global] metrics; add e.g. "
				"`metrics = unix:/run/connroute/%%p.sock` and `connroute reload "
				"%ld`\n",
				pid, t->config, pid);
		goto out;
	}
	if (cr_endpoint_parse(cfg->metrics, pid, &t->ss, &t->len, NULL, 0) != 0) {
		if (!quiet)
			fprintf(stderr, "connroute: process %ld: bad metrics address '%s'\n", pid,
				cfg->metrics);
		goto out;
	}
	/* Shown to the user with %p expanded. */
	size_t k = 0;
	for (const char *c = cfg->metrics; *c && k + 24 < sizeof(t->spec); c++) {
		if (c[0] == '%' && c[1] == 'p') {
			k += (size_t)snprintf(t->spec + k, sizeof(t->spec) - k, "%ld", pid);
			c++;
		} else {
			t->spec[k++] = *c;
		}
	}
	t->spec[k] = '\0';
	rc = 0;
out:
	free(cfg);
	free(diag);
	return rc;
}

/* Processes of ours running under connroute (LD_PRELOAD naming
 * libconnroute) whose config sets an endpoint. */
static int scan_targets(struct target *out, int max)
{
	static char env[1 << 17];
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;
	long self = (long)getpid();
	if (!d)
		return 0;
	for (int i = 0; i < 1000000 && (e = readdir(d)); i++) {
		if (!all_digits(e->d_name))
			continue;
		long pid = strtol(e->d_name, NULL, 10);
		if (pid == self)
			continue;
		ssize_t len = read_environ(pid, env, sizeof(env));
		if (len <= 0)
			continue;
		const char *pre = env_value(env, (size_t)len, "LD_PRELOAD");
		if (!pre || !strstr(pre, "libconnroute"))
			continue;
		struct target t;
		if (target_from_pid(pid, &t, 1) == 0) {
			if (n < max)
				out[n] = t;
			n++;
		}
	}
	closedir(d);
	return n;
}

static void print_cmdline(long pid, FILE *f)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return;
	for (ssize_t i = 0; i < n - 1; i++)
		if (!buf[i])
			buf[i] = ' ';
	buf[n] = '\0';
	fprintf(f, "  %s", buf);
}

/* ARG: PID, ADDRESS, or NULL (find the one process). 0 or -1 (message
 * printed). */
static int resolve(const char *arg, struct target *t)
{
	if (arg && all_digits(arg))
		return target_from_pid(strtol(arg, NULL, 10), t, 0);
	if (arg) {
		memset(t, 0, sizeof(*t));
		if (strstr(arg, "%p")) {
			fprintf(stderr,
				"connroute: '%s': give the PID instead, or the path with %%p "
				"replaced by it\n",
				arg);
			return -1;
		}
		if (cr_endpoint_parse(arg, 0, &t->ss, &t->len, NULL, 0) != 0) {
			fprintf(stderr,
				"connroute: '%s' is neither a PID nor an address; use e.g. 1234, "
				"127.0.0.1:9464, [::1]:9464 or unix:/run/connroute/1234.sock\n",
				arg);
			return -1;
		}
		snprintf(t->spec, sizeof(t->spec), "%s", arg);
		return 0;
	}
	struct target found[16];
	int n = scan_targets(found, 16);
	if (n == 1) {
		*t = found[0];
		return 0;
	}
	if (n == 0) {
		fprintf(stderr,
			"connroute: no process of yours runs under connroute with a metrics "
			"endpoint ([global] metrics); give a PID or an ADDRESS\n");
		return -1;
	}
	fprintf(stderr, "connroute: %d processes run under connroute; pick one:\n", n);
	for (int i = 0; i < n && i < 16; i++) {
		fprintf(stderr, "  %ld  %s", found[i].pid, found[i].spec);
		print_cmdline(found[i].pid, stderr);
		fputc('\n', stderr);
	}
	return -1;
}

/* ------------------------------------------------------------------ HTTP */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One request; *BODY malloc'd (NUL-terminated). Returns the HTTP status, or
 * -1 with a message printed. */
static int http(const struct target *t, const char *method, const char *path, char **body)
{
	int fd = socket(t->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int64_t deadline = mono_ms() + 5000;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int status = -1;
	*body = NULL;
	if (fd < 0) {
		fprintf(stderr, "connroute: socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)&t->ss, t->len) != 0) {
		if (errno != EINPROGRESS && errno != EAGAIN)
			goto conn_err;
		struct pollfd p = {fd, POLLOUT, 0};
		int err = 0;
		socklen_t el = sizeof(err);
		if (poll(&p, 1, 2000) != 1) {
			errno = ETIMEDOUT;
			goto conn_err;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
			errno = err ? err : errno;
			goto conn_err;
		}
	}
	char req[256];
	int rl = snprintf(req, sizeof(req),
			  "%s %s HTTP/1.0\r\nHost: connroute\r\nContent-Length: 0\r\n\r\n", method,
			  path);
	for (size_t off = 0; off < (size_t)rl;) {
		struct pollfd p = {fd, POLLOUT, 0};
		if (poll(&p, 1, (int)(deadline - mono_ms())) != 1)
			goto io_err;
		ssize_t w = send(fd, req + off, (size_t)rl - off, MSG_NOSIGNAL);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w <= 0)
			goto io_err;
		off += (size_t)w;
	}
	for (int i = 0; i < 1000000; i++) {
		int64_t left = deadline - mono_ms();
		struct pollfd p = {fd, POLLIN, 0};
		if (left <= 0 || poll(&p, 1, (int)left) != 1) {
			errno = ETIMEDOUT;
			goto io_err;
		}
		if (cap - n < 65536) {
			if (cap >= SCRAPE_MAX) {
				errno = EFBIG;
				goto io_err;
			}
			char *q = realloc(buf, cap ? cap * 2 : 131072);
			if (!q)
				goto io_err;
			buf = q;
			cap = cap ? cap * 2 : 131072;
		}
		ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0)
			goto io_err;
		if (k == 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	if (!buf) {
		fprintf(stderr, "connroute: %s: empty answer\n", t->spec);
		return -1;
	}
	buf[n] = '\0';
	char *sep = strstr(buf, "\r\n\r\n");
	if (strncmp(buf, "HTTP/1.", 7) != 0 || !sep || sscanf(buf + 8, " %d", &status) != 1) {
		fprintf(stderr, "connroute: %s: not an HTTP answer\n", t->spec);
		free(buf);
		return -1;
	}
	sep += 4;
	memmove(buf, sep, strlen(sep) + 1);
	*body = buf;
	return status;
conn_err:
	fprintf(stderr, "connroute: cannot connect to %s: %s%s\n", t->spec, strerror(errno),
		t->pid ? " (is the process routing yet? the endpoint starts with its first routed "
			 "connection)"
		       : "");
	close(fd);
	return -1;
io_err:
	fprintf(stderr, "connroute: %s: %s\n", t->spec, strerror(errno));
	free(buf);
	close(fd);
	return -1;
}

/* ----------------------------------------------------------- the scrape */

struct lanestat {
	char name[CR_NAME_MAX];
	double active, idle, queued, inflight, requests, overflows, retries, opened;
	int nle;
	double le[MAX_LE], cum[MAX_LE]; /* request duration buckets, summed over label sets */
};

/* An ejected address or a breaker not closed (resilience, lib/health.c). */
#define MAX_HEALTH 64
struct healthstat {
	char lane[CR_NAME_MAX], what[128];
	double v; /* seconds left (ejected) or state (1 open, 2 half-open) */
};

struct scrape {
	struct lanestat lane[MAX_LANES];
	int nlanes;
	struct healthstat ejected[MAX_HEALTH], breakers[MAX_HEALTH];
	int nejected, nbreakers;
	double unmatched, reload_ok, reload_err;
	long pid; /* connroute_build_info: whose endpoint; 0 if absent */
	char version[32];
};

/* Value of label NAME in LABELS (the text between braces), unescaped. */
static int label(const char *labels, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	const char *p = labels;
	for (int guard = 0; *p && guard < 64; guard++) {
		while (*p == ',' || *p == ' ')
			p++;
		const char *eq = strchr(p, '=');
		if (!eq || eq[1] != '"')
			return -1;
		int match = (size_t)(eq - p) == nl && !strncmp(p, name, nl);
		size_t k = 0;
		for (p = eq + 2; *p && *p != '"'; p++) {
			char c = *p;
			if (c == '\\' && p[1]) {
				c = *++p == 'n' ? '\n' : *p;
			}
			if (match && k + 1 < cap)
				out[k++] = c;
		}
		if (match) {
			out[k] = '\0';
			return 0;
		}
		if (*p == '"')
			p++;
	}
	return -1;
}

static struct lanestat *lane_get(struct scrape *s, const char *labels)
{
	char name[CR_NAME_MAX];
	if (label(labels, "lane", name, sizeof(name)) != 0)
		return NULL;
	for (int i = 0; i < s->nlanes; i++)
		if (!strcmp(s->lane[i].name, name))
			return &s->lane[i];
	if (s->nlanes >= MAX_LANES)
		return NULL;
	struct lanestat *l = &s->lane[s->nlanes++];
	memset(l, 0, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s", name);
	return l;
}

static void add_bucket(struct lanestat *l, double le, double v)
{
	for (int i = 0; i < l->nle; i++)
		if (l->le[i] == le) {
			l->cum[i] += v;
			return;
		}
	if (l->nle >= MAX_LE)
		return;
	int i = l->nle++;
	while (i > 0 && l->le[i - 1] > le) { /* keep sorted */
		l->le[i] = l->le[i - 1];
		l->cum[i] = l->cum[i - 1];
		i--;
	}
	l->le[i] = le;
	l->cum[i] = v;
}

static void parse_scrape(const char *text, struct scrape *s)
{
	memset(s, 0, sizeof(*s));
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (*p == '#' || *p == '\n')
			continue;
		char name[128], labels[1024] = "";
		size_t k = 0;
		while (p[k] && p[k] != '{' && p[k] != ' ' && p[k] != '\n' && k + 1 < sizeof(name)) {
			name[k] = p[k];
			k++;
		}
		name[k] = '\0';
		const char *q = p + k;
		if (*q == '{') {
			const char *end = strchr(q, '}');
			if (!end || (size_t)(end - q - 1) >= sizeof(labels))
				continue;
			memcpy(labels, q + 1, (size_t)(end - q - 1));
			labels[end - q - 1] = '\0';
			q = end + 1;
		}
		double v = strtod(q, NULL);
		if (!strcmp(name, "connroute_build_info")) {
			char pid[24];
			if (label(labels, "pid", pid, sizeof(pid)) == 0)
				s->pid = strtol(pid, NULL, 10);
			label(labels, "version", s->version, sizeof(s->version));
			continue;
		}
		if (!strcmp(name, "connroute_unmatched_keys_total")) {
			s->unmatched = v;
			continue;
		}
		if (!strcmp(name, "connroute_config_reloads_total")) {
			char r[16];
			if (label(labels, "result", r, sizeof(r)) == 0)
				*(strcmp(r, "ok") ? &s->reload_err : &s->reload_ok) += v;
			continue;
		}
		int ej = !strcmp(name, "connroute_ejected_remaining_seconds");
		if (ej || (!strcmp(name, "connroute_breaker_state") && v != 0)) {
			struct healthstat *h = ej ? &s->ejected[s->nejected]
						  : &s->breakers[s->nbreakers];
			if ((ej ? s->nejected : s->nbreakers) >= MAX_HEALTH ||
			    label(labels, "lane", h->lane, sizeof(h->lane)) != 0 ||
			    label(labels, ej ? "address" : "host", h->what, sizeof(h->what)) != 0)
				continue;
			h->v = v;
			ej ? s->nejected++ : s->nbreakers++;
			continue;
		}
		struct lanestat *l;
		if (strncmp(name, "connroute_", 10) && strncmp(name, "http_client_", 12))
			continue;
		if (!(l = lane_get(s, labels)))
			continue;
		if (!strcmp(name, "connroute_connections_active"))
			l->active += v;
		else if (!strcmp(name, "connroute_connections_opened_total"))
			l->opened += v;
		else if (!strcmp(name, "connroute_connections_idle"))
			l->idle += v;
		else if (!strcmp(name, "connroute_queued"))
			l->queued += v;
		else if (!strcmp(name, "connroute_inflight_requests"))
			l->inflight += v;
		else if (!strcmp(name, "http_client_requests_total"))
			l->requests += v;
		else if (!strcmp(name, "connroute_limit_overflows_total"))
			l->overflows += v;
		else if (!strcmp(name, "http_client_retry_count_total"))
			l->retries += v;
		else if (!strcmp(name, "http_client_request_duration_seconds_bucket")) {
			char le[32];
			if (label(labels, "le", le, sizeof(le)) == 0)
				add_bucket(l, strcmp(le, "+Inf") ? strtod(le, NULL) : INFINITY, v);
		}
	}
}

/* Quantile Q of cumulative buckets (LE ascending, the last +Inf), linear
 * within a bucket as Prometheus' histogram_quantile; NAN if empty. */
static double quantile(const double *le, const double *cum, int n, double q)
{
	if (n == 0 || cum[n - 1] <= 0)
		return NAN;
	double rank = q * cum[n - 1];
	for (int i = 0; i < n; i++) {
		if (cum[i] < rank)
			continue;
		if (isinf(le[i]))
			return i > 0 ? le[i - 1] : NAN; /* above the largest bound */
		double lo = i > 0 ? le[i - 1] : 0, below = i > 0 ? cum[i - 1] : 0;
		double in = cum[i] - below;
		return in > 0 ? lo + (le[i] - lo) * (rank - below) / in : le[i];
	}
	return NAN;
}

/* ----------------------------------------------------------------- table */

static void fmt_num(char *b, size_t n, double v)
{
	if (isnan(v))
		snprintf(b, n, "-");
	else
		snprintf(b, n, "%.0f", v);
}

static void fmt_ms(char *b, size_t n, double secs)
{
	if (isnan(secs))
		snprintf(b, n, "-");
	else if (secs * 1000 < 10)
		snprintf(b, n, "%.2f", secs * 1000);
	else
		snprintf(b, n, "%.1f", secs * 1000);
}

static const struct lanestat *find_prev(const struct scrape *prev, const char *name)
{
	for (int i = 0; prev && i < prev->nlanes; i++)
		if (!strcmp(prev->lane[i].name, name))
			return &prev->lane[i];
	return NULL;
}

/* PREV (may be NULL): the previous scrape, DT seconds earlier: req/s and
 * the quantiles are over that interval. */
static void print_table(const struct target *t, const struct scrape *s, const struct scrape *prev,
			double dt)
{
	char head[400];
	if (t->pid)
		snprintf(head, sizeof(head), "connroute stats: pid %ld, %s", t->pid, t->spec);
	else
		snprintf(head, sizeof(head), "connroute stats: %s", t->spec);
	printf("%s; latency %s\n", head, prev ? "over the last interval" : "since start");
	printf("%-16s %7s %6s %7s %9s %10s %8s %9s %9s %9s %8s %9s\n", "LANE", "ACTIVE", "IDLE",
	       "QUEUED", "INFLIGHT", "REQUESTS", "REQ/S", "P50(ms)", "P99(ms)", "OVERFLOWS",
	       "RETRIES", "UNMATCHED");
	for (int i = 0; i < s->nlanes; i++) {
		const struct lanestat *l = &s->lane[i], *p = prev ? find_prev(prev, l->name) : NULL;
		double cum[MAX_LE], rps = NAN;
		memcpy(cum, l->cum, sizeof(cum));
		if (prev) {
			double before = p ? p->requests : 0;
			rps = dt > 0 ? (l->requests - before) / dt : NAN;
			for (int k = 0; p && k < l->nle; k++)
				for (int j = 0; j < p->nle; j++)
					if (p->le[j] == l->le[k])
						cum[k] -= p->cum[j];
		}
		char a[16], id[16], qu[16], in[16], rq[24], rs[16], p50[16], p99[16], ov[16],
			re[16], um[16];
		fmt_num(a, sizeof(a), l->active);
		fmt_num(id, sizeof(id), l->idle);
		fmt_num(qu, sizeof(qu), l->queued);
		fmt_num(in, sizeof(in), l->inflight);
		fmt_num(rq, sizeof(rq), l->requests);
		if (isnan(rps))
			snprintf(rs, sizeof(rs), "-");
		else
			snprintf(rs, sizeof(rs), "%.1f", rps);
		fmt_ms(p50, sizeof(p50), quantile(l->le, cum, l->nle, 0.50));
		fmt_ms(p99, sizeof(p99), quantile(l->le, cum, l->nle, 0.99));
		fmt_num(ov, sizeof(ov), l->overflows);
		fmt_num(re, sizeof(re), l->retries);
		/* Unmatched keys fall back to lane default: shown on its row. */
		fmt_num(um, sizeof(um), strcmp(l->name, "default") ? NAN : s->unmatched);
		printf("%-16s %7s %6s %7s %9s %10s %8s %9s %9s %9s %8s %9s\n", l->name, a, id, qu,
		       in, rq, rs, p50, p99, ov, re, um);
	}
	if (s->nlanes == 0)
		printf("(no lane has seen traffic yet)\n");
	for (int i = 0; i < s->nejected; i++)
		printf("ejected: lane %s, address %s, %.1f s left\n", s->ejected[i].lane,
		       s->ejected[i].what, s->ejected[i].v);
	for (int i = 0; i < s->nbreakers; i++)
		printf("breaker: lane %s, host %s, %s\n", s->breakers[i].lane, s->breakers[i].what,
		       s->breakers[i].v == 1 ? "open" : "half-open");
	printf("config reloads: %.0f ok, %.0f rejected\n", s->reload_ok, s->reload_err);
}

/* ------------------------------------------------------------- commands */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void sleep_secs(double secs)
{
	struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
	/* Interrupted by SIGINT: return at once (no SA_RESTART). */
	while (!interrupted && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static void stats_usage(FILE *f)
{
	fputs("usage: connroute stats [OPTIONS] [PID | ADDRESS]\n"
	      "Per-lane table of a running process (active/idle connections, queued, in flight,\n"
	      "requests, req/s, p50/p99 latency, overflows, retries, unmatched keys), read from "
	      "its\n"
	      "metrics endpoint ([global] metrics of its config). PID: the endpoint is found from\n"
	      "the config the process reads (CONNROUTE_CONFIG, else " CONNROUTE_SYSCONF "; %p =\n"
	      "PID) and must answer as that process (connroute_build_info). ADDRESS: "
	      "127.0.0.1:9464,\n"
	      "[::1]:9464 or unix:/PATH. Neither: the one process of yours under connroute.\n"
	      "\n"
	      "  -w, --watch [SECS]  refresh every SECS (1) until Ctrl-C; req/s and the quantiles "
	      "are\n"
	      "                      over the interval (put PID before --watch)\n"
	      "  -n, --count N       stop after N refreshes\n"
	      "      --raw           the Prometheus text as served\n"
	      "      --json          one JSON object per refresh, for scripts\n"
	      "  -h, --help          this text\n"
	      "\n"
	      "Exit status: 0, 1 the endpoint cannot be read or is another process's, 2 bad "
	      "usage.\n",
	      f);
}

/* 0 when the endpoint answered as T's process; -1 (message printed) when it
 * is another's: two processes configured with one TCP address, the second
 * could not bind, and its PID would show the first one's figures. */
static int check_owner(const struct target *t, const struct scrape *s)
{
	if (!t->pid)
		return 0;
	if (!s->pid) {
		fprintf(stderr,
			"connroute: %s does not say which process serves it (no "
			"connroute_build_info): not process %ld's connroute endpoint; give the "
			"ADDRESS to read it anyway\n",
			t->spec, t->pid);
		return -1;
	}
	if (s->pid != t->pid) {
		fprintf(stderr,
			"connroute: %s is served by process %ld, not %ld: both are configured with "
			"that address and %ld could not bind it (its log says so); give each "
			"process its own, e.g. metrics = unix:/run/connroute/%%p.sock\n",
			t->spec, s->pid, t->pid, t->pid);
		return -1;
	}
	return 0;
}

static void json_str(const char *v)
{
	putchar('"');
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_num(const char *name, double v, int last)
{
	printf("\"%s\":", name);
	if (isnan(v) || isinf(v))
		printf("null");
	else if (v == (double)(long long)v && fabs(v) < 1e15)
		printf("%lld", (long long)v);
	else
		printf("%.6g", v);
	if (!last)
		putchar(',');
}

static void print_json(const struct target *t, const struct scrape *s, const struct scrape *prev,
		       double dt)
{
	printf("{\"pid\":");
	if (s->pid)
		printf("%ld", s->pid);
	else
		printf("null");
	printf(",\"version\":");
	json_str(s->version);
	printf(",\"endpoint\":");
	json_str(t->spec);
	printf(",\"interval_s\":");
	if (prev)
		printf("%.3f", dt);
	else
		printf("null");
	printf(",\"lanes\":[");
	for (int i = 0; i < s->nlanes; i++) {
		const struct lanestat *l = &s->lane[i], *p = prev ? find_prev(prev, l->name) : NULL;
		double cum[MAX_LE], rps = NAN;
		memcpy(cum, l->cum, sizeof(cum));
		if (prev) {
			rps = dt > 0 ? (l->requests - (p ? p->requests : 0)) / dt : NAN;
			for (int k = 0; p && k < l->nle; k++)
				for (int j = 0; j < p->nle; j++)
					if (p->le[j] == l->le[k])
						cum[k] -= p->cum[j];
		}
		printf("%s{\"lane\":", i ? "," : "");
		json_str(l->name);
		putchar(',');
		json_num("active", l->active, 0);
		json_num("idle", l->idle, 0);
		json_num("queued", l->queued, 0);
		json_num("inflight", l->inflight, 0);
		json_num("requests", l->requests, 0);
		json_num("requests_per_s", rps, 0);
		json_num("p50_ms", quantile(l->le, cum, l->nle, 0.50) * 1000, 0);
		json_num("p99_ms", quantile(l->le, cum, l->nle, 0.99) * 1000, 0);
		json_num("overflows", l->overflows, 0);
		json_num("retries", l->retries, 1);
		putchar('}');
	}
	printf("],\"ejected\":[");
	for (int i = 0; i < s->nejected; i++) {
		printf("%s{\"lane\":", i ? "," : "");
		json_str(s->ejected[i].lane);
		printf(",\"address\":");
		json_str(s->ejected[i].what);
		printf(",\"seconds_left\":%.3f}", s->ejected[i].v);
	}
	printf("],\"breakers\":[");
	for (int i = 0; i < s->nbreakers; i++) {
		printf("%s{\"lane\":", i ? "," : "");
		json_str(s->breakers[i].lane);
		printf(",\"host\":");
		json_str(s->breakers[i].what);
		printf(",\"state\":\"%s\"}", s->breakers[i].v == 1 ? "open" : "half-open");
	}
	printf("],");
	json_num("unmatched_keys", s->unmatched, 0);
	printf("\"reloads\":{");
	json_num("ok", s->reload_ok, 0);
	json_num("rejected", s->reload_err, 1);
	printf("}}\n");
}

int cr_cli_stats(int argc, char **argv)
{
	enum { O_RAW = 256, O_JSON };
	static const struct option longs[] = {
		{"watch", optional_argument, 0, 'w'}, {"count", required_argument, 0, 'n'},
		{"raw", no_argument, 0, O_RAW},       {"json", no_argument, 0, O_JSON},
		{"help", no_argument, 0, 'h'},        {0, 0, 0, 0},
	};
	const char *arg = NULL;
	double every = 0;
	long count = 0;
	int raw = 0, json = 0, c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hw::n:", longs, NULL)) != -1) {
		switch (c) {
		case 'w': {
			const char *v = optarg;
			char *end;
			every = 1;
			/* `--watch 2` as well as `--watch=2`: a number right after it */
			if (!v && optind < argc && argv[optind][0] != '-') {
				strtod(argv[optind], &end);
				if (!*end && end != argv[optind] &&
				    strchr(argv[optind], '.') == NULL &&
				    strtol(argv[optind], NULL, 10) > 3600)
					v = NULL; /* a PID, not seconds */
				else if (!*end && end != argv[optind])
					v = argv[optind++];
			}
			if (v) {
				double x = strtod(v, &end);
				if (*end || end == v || !(x >= 0.1 && x <= 3600)) {
					fprintf(stderr,
						"connroute stats: --watch %s: give 0.1 to 3600 "
						"seconds\n",
						v);
					return CLI_USAGE;
				}
				every = x;
			}
			break;
		}
		case 'n': {
			char *end;
			count = strtol(optarg, &end, 10);
			if (count < 1 || *end) {
				fprintf(stderr, "connroute stats: --count needs a number of "
						"refreshes (1 or more)\n");
				return CLI_USAGE;
			}
			break;
		}
		case O_RAW: raw = 1; break;
		case O_JSON: json = 1; break;
		case 'h': stats_usage(stdout); return CLI_OK;
		default: return cr_cli_bad_option("stats", argv, optind, optopt);
		}
	}
	if (raw && json) {
		fprintf(stderr, "connroute stats: --raw or --json, not both\n");
		return CLI_USAGE;
	}
	if (argc - optind > 1) {
		fprintf(stderr,
			"connroute stats: one PID or ADDRESS only; see connroute stats --help\n");
		return CLI_USAGE;
	}
	if (optind < argc)
		arg = argv[optind];
	struct target t;
	if (resolve(arg, &t) != 0)
		return CLI_FAIL;

	struct sigaction sa = {0};
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: it ends the sleep */

	static struct scrape s[2];
	int cur = 0, have_prev = 0, tty = isatty(1) && !json;
	int64_t t_prev = 0;
	for (long frame = 0; !interrupted; frame++) {
		char *body;
		int st = http(&t, "GET", "/metrics", &body);
		int64_t t_now = mono_ms();
		if (st < 0)
			return CLI_FAIL;
		if (st != 200) {
			fprintf(stderr, "connroute stats: %s answered %d: %.200s\n", t.spec, st,
				body);
			free(body);
			return CLI_FAIL;
		}
		parse_scrape(body, &s[cur]);
		if (check_owner(&t, &s[cur]) != 0) {
			free(body);
			return CLI_FAIL;
		}
		if (every > 0 && tty)
			fputs("\033[H\033[2J", stdout);
		else if (frame > 0 && !json)
			putchar('\n');
		double dt = (double)(t_now - t_prev) / 1000.0;
		if (raw)
			fputs(body, stdout);
		else if (json)
			print_json(&t, &s[cur], have_prev ? &s[!cur] : NULL, dt);
		else
			print_table(&t, &s[cur], have_prev ? &s[!cur] : NULL, dt);
		have_prev = 1;
		cur = !cur;
		free(body);
		fflush(stdout);
		t_prev = t_now;
		if (every <= 0 || (count > 0 && frame + 1 >= count))
			break;
		sleep_secs(every);
	}
	return CLI_OK;
}

void cr_cli_lanes_seen(long pid, FILE *out)
{
	struct target t;
	static struct scrape s;
	char *body;
	char spec[24];
	snprintf(spec, sizeof(spec), "%ld", pid);
	fflush(stdout);
	if (resolve(spec, &t) != 0) {
		fprintf(out, "lanes:        unknown: no metrics endpoint to ask (above)\n");
		return;
	}
	int st = http(&t, "GET", "/metrics", &body);
	if (st != 200) {
		fprintf(out, "lanes:        unknown: %s did not answer\n", t.spec);
		if (st >= 0)
			free(body);
		return;
	}
	parse_scrape(body, &s);
	free(body);
	if (check_owner(&t, &s) != 0) {
		fprintf(out, "lanes:        unknown: the endpoint is another process's\n");
		return;
	}
	int shown = 0;
	for (int i = 0; i < s.nlanes; i++) {
		const struct lanestat *l = &s.lane[i];
		if (!(l->opened > 0 || l->requests > 0 || l->overflows > 0))
			continue; /* named by the config, never used */
		fprintf(out,
			"%s %s (%.0f connections open, %.0f requests, %.0f refused at the limit)\n",
			shown++ ? "             " : "lanes used:  ", l->name, l->active,
			l->requests, l->overflows);
	}
	if (!shown)
		fprintf(out, "lanes used:   none yet\n");
	if (s.unmatched > 0)
		fprintf(out,
			"unmatched:    %.0f routing decisions used lane default for a key no lane "
			"matches (the keys are logged once each at info)\n",
			s.unmatched);
}

int cr_cli_reload(int argc, char **argv)
{
	static const struct option longs[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		if (c == 'h') {
			fputs("usage: connroute reload PID | ADDRESS\n"
			      "Make a running process re-read its config file now (it also looks "
			      "for changes\n"
			      "every second). Prints applied, unchanged or rejected.\n"
			      "\n"
			      "  -h, --help   this text\n"
			      "\n"
			      "Exit status: 0 applied or unchanged, 1 rejected (the process keeps "
			      "its current\n"
			      "config; its log has the FILE:LINE), 2 bad usage, 3 the endpoint "
			      "cannot be\n"
			      "reached or is another process's.\n",
			      stdout);
			return CLI_OK;
		}
		return cr_cli_bad_option("reload", argv, optind, optopt);
	}
	if (argc - optind != 1) {
		fprintf(stderr,
			"connroute reload: give one PID or ADDRESS; see connroute reload --help\n");
		return CLI_USAGE;
	}
	struct target t;
	if (resolve(argv[optind], &t) != 0)
		return 3;
	char *body, path[64] = "/reload";
	/* The process checks the pid itself: another process at the same
	 * address answers 412 and does not reload. */
	if (t.pid)
		snprintf(path, sizeof(path), "/reload?pid=%ld", t.pid);
	int st = http(&t, "POST", path, &body);
	if (st < 0)
		return 3;
	char word[32] = "";
	long who = 0;
	const char *p = strstr(body, "pid=");
	sscanf(body, "%31[a-z-]", word);
	if (p)
		who = strtol(p + 4, NULL, 10);
	int rc;
	if (st == 412 || (t.pid && who && who != t.pid)) {
		fprintf(stderr,
			"connroute reload: %s is served by process %ld, not %ld: nothing was "
			"reloaded; give each process its own metrics address (e.g. "
			"unix:/run/connroute/%%p.sock)\n",
			t.spec, who, t.pid);
		rc = 3;
	} else if (t.pid && !who) {
		fprintf(stderr,
			"connroute reload: %s did not say which process answered: not process "
			"%ld's connroute endpoint, or an older connroute\n",
			t.spec, t.pid);
		rc = 3;
	} else if (!strcmp(word, "applied") || !strcmp(word, "unchanged")) {
		printf("%s\n", word);
		rc = 0;
	} else if (!strcmp(word, "rejected")) {
		printf("rejected\n");
		fprintf(stderr,
			"connroute reload: the new config was rejected; the process keeps its "
			"current one. Its log has the FILE:LINE; or run `connroute check %s`\n",
			t.config[0] ? t.config : "FILE");
		rc = 1;
	} else {
		fprintf(stderr, "connroute reload: %s answered %d: %.200s\n", t.spec, st, body);
		rc = 3;
	}
	free(body);
	return rc;
}
