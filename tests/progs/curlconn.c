/* curlconn: an ordinary libcurl program that uses "the handle's connection" after
 * curl_easy_perform returns (CONNECT_ONLY with curl_easy_send/recv, a WebSocket over it,
 * getinfo of the connection, pause, upkeep, reset, duphandle, the header API) and a few
 * handle life cycles. It never includes connroute.h: the integration tests run it with and
 * without the shim and compare what it prints.
 *
 *   curlconn [--cacert FILE] [--insecure] MODE URL [ARGS]
 *
 * Modes (one line per event, "key=value" fields):
 *   sendrecv URL          CONNECT_ONLY=1, then "GET <path> HTTP/1.0" written with
 *                         curl_easy_send and the reply read with curl_easy_recv until the
 *                         server closes: "reply <status line>", "body <line>"...
 *   co2 URL               CONNECT_ONLY=2: the perform does a GET ("perform code= status=
 *                         conn="), then a second GET is written on the same connection with
 *                         curl_easy_send: "reply <status line>", "conn2 <X-Conn-Id>"
 *   ws URL                CONNECT_ONLY=1, a WebSocket handshake and one masked text frame
 *                         "hello" over curl_easy_send/recv: "ws status=101 echo=hello";
 *                         then "curl_ws send=<CURLcode> recv=<CURLcode>" from curl_ws_send/recv
 *   info URL N            one handle, N performs, after each: "info i= code= conn= active=
 *                         last= lport= pip= pport= nconn= same_sock="
 *   fresh URL N           N new handles; each: "pre i= code= active= last= nconn= eff= priv=
 *                         hdr=" before its perform (what a fresh handle answers), "post i=
 *                         code= conn= nconn= priv=" after; PRIVATE is set on handle 0 only
 *   lanes URL             one handle, performs under thread names crit-1, batch-1, crit-1:
 *                         "lane i= name= code= conn="
 *   idle URL MS           handle A performs, is left idle MS ms while 5 new handles perform,
 *                         then performs again: "a1 conn=", "b i= conn=", "a2 code= conn="
 *   resetdup URL          A performs; curl_easy_reset(A) and A performs again; D =
 *                         curl_easy_duphandle(A) performs; A performs: "a conn=",
 *                         "after_reset code= conn=", "dup code= conn=", "a_again code= conn="
 *   pause URL             the write callback pauses once, the progress callback unpauses:
 *                         "pause code= paused= resumed= bytes="
 *   upkeep URL            perform, curl_easy_upkeep, perform: "upkeep rc= conn1= conn2="
 *   header URL            perform, curl_easy_header(X-Conn-Id): "header rc= value="; then a
 *                         new handle before its perform: "header_fresh rc="
 *   burst URL THREADS MS [CTLPORT]
 *                         THREADS threads at once, each a new handle and one request; then
 *                         the program stays alive, idle, for MS ms: "burst ok= errors=";
 *                         with CTLPORT it asks the test upstream's control port (a raw
 *                         socket, not libcurl) every 250 ms how many connections are open:
 *                         "open ms=<since the burst> n=<open>"
 * Exit status: 0 when every step worked, 1 otherwise, 2 on bad usage. */
/* LASTSOCKET is deprecated, and compared here on purpose */
#define CURL_DISABLE_DEPRECATION 1
#include <curl/curl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *cacert;
static int insecure;
static int failed;

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0) {
	}
}

struct xfer {
	char conn[32];
	size_t bytes;
	int pause_once;
	int paused, resumed;
	CURL *h;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	if (x->pause_once) {
		x->pause_once = 0;
		x->paused++;
		return CURL_WRITEFUNC_PAUSE;
	}
	x->bytes += size * n;
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t k = size * n;
	if (k > 10 && strncasecmp(p, "x-conn-id:", 10) == 0) {
		const char *v = p + 10;
		while (*v == ' ')
			v++;
		size_t m = 0;
		while (v + m < p + k && v[m] != '\r' && v[m] != '\n' && m + 1 < sizeof x->conn)
			m++;
		memcpy(x->conn, v, m);
		x->conn[m] = '\0';
	}
	return k;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct xfer *x = ud;
	if (x->paused > x->resumed) {
		x->resumed++;
		curl_easy_pause(x->h, CURLPAUSE_CONT);
	}
	return 0;
}

