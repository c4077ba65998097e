/* The access log (lib/alog.c, lib/alog_writer.c, lib/config_alog.c): the
 * ring (order, a full ring drops and counts, never waits), what a record
 * keeps (query, fragment, bounded path, sampling, slow filter), the JSON
 * line (escaping, time, nulls), the config keys (inheritance from [global],
 * opting out, bad values, pass-through), and the writer (0600 files, the
 * trust rules for the directory, rotation, a host that closed our fd).
 * Criterion runs each test in its own process: the ring starts empty. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "alog.h"
#include "alog_writer.h"
#include "cfgref.h"
#include "config.h"
#include "config_int.h"
#include "engine.h"

static struct cr_config *load(const char *text)
{
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag *d = calloc(1, sizeof(*d));
	cr_assert_not_null(cfg);
	int rc = cr_config_load_string(text, "alog.conf", cfg, d);
	cr_assert_eq(rc, 0, "%s", d->n ? d->msg[0] : "?");
	free(d);
	for (int i = 0; i < cfg->nlanes; i++)
		cfg->lanes[i].id = i;
	return cfg;
}

static const char *load_error(const char *text)
{
	static struct cr_diag d;
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	int rc = cr_config_load_string(text, "alog.conf", cfg, &d);
	free(cfg);
	cr_assert_neq(rc, 0, "accepted: %s", text);
	return d.msg[0];
}

static const struct cr_lane *lane(const struct cr_config *cfg, const char *name)
{
	int i = cr_config_find_lane(cfg, name);
	cr_assert_geq(i, 0, "no lane %s", name);
	return &cfg->lanes[i];
}

static void call(const struct cr_lane *l, const char *path, int64_t total_ns)
{
	struct cr_alog_call c = {.lane = l, .kind = CR_ALOG_HTTP, .key = "api/x", .method = "GET",
				 .scheme = "http", .host = "h.example", .server_port = 80, .path = path,
				 .status = 200, .reused = 1, .warm = 0};
	for (int i = 0; i < CR_AD_N; i++)
		c.dur_ns[i] = -1;
	c.dur_ns[CR_AD_TOTAL] = total_ns;
	cr_alog_put(&c);
}

static const char *rstr(const struct cr_alog_rec *r, int i)
{
	return r->str_off[i] == CR_ALOG_NOSTR ? NULL : r->str + r->str_off[i];
}

static struct cr_alog_rec out[CR_ALOG_BUFFER_MAX];

/* Nothing left for the exit-time flush of the test's process. */
static void empty(void)
{
	cr_alog_reset(0);
}

/* ------------------------------------------------------------------ ring */

Test(alog, records_come_out_in_order_and_the_ring_empties, .fini = empty)
{
	struct cr_config *cfg = load("[global]\naccess_log = stderr\n[lane api]\nmatch = api/*\n");
	const struct cr_lane *l = lane(cfg, "api");
	char p[32];
	cr_alog_reset(16);
	for (int i = 0; i < 10; i++) {
		snprintf(p, sizeof(p), "/r%d", i);
		call(l, p, 1000);
	}
	cr_expect_eq(cr_alog_pending(), 10);
	cr_assert_eq(cr_alog_take(out, 4), 4);
	cr_assert_eq(cr_alog_take(out + 4, 100), 6);
	for (int i = 0; i < 10; i++) {
		snprintf(p, sizeof(p), "/r%d", i);
		cr_expect_str_eq(rstr(&out[i], CR_AS_PATH), p);
		cr_expect_eq(out[i].lane, l->id);
	}
	cr_expect_eq(cr_alog_pending(), 0);
	cr_expect_eq(cr_alog_take(out, 100), 0);
	cr_expect_eq(cr_alog_dropped(l->id), 0);
	free(cfg);
}

Test(alog, a_full_ring_drops_and_counts_and_takes_more_once_drained, .fini = empty)
{
	struct cr_config *cfg = load("[global]\naccess_log = stderr\n[lane api]\nmatch = api/*\n");
	const struct cr_lane *l = lane(cfg, "api");
	cr_alog_reset(8);
	for (int i = 0; i < 50; i++)
		call(l, "/x", 1000);
	cr_expect_eq(cr_alog_capacity(), 8);
	cr_expect_eq(cr_alog_pending(), 8);
	cr_expect_eq(cr_alog_dropped(l->id), 42, "every record past the ring's 8 is counted");
	cr_expect_eq(cr_alog_take(out, 100), 8);
	call(l, "/after", 1000);
	cr_assert_eq(cr_alog_take(out, 100), 1);
	cr_expect_str_eq(rstr(&out[0], CR_AS_PATH), "/after");
	free(cfg);
}

