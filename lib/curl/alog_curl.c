/* connroute: libcurl lanes — the access log line of a perform (lib/alog.h,
 * docs/access-log.md). Everything comes from the handle (curl_easy_getinfo
 * reads fields libcurl filled: no system call) and from the perform path;
 * nothing of the request's headers, credentials or body is ever read. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "alog.h"
#include "alog_curl.h"
#include "base.h"

/* CURLcode names by value (curl.h, 7.88; a newer code prints as CURLE_<n>). */
static const char *const curle_names[] = {
	"CURLE_OK",
	"CURLE_UNSUPPORTED_PROTOCOL",
	"CURLE_FAILED_INIT",
	"CURLE_URL_MALFORMAT",
	"CURLE_NOT_BUILT_IN",
	"CURLE_COULDNT_RESOLVE_PROXY",
	"CURLE_COULDNT_RESOLVE_HOST",
	"CURLE_COULDNT_CONNECT",
	"CURLE_WEIRD_SERVER_REPLY",
	"CURLE_REMOTE_ACCESS_DENIED",
	"CURLE_FTP_ACCEPT_FAILED",
	"CURLE_FTP_WEIRD_PASS_REPLY",
	"CURLE_FTP_ACCEPT_TIMEOUT",
	"CURLE_FTP_WEIRD_PASV_REPLY",
	"CURLE_FTP_WEIRD_227_FORMAT",
	"CURLE_FTP_CANT_GET_HOST",
	"CURLE_HTTP2",
	"CURLE_FTP_COULDNT_SET_TYPE",
	"CURLE_PARTIAL_FILE",
	"CURLE_FTP_COULDNT_RETR_FILE",
	"CURLE_OBSOLETE20",
	"CURLE_QUOTE_ERROR",
	"CURLE_HTTP_RETURNED_ERROR",
	"CURLE_WRITE_ERROR",
	"CURLE_OBSOLETE24",
	"CURLE_UPLOAD_FAILED",
	"CURLE_READ_ERROR",
	"CURLE_OUT_OF_MEMORY",
	"CURLE_OPERATION_TIMEDOUT",
	"CURLE_OBSOLETE29",
	"CURLE_FTP_PORT_FAILED",
	"CURLE_FTP_COULDNT_USE_REST",
	"CURLE_OBSOLETE32",
	"CURLE_RANGE_ERROR",
	"CURLE_HTTP_POST_ERROR",
	"CURLE_SSL_CONNECT_ERROR",
	"CURLE_BAD_DOWNLOAD_RESUME",
	"CURLE_FILE_COULDNT_READ_FILE",
	"CURLE_LDAP_CANNOT_BIND",
	"CURLE_LDAP_SEARCH_FAILED",
	"CURLE_OBSOLETE40",
	"CURLE_FUNCTION_NOT_FOUND",
	"CURLE_ABORTED_BY_CALLBACK",
	"CURLE_BAD_FUNCTION_ARGUMENT",
	"CURLE_OBSOLETE44",
	"CURLE_INTERFACE_FAILED",
	"CURLE_OBSOLETE46",
	"CURLE_TOO_MANY_REDIRECTS",
	"CURLE_UNKNOWN_OPTION",
	"CURLE_SETOPT_OPTION_SYNTAX",
	"CURLE_OBSOLETE50",
	"CURLE_OBSOLETE51",
	"CURLE_GOT_NOTHING",
	"CURLE_SSL_ENGINE_NOTFOUND",
	"CURLE_SSL_ENGINE_SETFAILED",
	"CURLE_SEND_ERROR",
	"CURLE_RECV_ERROR",
	"CURLE_OBSOLETE57",
	"CURLE_SSL_CERTPROBLEM",
	"CURLE_SSL_CIPHER",
	"CURLE_PEER_FAILED_VERIFICATION",
	"CURLE_BAD_CONTENT_ENCODING",
	"CURLE_OBSOLETE62",
	"CURLE_FILESIZE_EXCEEDED",
	"CURLE_USE_SSL_FAILED",
	"CURLE_SEND_FAIL_REWIND",
	"CURLE_SSL_ENGINE_INITFAILED",
	"CURLE_LOGIN_DENIED",
	"CURLE_TFTP_NOTFOUND",
	"CURLE_TFTP_PERM",
	"CURLE_REMOTE_DISK_FULL",
	"CURLE_TFTP_ILLEGAL",
	"CURLE_TFTP_UNKNOWNID",
	"CURLE_REMOTE_FILE_EXISTS",
	"CURLE_TFTP_NOSUCHUSER",
	"CURLE_OBSOLETE75",
	"CURLE_OBSOLETE76",
	"CURLE_SSL_CACERT_BADFILE",
	"CURLE_REMOTE_FILE_NOT_FOUND",
	"CURLE_SSH",
	"CURLE_SSL_SHUTDOWN_FAILED",
	"CURLE_AGAIN",
	"CURLE_SSL_CRL_BADFILE",
	"CURLE_SSL_ISSUER_ERROR",
	"CURLE_FTP_PRET_FAILED",
	"CURLE_RTSP_CSEQ_ERROR",
	"CURLE_RTSP_SESSION_ERROR",
	"CURLE_FTP_BAD_FILE_LIST",
	"CURLE_CHUNK_FAILED",
	"CURLE_NO_CONNECTION_AVAILABLE",
	"CURLE_SSL_PINNEDPUBKEYNOTMATCH",
	"CURLE_SSL_INVALIDCERTSTATUS",
	"CURLE_HTTP2_STREAM",
	"CURLE_RECURSIVE_API_CALL",
	"CURLE_AUTH_ERROR",
	"CURLE_HTTP3",
	"CURLE_QUIC_CONNECT_ERROR",
	"CURLE_PROXY",
	"CURLE_SSL_CLIENTCERT",
	"CURLE_UNRECOVERABLE_POLL",
};