static CURL *new_handle(const char *url, struct xfer *x)
{
	CURL *h = curl_easy_init();
	if (!h) {
		fprintf(stderr, "curl_easy_init failed\n");
		exit(1);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (cacert)
		curl_easy_setopt(h, CURLOPT_CAINFO, cacert);
	if (insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (x) {
		memset(x, 0, sizeof(*x));
		x->h = h;
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	}
	return h;
}

static long code_of(CURL *h)
{
	long c = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c);
	return c;
}

/* perform, recording a failure */
static CURLcode perform(CURL *h, struct xfer *x)
{
	if (x) {
		x->conn[0] = '\0';
		x->bytes = 0;
	}
	CURLcode rc = curl_easy_perform(h);
	if (rc != CURLE_OK)
		failed = 1;
	return rc;
}

/* ------------------------------------------------------- CONNECT_ONLY */

static int wait_sock(CURL *h, int for_recv, long ms)
{
	curl_socket_t fd = CURL_SOCKET_BAD;
	if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK || fd == CURL_SOCKET_BAD)
		return -1;
	struct pollfd p = {.fd = fd, .events = for_recv ? POLLIN : POLLOUT};
	return poll(&p, 1, (int)ms) > 0 ? 0 : -1;
}

static int send_all(CURL *h, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		size_t n = 0;
		CURLcode rc = curl_easy_send(h, (const char *)buf + done, len - done, &n);
		if (rc == CURLE_AGAIN) {
			if (wait_sock(h, 0, 5000) != 0)
				return -1;
			continue;
		}
		if (rc != CURLE_OK) {
			fprintf(stderr, "curl_easy_send: %s\n", curl_easy_strerror(rc));
			return -1;
		}
		done += n;
	}
	return 0;
}

/* Reads until CLOSE_OK and EOF, or until the buffer holds NEED bytes (0: until EOF). */
static long recv_some(CURL *h, char *buf, size_t cap, size_t need)
{
	size_t got = 0;
	for (;;) {
		size_t n = 0;
		CURLcode rc = curl_easy_recv(h, buf + got, cap - 1 - got, &n);
		if (rc == CURLE_AGAIN) {
			if (wait_sock(h, 1, 5000) != 0)
				return -1;
			continue;
		}
		if (rc != CURLE_OK) {
			fprintf(stderr, "curl_easy_recv: %s\n", curl_easy_strerror(rc));
			return -1;
		}
		if (n == 0)
			break;
		got += n;
		if ((need && got >= need) || got + 1 >= cap)
			break;
	}
	buf[got] = '\0';
	return (long)got;
}

static void host_path(const char *url, char *host, size_t hn, const char **path)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	const char *slash = strchr(p, '/');
	size_t n = slash ? (size_t)(slash - p) : strlen(p);
	snprintf(host, hn, "%.*s", (int)n, p);
	*path = slash ? slash : "/";
}

static int mode_sendrecv(const char *url)
{
	CURL *h = new_handle(url, NULL);
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	CURLcode rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		printf("connect code=%d\n", (int)rc);
		curl_easy_cleanup(h);
		return 1;
	}
	char host[256], req[700], buf[65536];
	const char *path;
	host_path(url, host, sizeof host, &path);
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host);
	if (send_all(h, req, (size_t)n) != 0 || recv_some(h, buf, sizeof buf, 0) < 0) {
		curl_easy_cleanup(h);
		return 1;
	}
	char *eol = strstr(buf, "\r\n");
	printf("reply %.*s\n", eol ? (int)(eol - buf) : (int)strlen(buf), buf);
	char *body = strstr(buf, "\r\n\r\n");
	for (char *l = body ? body + 4 : NULL; l && *l;) {
		char *e = strchr(l, '\n');
		printf("body %.*s\n", e ? (int)(e - l) : (int)strlen(l), l);
		l = e ? e + 1 : NULL;
	}
	curl_easy_cleanup(h);
	return strncmp(buf, "HTTP/1.", 7) == 0 ? 0 : 1;
}

static int mode_co2(const char *url)
{
	struct xfer x;
	CURL *h = new_handle(url, &x);
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 2L);
	CURLcode rc = perform(h, &x);
	printf("perform code=%d status=%ld conn=%s\n", (int)rc, code_of(h), x.conn[0] ? x.conn : "-");
	char host[256], req[700], buf[65536];
	const char *path;
	host_path(url, host, sizeof host, &path);
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host);
	if (rc != CURLE_OK || send_all(h, req, (size_t)n) != 0 || recv_some(h, buf, sizeof buf, 0) < 0) {
		curl_easy_cleanup(h);
		return 1;
	}
	char *eol = strstr(buf, "\r\n");
	printf("reply %.*s\n", eol ? (int)(eol - buf) : (int)strlen(buf), buf);
	char *id = strcasestr(buf, "x-conn-id:");
	printf("conn2 %ld\n", id ? strtol(id + 10, NULL, 10) : -1L);
	curl_easy_cleanup(h);
	return 0;
}