Test(alog, the_ring_size_comes_from_the_config, .fini = empty)
{
	struct cr_config *cfg = load("[global]\naccess_log = stderr\naccess_log_buffer = 32\n");
	cr_engine_publish(cfg);
	cr_alog_reset(0);
	call(&cfg->lanes[cfg->default_lane], "/", 1);
	cr_expect_eq(cr_alog_capacity(), 32);
}

/* ------------------------------------------------------------ what is kept */

Test(alog, no_query_no_fragment_unless_asked, .fini = empty)
{
	struct cr_config *cfg = load("[global]\naccess_log = stderr\n[lane q]\nmatch = q\n"
				     "access_log_query = on\n[lane n]\nmatch = n\n");
	cr_alog_reset(16);
	call(lane(cfg, "n"), "/a/b?token=SECRET#frag", 1);
	call(lane(cfg, "q"), "/a/b?page=2#frag", 1);
	call(lane(cfg, "n"), "?only=query", 1);
	cr_assert_eq(cr_alog_take(out, 16), 3);
	cr_expect_str_eq(rstr(&out[0], CR_AS_PATH), "/a/b");
	cr_expect_str_eq(rstr(&out[1], CR_AS_PATH), "/a/b?page=2");
	cr_expect_str_eq(rstr(&out[2], CR_AS_PATH), "");
	free(cfg);
}

Test(alog, a_long_path_is_cut_and_every_string_bounded, .fini = empty)
{
	struct cr_config *cfg = load("[global]\naccess_log = stderr\n");
	char path[4096], host[300];
	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	cr_alog_reset(8);
	struct cr_alog_call c = {.lane = &cfg->lanes[0], .kind = CR_ALOG_HTTP, .key = "k", .host = host,
				 .path = path, .method = "AVERYLONGCUSTOMMETHODNAME"};
	for (int i = 0; i < CR_AD_N; i++)
		c.dur_ns[i] = -1;
	cr_alog_put(&c);
	c.host = "h";
	cr_alog_put(&c);
	cr_assert_eq(cr_alog_take(out, 8), 2);
	/* the path gets what the other strings leave, at most CR_ALOG_PATH_MAX */
	cr_expect_eq(strlen(rstr(&out[0], CR_AS_HOST)), CR_HOST_MAX - 1);
	cr_expect_eq(strlen(rstr(&out[0], CR_AS_METHOD)), 15);
	cr_expect_leq(strlen(rstr(&out[0], CR_AS_PATH)), CR_ALOG_PATH_MAX);
	cr_expect_geq(strlen(rstr(&out[0], CR_AS_PATH)), 200);
	cr_expect_eq(strlen(rstr(&out[1], CR_AS_PATH)), CR_ALOG_PATH_MAX);
	free(cfg);
}

Test(alog, slow_filter_and_sampling, .fini = empty)
{
	struct cr_config *cfg = load("[global]\naccess_log = stderr\n[lane slow]\nmatch = s\n"
				     "access_log_slow = 100ms\n[lane half]\nmatch = h\naccess_log_sample = 0.5\n"
				     "[lane none]\nmatch = n\naccess_log_sample = 0\n");
	cr_alog_reset(4096);
	call(lane(cfg, "slow"), "/fast", 99999999);
	call(lane(cfg, "slow"), "/slow", 100000000);
	cr_assert_eq(cr_alog_take(out, 16), 1);
	cr_expect_str_eq(rstr(&out[0], CR_AS_PATH), "/slow");
	for (int i = 0; i < 2000; i++) {
		call(lane(cfg, "half"), "/h", 1);
		call(lane(cfg, "none"), "/n", 1);
	}
	size_t n = cr_alog_take(out, 4096);
	cr_expect(n > 850 && n < 1150, "sample 0.5 kept %zu of 2000", n);
	for (size_t i = 0; i < n; i++)
		cr_expect_str_eq(rstr(&out[i], CR_AS_PATH), "/h");
	cr_expect_eq(lane(cfg, "none")->alog_on, 0);
	free(cfg);
}

