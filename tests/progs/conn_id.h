/* Shared by the libcurl test programs: the test upstream's "X-Conn-Id: <id>" response
 * header (tests/integration/harness.h), which the programs print per transfer so the tests
 * can tell which connection served it. */
#ifndef CR_PROGS_CONN_ID_H
#define CR_PROGS_CONN_ID_H

#include <string.h>
#include <strings.h>

/* For a header line P of K bytes (as libcurl's CURLOPT_HEADERFUNCTION gets it, no NUL):
 * when it is X-Conn-Id, copies its value (spaces and tabs skipped, up to the line end) into
 * BUF of N bytes, NUL-terminated; any other line leaves BUF alone. */
static inline void conn_id_header(const char *p, size_t k, char *buf, size_t n)
{
	static const char name[] = "x-conn-id:";
	if (k > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
		const char *v = p + sizeof name - 1, *end = p + k;
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		size_t m = 0;
		while (v + m < end && v[m] != '\r' && v[m] != '\n' && m + 1 < n)
			m++;
		memcpy(buf, v, m);
		buf[m] = '\0';
	}
}

#endif