static int mode_ws(const char *url)
{
	CURL *h = new_handle(url, NULL);
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	if (curl_easy_perform(h) != CURLE_OK) {
		curl_easy_cleanup(h);
		return 1;
	}
	char host[256], req[900], buf[4096];
	const char *path;
	host_path(url, host, sizeof host, &path);
	int n = snprintf(req, sizeof req,
			 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
			 path, host);
	if (send_all(h, req, (size_t)n) != 0) {
		curl_easy_cleanup(h);
		return 1;
	}
	/* The 101 ends with an empty line; nothing follows until our frame. */
	size_t got = 0;
	while (!strstr(buf, "\r\n\r\n")) {
		long k = recv_some(h, buf + got, sizeof buf - got, got + 1);
		if (k <= 0) {
			curl_easy_cleanup(h);
			return 1;
		}
		got += (size_t)k;
		buf[got] = '\0';
	}
	int status = 0;
	sscanf(buf, "HTTP/1.1 %d", &status);
	int accept_ok = strstr(buf, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != NULL; /* RFC 6455's example */
	static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
	unsigned char frame[2 + 4 + 5] = {0x81, 0x80 | 5};
	memcpy(frame + 2, mask, 4);
	for (int i = 0; i < 5; i++)
		frame[6 + i] = (unsigned char)("hello"[i] ^ mask[i & 3]);
	char echo[64] = "";
	if (send_all(h, frame, sizeof frame) == 0) {
		char in[64];
		long k = recv_some(h, in, sizeof in, 7);
		if (k >= 2 && (unsigned char)in[0] == 0x81 && (in[1] & 0x7f) <= k - 2)
			snprintf(echo, sizeof echo, "%.*s", in[1] & 0x7f, in + 2);
	}
	printf("ws status=%d accept=%s echo=%s\n", status, accept_ok ? "ok" : "bad", echo[0] ? echo : "-");
	/* libcurl's own WebSocket calls on this handle: whatever this libcurl answers
	 * (CURLE_NOT_BUILT_IN without WebSocket support), the same with and without the shim. */
	size_t sent = 0, rcvd = 0;
	struct curl_ws_frame *meta = NULL;
	CURLcode s = curl_ws_send(h, "x", 1, &sent, 0, CURLWS_TEXT);
	CURLcode r = curl_ws_recv(h, buf, sizeof buf, &rcvd, &meta);
	printf("curl_ws send=%d recv=%d\n", (int)s, (int)r);
	curl_easy_cleanup(h);
	return status == 101 && accept_ok && !strcmp(echo, "hello") ? 0 : 1;
}

/* -------------------------------------------------------------- getinfo */

static void print_info(const char *tag, int i, CURL *h, struct xfer *x)
{
	long code = 0, last = -2, lport = -1, pport = -1, nconn = -1;
	curl_socket_t active = (curl_socket_t)-2;
	char *pip = NULL;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &active);
	curl_easy_getinfo(h, CURLINFO_LASTSOCKET, &last);
	curl_easy_getinfo(h, CURLINFO_LOCAL_PORT, &lport);
	curl_easy_getinfo(h, CURLINFO_PRIMARY_IP, &pip);
	curl_easy_getinfo(h, CURLINFO_PRIMARY_PORT, &pport);
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nconn);
	printf("%s i=%d code=%ld conn=%s active=%d last=%ld lport=%ld pip=%s pport=%ld nconn=%ld same_sock=%d\n", tag, i,
	       code, x && x->conn[0] ? x->conn : "-", (int)active, last, lport, pip && *pip ? pip : "-", pport, nconn,
	       (long)active == last);
}

static int mode_info(const char *url, int n)
{
	struct xfer x;
	CURL *h = new_handle(url, &x);
	for (int i = 0; i < n; i++) {
		perform(h, &x);
		print_info("info", i, h, &x);
	}
	curl_easy_cleanup(h);
	return failed;
}