Test(alog, a_lane_turned_off_fills_nothing_and_put_keeps_errno, .fini = empty)
{
	struct cr_config *cfg = load("[global]\naccess_log = stderr\n");
	cr_alog_reset(8);
	cr_alog_lane_off(cfg->lanes[0].id, 1);
	errno = 1234;
	call(&cfg->lanes[0], "/", 1);
	cr_expect_eq(cr_alog_pending(), 0);
	cr_alog_lane_off(cfg->lanes[0].id, 0);
	call(&cfg->lanes[0], "/", 1);
	cr_expect_eq(cr_alog_pending(), 1);
	cr_expect_eq(errno, 1234);
	free(cfg);
}

Test(alog, raw_connect_records, .fini = empty)
{
	struct cr_config *cfg = load("[global]\naccess_log = stderr\n");
	struct cr_dest d = {.family = AF_INET, .addr = {127, 0, 0, 1}, .port = 8080};
	cr_alog_reset(8);
	cr_alog_connect(&cfg->lanes[0], "raw/x", &d, 5000, 70000, 0, 0);
	cr_alog_connect(&cfg->lanes[0], "raw/x", &d, 0, -1, EINPROGRESS, 0);
	cr_alog_connect(&cfg->lanes[0], "raw/x", &d, 0, 20000, ECONNREFUSED, 0);
	cr_alog_connect(&cfg->lanes[0], "raw/x", &d, 1000000, -1, ETIMEDOUT, CR_ALOG_F_OVERFLOW);
	cr_alog_connect(&cfg->lanes[0], "raw/x", &d, 0, 900, 0, CR_ALOG_F_WARM);
	cr_assert_eq(cr_alog_take(out, 8), 5);
	cr_expect_eq(out[0].outcome, CR_ALOG_OK);
	cr_expect_eq(out[0].dur_ns[CR_AD_TOTAL], 75000);
	cr_expect_null(rstr(&out[0], CR_AS_ERROR));
	cr_expect_eq(out[1].outcome, CR_ALOG_OK);
	cr_expect_eq(out[1].dur_ns[CR_AD_CONNECT], -1);
	cr_expect_str_eq(rstr(&out[2], CR_AS_ERROR), "ECONNREFUSED");
	cr_expect_eq(out[2].outcome, CR_ALOG_ERROR);
	cr_expect_eq(out[3].outcome, CR_ALOG_OVERFLOW);
	cr_expect_str_eq(rstr(&out[3], CR_AS_ERROR), "ETIMEDOUT");
	cr_expect_eq(out[4].warm, 1);
	cr_expect_eq(out[0].peer_port, 8080);
	free(cfg);
}

/* ------------------------------------------------------------------ JSON */

Test(alog, the_json_line_of_a_request, .fini = empty)
{
	struct cr_alog_rec r;
	memset(&r, 0, sizeof(r));
	for (int i = 0; i < CR_AD_N; i++)
		r.dur_ns[i] = -1;
	r.wall_ns = 1709251199123456789ll; /* 2024-02-29T23:59:59.123456Z */
	r.dur_ns[CR_AD_DNS] = 1500;
	r.dur_ns[CR_AD_CONNECT] = 250000;
	r.dur_ns[CR_AD_TTFB] = 1999999;
	r.dur_ns[CR_AD_TOTAL] = 2000000000;
	r.dur_ns[CR_AD_QUEUE] = 0;
	r.status = 503;
	r.tid = 7;
	r.server_port = 443;
	r.peer_port = 443;
	r.local_port = 50000;
	r.kind = CR_ALOG_HTTP;
	r.outcome = CR_ALOG_HTTP_ERROR;
	r.reused = 0;
	r.warm = 1;
	r.resends = 2;
	r.peer_family = AF_INET;
	memcpy(r.peer_addr, "\x0a\x00\x00\x05", 4);
	const char *s[CR_AS_N] = {"pay/critical", "POST", "https", "api.example", "/v1/\"q\"\x01\xff\xc3\xa9",
				  "503", "10.0.0.5"};
	size_t used = 0;
	for (int i = 0; i < CR_AS_N; i++) {
		r.str_off[i] = (uint16_t)used;
		memcpy(r.str + used, s[i], strlen(s[i]) + 1);
		used += strlen(s[i]) + 1;
	}
	char buf[4096];
	size_t n = cr_alog_format(&r, "api", 42, buf, sizeof(buf));
	cr_expect_str_eq(buf,
			 "{\"time\":\"2024-02-29T23:59:59.123456Z\",\"connroute.kind\":\"http\","
			 "\"connroute.lane\":\"api\",\"connroute.key\":\"pay/critical\","
			 "\"http.request.method\":\"POST\",\"url.scheme\":\"https\","
			 "\"server.address\":\"api.example\",\"server.port\":443,"
			 "\"url.path\":\"/v1/\\\"q\\\"\\u0001\\ufffd\xc3\xa9\",\"http.response.status_code\":503,"
			 "\"error.type\":\"503\",\"network.peer.address\":\"10.0.0.5\",\"network.peer.port\":443,"
			 "\"network.local.port\":50000,\"dns\":0.000002,\"connect\":0.000250,\"tls\":null,"
			 "\"ttfb\":0.002000,\"total\":2.000000,\"queue\":0.000000,\"reused\":false,\"warm\":true,"
			 "\"http.request.resend_count\":2,\"outcome\":\"http_error\",\"pid\":42,\"tid\":7}\n");
	cr_expect_eq(n, strlen(buf));
	cr_expect_eq(cr_alog_format(&r, "api", 42, buf, 100), 0, "a line that does not fit is refused");
}

