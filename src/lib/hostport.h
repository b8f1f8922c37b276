/* hostport.h — the one parser of "IPv4:port" addresses (cluster, API, proxy, VIP peers).
 *
 * The host is a dotted quad without leading zeros, the port 1..65535 without leading zeros:
 * exactly what the config accepts, so an address that loads also parses everywhere else. */
#ifndef US_HOSTPORT_H
#define US_HOSTPORT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

/* Split "IPv4:port". host (hostlen bytes, may be NULL) and port (may be NULL) receive the parts.
 * 0, or -1 when s is not such an address (or the host does not fit). */
int us_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

/* "IPv4:port" as a sockaddr_in. 0, or -1 as us_parse_hostport. */
int us_sockaddr_parse(const char *hostport, struct sockaddr_in *sa);

/* Is the first n bytes of s a dotted quad (no leading zeros)? */
bool us_ipv4_valid(const char *s, size_t n);

#endif
