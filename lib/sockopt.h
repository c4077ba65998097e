/* connroute: a lane's socket options, applied to a socket the lane routes
 * (raw connect, warm sockets, libcurl's sockopt callback). */
#ifndef CR_SOCKOPT_H
#define CR_SOCKOPT_H

struct cr_lane;

/* Applies LANE's socket options to FD (of address FAMILY), and its source
 * address when ALLOW_BIND and the socket is unbound. Never fails: an option
 * the kernel refuses is warned about once per (lane, option). errno is
 * preserved. */
void cr_sockopt_apply(int fd, const struct cr_lane *lane, int family, int allow_bind);

/* 1 if FD is an IPv4/IPv6 socket bound to no address and no port. */
int cr_sockopt_unbound(int fd);

#endif