Test(alog, the_json_line_of_a_raw_connect, .fini = empty)
{
	struct cr_config *cfg = load("[global]\naccess_log = stderr\n");
	struct cr_dest d = {.family = AF_INET6, .addr = {[15] = 1}, .port = 5432};
	cr_alog_reset(8);
	cr_alog_connect(&cfg->lanes[0], "db", &d, 0, 1000000, ECONNREFUSED, 0);
	cr_assert_eq(cr_alog_take(out, 8), 1);
	char buf[4096];
	cr_assert_gt(cr_alog_format(&out[0], "default", 1, buf, sizeof(buf)), 0);
	cr_expect(strstr(buf, "\"connroute.kind\":\"connect\",\"connroute.lane\":\"default\","
			      "\"connroute.key\":\"db\",\"server.address\":\"::1\",\"server.port\":5432,"
			      "\"error.type\":\"ECONNREFUSED\",\"network.peer.address\":\"::1\","
			      "\"network.peer.port\":5432,\"connect\":0.001000,\"total\":0.001000,"
			      "\"queue\":0.000000,\"warm\":false,\"outcome\":\"error\""),
		  "%s", buf);
	cr_expect_null(strstr(buf, "http."), "no HTTP field in a connect line: %s", buf);
	free(cfg);
}

/* Resilience refusals (lib/health.c): their own outcomes. */
Test(alog, a_raw_connect_refused_by_ejection_or_breaker, .fini = empty)
{
	struct cr_config *cfg = load("[global]\naccess_log = stderr\n");
	struct cr_dest d = {.family = AF_INET, .addr = {127, 0, 0, 2}, .port = 80};
	cr_alog_reset(8);
	cr_alog_connect(&cfg->lanes[0], "db", &d, 0, -1, ECONNREFUSED, CR_ALOG_F_EJECTED);
	cr_alog_connect(&cfg->lanes[0], "db", &d, 0, -1, ECONNREFUSED, CR_ALOG_F_BREAKER);
	cr_assert_eq(cr_alog_take(out, 8), 2);
	char buf[4096];
	cr_assert_gt(cr_alog_format(&out[0], "default", 1, buf, sizeof(buf)), 0);
	cr_expect(strstr(buf, "\"error.type\":\"ECONNREFUSED\"") &&
			  strstr(buf, "\"outcome\":\"ejected\""),
		  "%s", buf);
	cr_assert_gt(cr_alog_format(&out[1], "default", 1, buf, sizeof(buf)), 0);
	cr_expect(strstr(buf, "\"outcome\":\"breaker_open\""), "%s", buf);
	free(cfg);
}

/* ---------------------------------------------------------------- config */

