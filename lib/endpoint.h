/* connroute: the metrics endpoint address, shared by the background thread
 * (which listens there) and the CLI (which connects to it). */
#ifndef CR_ENDPOINT_H
#define CR_ENDPOINT_H

#include <stddef.h>
#include <sys/socket.h>

/* Parses IPv4:PORT, [IPv6]:PORT, unix:/PATH or unix:@NAME (abstract), every
 * %p of a unix path replaced by PID. Fills *SS and *LEN; PATH (may be NULL)
 * gets the file system path of a unix socket, "" otherwise. 0, or -1 when
 * SPEC is not such an address or does not fit. */
int cr_endpoint_parse(const char *spec, long pid, struct sockaddr_storage *ss, socklen_t *len,
		      char *path, size_t pathcap);

#endif
