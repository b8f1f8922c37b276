/* listen.c — see listen.h. */
#include "lib/listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/hostport.h"

static int fail(int e, const char *hostport, char *err, size_t errlen)
{
    if (e == EADDRINUSE)
        snprintf(err, errlen,
                 "cannot listen on %s: address already in use (another process listens on this "
                 "port)",
                 hostport);
    else
        snprintf(err, errlen, "cannot listen on %s: %s", hostport, strerror(e));
    return -e;
}

/* bind() only when backlog < 0. */
static int open_socket(const char *hostport, int backlog, unsigned flags, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    if (us_sockaddr_parse(hostport, &sa) != 0) {
        snprintf(err, errlen, "bad listen address '%s' (expected IPv4:port, e.g. 127.0.0.1:7201)",
                 hostport);
        return -EINVAL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(errno, hostport, err, errlen);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (flags & US_LISTEN_NODELAY)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&sa, sizeof sa) != 0 ||
        (backlog >= 0 && listen(fd, backlog) != 0)) {
        int e = errno;
        close(fd);
        return fail(e, hostport, err, errlen);
    }
    return fd;
}

int us_tcp_listen(const char *hostport, int backlog, unsigned flags, char *err, size_t errlen)
{
    return open_socket(hostport, backlog < 1 ? 1 : backlog, flags, err, errlen);
}

int us_tcp_check_free(const char *hostport, char *err, size_t errlen)
{
    int fd = open_socket(hostport, -1, 0, err, errlen);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}
