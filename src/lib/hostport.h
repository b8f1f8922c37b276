/* hostport.h — the parsers of "host:port" addresses.
 *
 * What the agents use (cluster, API, proxy, VIP peers) is "IPv4:port": the host a dotted quad
 * without leading zeros, the port 1..65535 without leading zeros; exactly what the config
 * accepts, so an address that loads also parses everywhere else. A client (the CLI's --api)
 * may also name an agent by host name or "[IPv6]:port": us_split_hostport. */
#ifndef US_HOSTPORT_H
#define US_HOSTPORT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

/* Split "IPv4:port". host (hostlen bytes, may be NULL) and port (may be NULL) receive the parts.
 * 0, or -EINVAL when s is not such an address (or the host does not fit). */
int us_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

/* "IPv4:port" as a sockaddr_in. 0, or -EINVAL as us_parse_hostport. */
int us_sockaddr_parse(const char *hostport, struct sockaddr_in *sa);

/* Is the first n bytes of s a dotted quad (no leading zeros)? */
bool us_ipv4_valid(const char *s, size_t n);

/* The decimal in the first n bytes of s: digits only, no sign, no leading zeros (so that equal
 * values are equal strings), at most max. */
bool us_parse_uint(const char *s, size_t n, long max, long *out);

/* A client's "host:port", "IPv4:port" or "[IPv6]:port" (no check of the host's characters:
 * libcurl resolves it), port 1..65535. host and port receive the parts as text. 0, or -EINVAL
 * when s has no such form or a part does not fit. */
int us_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen);

/* A host name or an IP address literal as a service would connect to it: 1..63 bytes of letters,
 * digits, '.', '-', ':' and '_', not starting with '-' (so that it can never become an option). */
bool us_host_valid(const char *s);

#endif