static int mode_fresh(const char *url, int n)
{
	static int tag = 42;
	for (int i = 0; i < n; i++) {
		struct xfer x;
		CURL *h = new_handle(url, &x);
		if (i == 0)
			curl_easy_setopt(h, CURLOPT_PRIVATE, &tag);
		long code = -1, last = -2, nconn = -1;
		curl_socket_t active = (curl_socket_t)-2;
		char *eff = NULL, *priv = NULL;
		struct curl_header *hd = NULL;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &active);
		curl_easy_getinfo(h, CURLINFO_LASTSOCKET, &last);
		curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nconn);
		curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &eff);
		curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
		CURLHcode hc = curl_easy_header(h, "X-Conn-Id", 0, CURLH_HEADER, -1, &hd);
		printf("pre i=%d code=%ld active=%d last=%ld nconn=%ld eff=%s priv=%s hdr=%d\n", i, code, (int)active, last,
		       nconn, eff ? eff : "(null)", priv ? "set" : "null", (int)hc);
		perform(h, &x);
		curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
		printf("post i=%d code=%ld conn=%s priv=%s\n", i, code_of(h), x.conn[0] ? x.conn : "-", priv ? "set" : "null");
		curl_easy_cleanup(h);
	}
	return failed;
}

static int mode_lanes(const char *url)
{
	static const char *names[] = {"crit-1", "batch-1", "crit-1"};
	struct xfer x;
	CURL *h = new_handle(url, &x);
	for (int i = 0; i < 3; i++) {
		prctl(PR_SET_NAME, names[i], 0, 0, 0);
		CURLcode rc = perform(h, &x);
		printf("lane i=%d name=%s code=%d conn=%s\n", i, names[i], (int)rc, x.conn[0] ? x.conn : "-");
	}
	curl_easy_cleanup(h);
	return failed;
}

static int mode_idle(const char *url, long ms)
{
	struct xfer a, b;
	CURL *ha = new_handle(url, &a);
	perform(ha, &a);
	printf("a1 conn=%s\n", a.conn[0] ? a.conn : "-");
	sleep_ms(ms);
	for (int i = 0; i < 5; i++) {
		CURL *hb = new_handle(url, &b);
		perform(hb, &b);
		printf("b i=%d conn=%s\n", i, b.conn[0] ? b.conn : "-");
		curl_easy_cleanup(hb);
	}
	CURLcode rc = perform(ha, &a);
	printf("a2 code=%d conn=%s\n", (int)rc, a.conn[0] ? a.conn : "-");
	curl_easy_cleanup(ha);
	return failed;
}