Test(alog_config, lanes_take_the_global_values_unless_they_set_their_own, .fini = empty)
{
	struct cr_config *cfg = load("[lane a]\nmatch = a\naccess_log_slow = 2s\n"
				     "[lane b]\nmatch = b\naccess_log = off\n"
				     "[lane c]\nmatch = c\naccess_log = unix:/run/c.sock\naccess_log_query = on\n"
				     "[global]\naccess_log = /var/log/cr/%p.log\naccess_log_sample = 10%\n"
				     "access_log_slow = 250ms\n");
	const struct cr_lane *a = lane(cfg, "a"), *b = lane(cfg, "b"), *c = lane(cfg, "c"),
			     *d = lane(cfg, "default");
	cr_expect_str_eq(a->access_log, "/var/log/cr/%p.log");
	cr_expect_eq(a->access_log_slow_ms, 2000);
	cr_expect(a->access_log_sample > 0.0999 && a->access_log_sample < 0.1001);
	cr_expect_eq(a->alog_on, 1);
	cr_expect_eq(a->passthrough, 0, "a logging lane's raw connects are logged");
	cr_expect_eq(b->alog_on, 0, "access_log = off opts a lane out");
	cr_expect_str_eq(c->access_log, "unix:/run/c.sock");
	cr_expect_eq(c->access_log_query, 1);
	cr_expect_eq(c->access_log_slow_ms, 250);
	cr_expect_eq(d->alog_on, 1, "the implicit default lane inherits too");
	cr_expect_eq(d->passthrough, 0);
	/* finishing twice changes nothing (off stays off) */
	cr_config_finish(cfg);
	cr_expect_eq(lane(cfg, "b")->alog_on, 0);
	free(cfg);
}

Test(alog_config, without_a_log_nothing_changes, .fini = empty)
{
	struct cr_config *cfg = load("[lane a]\nmatch = a\n");
	cr_expect_eq(lane(cfg, "a")->alog_on, 0);
	cr_expect_eq(lane(cfg, "default")->alog_on, 0);
	cr_expect_eq(lane(cfg, "default")->passthrough, 1);
	cr_expect_eq(cfg->access_log_mode, 0600);
	cr_expect_eq(cfg->access_log_buffer, CR_ALOG_BUFFER_DEFAULT);
	free(cfg);
}

Test(alog_config, bad_values_are_errors_with_a_fix, .fini = empty)
{
	cr_expect_str_eq(load_error("[global]\naccess_log = logs/a.log\n"),
			 "alog.conf:2: access_log 'logs/a.log' is not an absolute path; use "
			 "/var/log/connroute/access.log, stderr, unix:/PATH or off");
	cr_expect_str_eq(load_error("[lane a]\naccess_log = /var/log/%d.log\n"),
			 "alog.conf:2: access_log path '/var/log/%d.log': only %p (the process id) is "
			 "expanded; remove the other '%'");
	cr_expect_str_eq(load_error("[lane a]\naccess_log = /var/log/\n"),
			 "alog.conf:2: access_log '/var/log/' names a directory; add a file name (e.g. "
			 "/var/log/access.log)");
	cr_expect_str_eq(load_error("[lane a]\naccess_log = unix:run/x\n"),
			 "alog.conf:2: access_log socket 'run/x' is not an absolute path; use "
			 "unix:/run/collector.sock");
	cr_expect_str_eq(load_error("[lane a]\naccess_log_sample = 1.5\n"),
			 "alog.conf:2: bad value '1.5' for access_log_sample; use a fraction from 0 to 1 "
			 "(0.1 logs one call in ten) or a percentage (10%)");
	cr_expect_str_eq(load_error("[global]\naccess_log_slow = 5\n"),
			 "alog.conf:2: duration '5' for access_log_slow has no unit; write 5s or 5ms");
	cr_expect_str_eq(load_error("[global]\naccess_log_mode = 0777\n"),
			 "alog.conf:2: bad value '0777' for access_log_mode; use octal permissions for a "
			 "file the owner can read and write, at most 0666 (e.g. 0640)");
	cr_expect_str_eq(load_error("[global]\naccess_log_buffer = 1000\n"),
			 "alog.conf:2: bad value '1000' for access_log_buffer; use a power of two from 8 "
			 "to 4096 (records)");
	cr_expect_str_eq(load_error("[lane a]\naccess_log_buffer = 64\n"),
			 "alog.conf:2: 'access_log_buffer' in [lane a] belongs in [global]; move it there");
}

/* ---------------------------------------------------------------- writer */

static char dir[256];

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/cr-alog-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_expect_eq(system(cmd), 0);
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;
	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* Publishes a config logging to DIR/NAME (unix:DIR/NAME with UNIX), with lane ids from
 * the engine. */
