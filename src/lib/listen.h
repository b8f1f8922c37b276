/* listen.h — the one way understudy opens a TCP listener (the API, the Raft transport, service
 * proxies) and checks that one could be opened.
 *
 * The address is "IPv4:port" as lib/hostport.h parses it. The socket is close-on-exec and
 * non-blocking, with SO_REUSEADDR so that a restarted agent is not locked out by connections of
 * its previous run in TIME_WAIT. Errors follow the project's convention: a negative errno, and one
 * line for a person in err ("cannot listen on ADDR: address already in use ..."). */
#ifndef US_LISTEN_H
#define US_LISTEN_H

#include <stddef.h>

enum {
    US_LISTEN_NODELAY = 1 << 0, /* TCP_NODELAY, inherited by accepted sockets */
};

/* A listening socket on hostport with this backlog: its fd, or -errno with a message in err. */
int us_tcp_listen(const char *hostport, int backlog, unsigned flags, char *err, size_t errlen);

/* Could a listener be opened on hostport now? (Binds and closes; does not listen.) 0, or -errno
 * with the message us_tcp_listen would give. For a component that binds later and reports an
 * occupied port badly (libraft says nothing useful). */
int us_tcp_check_free(const char *hostport, char *err, size_t errlen);

#endif