static int mode_resetdup(const char *url)
{
	struct xfer a, d;
	CURL *ha = new_handle(url, &a);
	perform(ha, &a);
	printf("a conn=%s\n", a.conn[0] ? a.conn : "-");
	curl_easy_reset(ha);
	curl_easy_setopt(ha, CURLOPT_URL, url);
	curl_easy_setopt(ha, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(ha, CURLOPT_WRITEDATA, &a);
	curl_easy_setopt(ha, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(ha, CURLOPT_HEADERDATA, &a);
	if (cacert)
		curl_easy_setopt(ha, CURLOPT_CAINFO, cacert);
	CURLcode rc = perform(ha, &a);
	printf("after_reset code=%d conn=%s\n", (int)rc, a.conn[0] ? a.conn : "-");
	CURL *hd = curl_easy_duphandle(ha);
	memset(&d, 0, sizeof d);
	curl_easy_setopt(hd, CURLOPT_WRITEDATA, &d);
	curl_easy_setopt(hd, CURLOPT_HEADERDATA, &d);
	rc = perform(hd, &d);
	printf("dup code=%d conn=%s\n", (int)rc, d.conn[0] ? d.conn : "-");
	rc = perform(ha, &a);
	printf("a_again code=%d conn=%s\n", (int)rc, a.conn[0] ? a.conn : "-");
	curl_easy_cleanup(hd);
	curl_easy_cleanup(ha);
	return failed;
}

static int mode_pause(const char *url)
{
	struct xfer x;
	CURL *h = new_handle(url, &x);
	x.pause_once = 1;
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
	CURLcode rc = curl_easy_perform(h);
	printf("pause code=%d paused=%d resumed=%d bytes=%zu\n", (int)rc, x.paused, x.resumed, x.bytes);
	curl_easy_cleanup(h);
	return rc != CURLE_OK || x.paused != 1 || x.resumed != 1;
}

static int mode_upkeep(const char *url)
{
	struct xfer x;
	char c1[32];
	CURL *h = new_handle(url, &x);
	perform(h, &x);
	snprintf(c1, sizeof c1, "%s", x.conn);
	CURLcode u = curl_easy_upkeep(h);
	perform(h, &x);
	printf("upkeep rc=%d conn1=%s conn2=%s\n", (int)u, c1[0] ? c1 : "-", x.conn[0] ? x.conn : "-");
	curl_easy_cleanup(h);
	return failed;
}

static int mode_header(const char *url)
{
	struct xfer x;
	CURL *h = new_handle(url, &x);
	perform(h, &x);
	struct curl_header *hd = NULL;
	CURLHcode rc = curl_easy_header(h, "X-Conn-Id", 0, CURLH_HEADER, -1, &hd);
	printf("header rc=%d value=%s\n", (int)rc, rc == CURLHE_OK ? hd->value : "-");
	curl_easy_cleanup(h);
	h = new_handle(url, &x);
	hd = NULL;
	rc = curl_easy_header(h, "X-Conn-Id", 0, CURLH_HEADER, -1, &hd);
	printf("header_fresh rc=%d\n", (int)rc);
	curl_easy_cleanup(h);
	return failed;
}

static const char *burst_url;
static int n_ok, n_err;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *burst_one(void *arg)
{
	struct xfer x;
	(void)arg;
	CURL *h = new_handle(burst_url, &x);
	CURLcode rc = curl_easy_perform(h);
	long code = code_of(h);
	curl_easy_cleanup(h);
	pthread_mutex_lock(&mu);
	if (rc == CURLE_OK && code < 400)
		n_ok++;
	else
		n_err++;
	pthread_mutex_unlock(&mu);
	return NULL;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* The upstream's "open" counter, asked on its control port with a plain socket. */
static long upstream_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	char buf[4096];
	long n = -1;
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		static const char req[] = "GET /stats HTTP/1.0\r\n\r\n";
		if (write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
			size_t got = 0;
			ssize_t k;
			while (got + 1 < sizeof buf && (k = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
				got += (size_t)k;
			buf[got] = '\0';
			const char *o = strstr(buf, "\nopen ");
			if (o)
				n = strtol(o + 6, NULL, 10);
		}
	}
	close(fd);
	return n;
}

static int mode_burst(const char *url, int threads, long ms, int ctl)
{
	pthread_t t[1024];
	burst_url = url;
	if (threads > 1024)
		threads = 1024;
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, burst_one, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	printf("burst ok=%d errors=%d\n", n_ok, n_err);
	fflush(stdout);
	long t0 = now_ms();
	if (!ctl) {
		sleep_ms(ms);
		return n_err != 0;
	}
	for (long el = 0; el < ms; el = now_ms() - t0) {
		printf("open ms=%ld n=%ld\n", el, upstream_open(ctl));
		sleep_ms(250);
	}
	return n_err != 0;
}

int main(int argc, char **argv)
{
	int a = 1;
	for (; a < argc && argv[a][0] == '-'; a++) {
		if (!strcmp(argv[a], "--cacert") && a + 1 < argc)
			cacert = argv[++a];
		else if (!strcmp(argv[a], "--insecure"))
			insecure = 1;
		else
			return 2;
	}
	if (argc - a < 2)
		return 2;
	const char *mode = argv[a], *url = argv[a + 1];
	const char *arg1 = argc - a > 2 ? argv[a + 2] : NULL, *arg2 = argc - a > 3 ? argv[a + 3] : NULL;
	int rc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!strcmp(mode, "sendrecv"))
		rc = mode_sendrecv(url);
	else if (!strcmp(mode, "co2"))
		rc = mode_co2(url);
	else if (!strcmp(mode, "ws"))
		rc = mode_ws(url);
	else if (!strcmp(mode, "info"))
		rc = mode_info(url, arg1 ? atoi(arg1) : 3);
	else if (!strcmp(mode, "fresh"))
		rc = mode_fresh(url, arg1 ? atoi(arg1) : 3);
	else if (!strcmp(mode, "lanes"))
		rc = mode_lanes(url);
	else if (!strcmp(mode, "idle"))
		rc = mode_idle(url, arg1 ? atol(arg1) : 1500);
	else if (!strcmp(mode, "resetdup"))
		rc = mode_resetdup(url);
	else if (!strcmp(mode, "pause"))
		rc = mode_pause(url);
	else if (!strcmp(mode, "upkeep"))
		rc = mode_upkeep(url);
	else if (!strcmp(mode, "header"))
		rc = mode_header(url);
	else if (!strcmp(mode, "burst"))
		rc = mode_burst(url, arg1 ? atoi(arg1) : 50, arg2 ? atol(arg2) : 0,
				argc - a > 4 ? atoi(argv[a + 4]) : 0);
	else
		return 2;
	curl_global_cleanup();
	return rc ? 1 : 0;
}
