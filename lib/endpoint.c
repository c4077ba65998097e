/* connroute: metrics endpoint addresses; see endpoint.h. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "endpoint.h"

static int parse_port(const char *s)
{
	char *end;
	long v;
	if (*s < '0' || *s > '9')
		return -1;
	v = strtol(s, &end, 10);
	return *end || v < 1 || v > 65535 ? -1 : (int)v;
}

static int parse_unix(const char *spec, long pid, struct sockaddr_storage *ss, socklen_t *len,
		      char *path, size_t pathcap)
{
	struct sockaddr_un *un = (struct sockaddr_un *)ss;
	char buf[sizeof(un->sun_path) + 1];
	size_t n = 0;
	int abstract = spec[0] == '@';

	if (!abstract && spec[0] != '/')
		return -1;
	for (const char *c = spec + abstract; *c; c++) {
		char digits[24];
		const char *add = digits;
		size_t k;
		if (c[0] == '%' && c[1] == 'p') {
			snprintf(digits, sizeof(digits), "%ld", pid);
			c++;
		} else {
			digits[0] = *c;
			digits[1] = '\0';
		}
		k = strlen(add);
		if (n + k >= sizeof(un->sun_path) - (size_t)abstract)
			return -1;
		memcpy(buf + n, add, k);
		n += k;
	}
	if (n == 0)
		return -1;
	buf[n] = '\0';
	memset(un, 0, sizeof(*un));
	un->sun_family = AF_UNIX;
	if (abstract) {
		memcpy(un->sun_path + 1, buf, n);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	} else {
		memcpy(un->sun_path, buf, n + 1);
		*len = (socklen_t)sizeof(*un);
		if (path && pathcap) {
			if (n >= pathcap)
				return -1;
			memcpy(path, buf, n + 1);
		}
	}
	return 0;
}

int cr_endpoint_parse(const char *spec, long pid, struct sockaddr_storage *ss, socklen_t *len,
		      char *path, size_t pathcap)
{
	char host[64];
	const char *colon;
	int port;

	if (path && pathcap)
		path[0] = '\0';
	if (!spec)
		return -1;
	if (strncmp(spec, "unix:", 5) == 0)
		return parse_unix(spec + 5, pid, ss, len, path, pathcap);
	memset(ss, 0, sizeof(*ss));
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof(host))
			return -1;
		memcpy(host, spec + 1, (size_t)(close - spec - 1));
		host[close - spec - 1] = '\0';
		if ((port = parse_port(close + 2)) < 0 ||
		    inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -1;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
		return 0;
	}
	colon = strrchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -1;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	if ((port = parse_port(colon + 1)) < 0 || inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		return -1;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	*len = sizeof(*s4);
	return 0;
}