static struct cr_config *publish_to(const char *name, int unix_sock)
{
	char text[512];
	snprintf(text, sizeof(text), "[global]\naccess_log = %s%s/%s\n", unix_sock ? "unix:" : "", dir,
		 name);
	struct cr_config *cfg = load(text);
	cr_engine_publish(cfg);
	return cfg;
}

static struct cr_config *publish_log(const char *name)
{
	return publish_to(name, 0);
}

Test(alog_writer, writes_lines_to_a_new_0600_file_and_reopens_after_a_rename, .fini = empty)
{
	char path[400], moved[400];
	struct stat st;
	mkdir_tmp();
	umask(022);
	struct cr_config *cfg = publish_log("a.log");
	snprintf(path, sizeof(path), "%s/a.log", dir);
	snprintf(moved, sizeof(moved), "%s/a.log.1", dir);
	cr_alog_reset(64);
	call(&cfg->lanes[0], "/one", 1);
	call(&cfg->lanes[0], "/two", 1);
	cr_alog_writer_flush();
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600);
	cr_expect_eq(count_lines(path), 2);

	cr_assert_eq(rename(path, moved), 0); /* logrotate's rename, no copytruncate */
	call(&cfg->lanes[0], "/three", 1);
	cr_alog_writer_flush();
	cr_expect_eq(count_lines(moved), 2);
	cr_expect_eq(count_lines(path), 1, "the renamed file is left alone, a new one made");
	rm_tmp();
}

Test(alog_writer, a_host_that_closed_our_fd_keeps_its_own_file, .fini = empty)
{
	char path[400], mine[400];
	mkdir_tmp();
	struct cr_config *cfg = publish_log("b.log");
	snprintf(path, sizeof(path), "%s/b.log", dir);
	snprintf(mine, sizeof(mine), "%s/host.txt", dir);
	cr_alog_reset(64);
	call(&cfg->lanes[0], "/one", 1);
	cr_alog_writer_flush();
	cr_assert_eq(count_lines(path), 1);
	/* the host closes our fd (closefrom...) and its own file gets the number */
	int top = -1;
	char link[64], to[400];
	for (int fd = 3; fd < 8192 && top < 0; fd++) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, to, sizeof(to) - 1);
		if (n > 0 && (to[n] = '\0', strcmp(to, path) == 0))
			top = fd;
	}
	cr_assert_gt(top, 2, "the log's fd is open");
	close(top);
	int hfd = open(mine, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(hfd, 0);
	if (hfd != top)
		cr_assert_eq(dup2(hfd, top), top);
	call(&cfg->lanes[0], "/two", 1);
	cr_alog_writer_flush();
	cr_expect_eq(count_lines(mine), 0, "a log line went into the host's file");
	cr_expect_eq(count_lines(path), 2);
	rm_tmp();
}