static const char *curle_name(CURLcode rc, char *buf, size_t n)
{
	if ((unsigned)rc < ARRAY_SIZE(curle_names))
		return curle_names[rc];
	snprintf(buf, n, "CURLE_%d", (int)rc);
	return buf;
}

static const char *method_of(const struct cr_curl_easy *e)
{
	if (e->custom_set && e->custom[0])
		return e->custom;
	switch (e->method) {
	case CR_CURL_M_HEAD: return "HEAD";
	case CR_CURL_M_POST: return "POST";
	case CR_CURL_M_PUT: return "PUT";
	default: return "GET";
	}
}

/* The path (and what follows it) of an absolute URL; "" when it has none.
 * The authority, where credentials may be, is never part of it. */
static const char *path_of(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	return p + strcspn(p, "/?#");
}

void cr_curl_alog_(struct cr_curl_easy *e, const struct cr_lane *lane, const char *key, CURLcode rc,
		   uint64_t t_start, long waited_ms, int overflow)
{
	const struct cr_curlfns *f = &e->lib->fns;
	char scheme[16], host[CR_HOST_MAX], ebuf[24], sbuf[8];
	struct cr_alog_call c = {
		.lane = lane,
		.kind = CR_ALOG_HTTP,
		.key = key,
		.method = method_of(e),
		.scheme = e->u_scheme,
		.host = e->u_host,
		.server_port = e->u_port,
		.reused = -1,
		.warm = -1,
		.resends = overflow ? 0 : e->resends,
	};
	for (int i = 0; i < CR_AD_N; i++)
		c.dur_ns[i] = -1;
	c.dur_ns[CR_AD_TOTAL] = (int64_t)(cr_now_ns() - t_start);
	c.dur_ns[CR_AD_QUEUE] = (int64_t)waited_ms * 1000000;

	if (!overflow) {
		char *url = NULL, *m = NULL, *ip = NULL;
		long status = 0, pport = 0, lport = 0, nconn = -1, redirects = 0;
		curl_off_t tn = 0, tc = 0, ta = 0, ts = 0;
		/* getinfo reads fields of the handle; only those that apply */
		f->easy_getinfo(e->h, CURLINFO_NUM_CONNECTS, &nconn);
		f->easy_getinfo(e->h, CURLINFO_RESPONSE_CODE, &status);
		f->easy_getinfo(e->h, CURLINFO_EFFECTIVE_URL, &url);
		f->easy_getinfo(e->h, CURLINFO_REDIRECT_COUNT, &redirects);
		f->easy_getinfo(e->h, CURLINFO_PRIMARY_IP, &ip);
		f->easy_getinfo(e->h, CURLINFO_PRIMARY_PORT, &pport);
		f->easy_getinfo(e->h, CURLINFO_LOCAL_PORT, &lport);
		f->easy_getinfo(e->h, CURLINFO_STARTTRANSFER_TIME_T, &ts);
		if (nconn != 0 || rc != CURLE_OK) {
			f->easy_getinfo(e->h, CURLINFO_NAMELOOKUP_TIME_T, &tn);
			f->easy_getinfo(e->h, CURLINFO_CONNECT_TIME_T, &tc);
			f->easy_getinfo(e->h, CURLINFO_APPCONNECT_TIME_T, &ta);
		}
		/* After redirects, the server, path and method libcurl used last;
		 * the lane was picked by the URL the app set (parsed then). */
		int port;
		if (url && redirects > 0 &&
		    cr_curl_parse_url(url, scheme, sizeof(scheme), host, sizeof(host), &port) ==
			    0) {
			c.scheme = scheme;
			c.host = host;
			c.server_port = port;
			f->easy_getinfo(e->h, CURLINFO_EFFECTIVE_METHOD, &m); /* 7.72+ */
			if (m && m[0])
				c.method = m;
		}
		if (url)
			c.path = path_of(url);
		c.status = (int)status;
		c.peer_text = ip && ip[0] ? ip : NULL;
		c.peer_port = (int)pport;
		c.local_port = (int)lport;
		/* No new connection and an answer: a pooled one served it. */
		if (nconn > 0)
			c.reused = 0;
		else if (nconn == 0 && (rc == CURLE_OK || status > 0))
			c.reused = 1;
		c.warm = c.reused == 1 ? 0 : e->warm_used;
		if (c.reused != 1 && tc > 0) {
			c.dur_ns[CR_AD_DNS] = (int64_t)tn * 1000;
			c.dur_ns[CR_AD_CONNECT] = (int64_t)(tc - tn) * 1000;
			if (ta > 0)
				c.dur_ns[CR_AD_TLS] = (int64_t)(ta - tc) * 1000;
		} else if (c.reused != 1 && tn > 0) {
			c.dur_ns[CR_AD_DNS] = (int64_t)tn * 1000; /* the connect failed */
		}
		if (ts > 0)
			c.dur_ns[CR_AD_TTFB] = (int64_t)ts * 1000;
	}

	if (overflow == 2) { /* the lane's circuit breaker refused it */
		c.outcome = CR_ALOG_BREAKER;
		c.error = curle_name(CURLE_COULDNT_CONNECT, ebuf, sizeof(ebuf));
	} else if (overflow) {
		c.outcome = CR_ALOG_OVERFLOW;
		c.error = curle_name(CURLE_OPERATION_TIMEDOUT, ebuf, sizeof(ebuf));
	} else if (rc == CURLE_OK && c.status >= 400) {
		c.outcome = CR_ALOG_HTTP_ERROR;
		snprintf(sbuf, sizeof(sbuf), "%d",
			 c.status > 999 ? 999 : c.status); /* OpenTelemetry: the status */
		c.error = sbuf;
	} else if (rc == CURLE_OK) {
		c.outcome = CR_ALOG_OK;
	} else {
		c.outcome = rc == CURLE_OPERATION_TIMEDOUT ? CR_ALOG_TIMEOUT : CR_ALOG_ERROR;
		c.error = curle_name(rc, ebuf, sizeof(ebuf));
	}
	cr_alog_put(&c);
}