Test(alog_writer, a_symlink_in_a_world_writable_directory_is_never_followed, .fini = empty)
{
	char path[400], target[400], sub[400];
	mkdir_tmp();
	snprintf(sub, sizeof(sub), "%s/pub", dir);
	cr_assert_eq(mkdir(sub, 0777), 0);
	cr_assert_eq(chmod(sub, 01777), 0);
	snprintf(target, sizeof(target), "%s/victim", dir);
	int fd = open(target, O_WRONLY | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/pub/x.log", dir);
	cr_assert_eq(symlink(target, path), 0);
	struct cr_config *cfg = publish_log("pub/x.log");
	cr_alog_reset(64);
	call(&cfg->lanes[0], "/one", 1);
	cr_alog_writer_flush();
	cr_expect_eq(count_lines(target), 0, "the log followed a planted link");
	/* the lane is off now: its calls fill nothing */
	call(&cfg->lanes[0], "/two", 1);
	cr_expect_eq(cr_alog_pending(), 0);
	rm_tmp();
}

Test(alog_writer, a_link_outside_a_world_writable_directory_is_followed, .fini = empty)
{
	char path[400], target[400];
	mkdir_tmp();
	snprintf(target, sizeof(target), "%s/real.log", dir);
	snprintf(path, sizeof(path), "%s/link.log", dir);
	cr_assert_eq(symlink("real.log", path), 0);
	struct cr_config *cfg = publish_log("link.log");
	cr_alog_reset(64);
	call(&cfg->lanes[0], "/one", 1);
	cr_alog_writer_flush();
	cr_expect_eq(count_lines(target), 1);
	rm_tmp();
}

Test(alog_writer, a_path_that_cannot_be_opened_turns_the_lane_off, .fini = empty)
{
	mkdir_tmp();
	struct cr_config *cfg = publish_log("missing/dir/x.log");
	cr_alog_reset(64);
	call(&cfg->lanes[0], "/one", 1);
	cr_alog_writer_flush();
	call(&cfg->lanes[0], "/two", 1);
	cr_expect_eq(cr_alog_pending(), 0, "a lane whose log cannot be opened fills nothing");
	cr_expect_eq(cr_alog_dropped(cfg->lanes[0].id), 1, "the line taken before is counted");
	rm_tmp();
}

static int count_nl(const char *b, size_t n)
{
	int k = 0;
	for (size_t i = 0; i < n; i++)
		k += b[i] == '\n';
	return k;
}

static int unix_listener(const char *path, int type)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	cr_assert_lt(strlen(path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	if (type == SOCK_STREAM)
		cr_assert_eq(listen(fd, 4), 0);
	return fd;
}

Test(alog_writer, a_stream_collector_gets_whole_lines, .fini = empty)
{
	char path[400];
	mkdir_tmp();
	snprintf(path, sizeof(path), "%s/c.sock", dir);
	int lfd = unix_listener(path, SOCK_STREAM);
	struct cr_config *cfg = publish_to("c.sock", 1);
	cr_alog_reset(64);
	call(&cfg->lanes[0], "/one", 1);
	call(&cfg->lanes[0], "/two", 1);
	cr_alog_writer_flush();
	int cfd = accept(lfd, NULL, NULL);
	cr_assert_geq(cfd, 0);
	char buf[8192];
	size_t got = 0;
	for (int i = 0; i < 50 && count_nl(buf, got) < 2; i++) {
		ssize_t n = recv(cfd, buf + got, sizeof(buf) - 1 - got, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
		else
			usleep(10000);
	}
	buf[got] = '\0';
	cr_expect_eq(count_nl(buf, got), 2, "%s", buf);
	cr_expect(strstr(buf, "\"url.path\":\"/one\"") && strstr(buf, "\"url.path\":\"/two\""), "%s", buf);
	close(cfd);
	close(lfd);
	rm_tmp();
}

/* A collector that accepts and never reads: the writer never waits for it; what does not
 * fit is dropped and counted, and what it finally reads are whole lines. */
Test(alog_writer, a_collector_that_does_not_read_costs_lines_not_time, .fini = empty)
{
	char path[400];
	mkdir_tmp();
	snprintf(path, sizeof(path), "%s/c.sock", dir);
	int lfd = unix_listener(path, SOCK_STREAM);
	struct cr_config *cfg = publish_to("c.sock", 1);
	cr_alog_reset(4096);
	const int total = 20000;
	int64_t t0 = 0;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	for (int i = 0; i < total; i++) {
		call(&cfg->lanes[0], "/a/rather/long/path/to/fill/the/socket/buffer/quickly", 1);
		if (i % 1000 == 999)
			cr_alog_writer_flush();
	}
	cr_alog_writer_flush();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ms = ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - t0;
	cr_expect_lt(ms, 5000, "the writer waited for the collector: %lld ms", (long long)ms);
	uint64_t dropped = cr_alog_dropped(cfg->lanes[0].id);
	cr_expect_gt(dropped, 0, "20000 lines fit a socket nobody reads?");
	int cfd = accept(lfd, NULL, NULL);
	cr_assert_geq(cfd, 0);
	static char buf[16 << 20];
	size_t got = 0;
	for (int idle = 0; idle < 20 && got < sizeof(buf) - 1;) {
		ssize_t n = recv(cfd, buf + got, sizeof(buf) - 1 - got, MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			idle = 0;
		} else {
			idle++;
			cr_alog_writer_flush();
			usleep(5000);
		}
	}
	buf[got] = '\0';
	int lines = 0;
	for (char *p = buf, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
		cr_assert(p[0] == '{' && nl[-1] == '}', "a cut line: %.80s", p);
		lines++;
	}
	cr_expect_eq(got > 0 ? buf[got - 1] : '\n', '\n');
	cr_expect_eq((uint64_t)lines + dropped, (uint64_t)total, "%d lines + %llu dropped", lines,
		     (unsigned long long)dropped);
	close(cfd);
	close(lfd);
	rm_tmp();
}
