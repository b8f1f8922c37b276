/* test_listen.c — lib/listen.h and lib/hostport.h: the one listener and the address parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/hostport.h"
#include "lib/listen.h"
#include "helpers.h"

static void test_listen_accepts_connections(void **state)
{
    (void)state;
    char addr[32], err[256] = "";
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ut_free_port());
    int fd = us_tcp_listen(addr, 8, US_LISTEN_NODELAY, err, sizeof err);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    struct sockaddr_in sa;
    assert_int_equal(us_sockaddr_parse(addr, &sa), 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    close(c);
    /* Occupied now: both calls say so the same way, with the address. */
    char want[96];
    snprintf(want, sizeof want, "cannot listen on %s: address already in use", addr);
    assert_int_equal(us_tcp_listen(addr, 8, 0, err, sizeof err), -EADDRINUSE);
    assert_non_null(strstr(err, want));
    err[0] = '\0';
    assert_int_equal(us_tcp_check_free(addr, err, sizeof err), -EADDRINUSE);
    assert_non_null(strstr(err, want));
    close(fd);
    /* Released, and SO_REUSEADDR: free again at once. */
    assert_int_equal(us_tcp_check_free(addr, err, sizeof err), 0);
}

static void test_listen_bad_addresses(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",         "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "localhost:80", "01.2.3.4:80",
        "1.2.3:80", ":80",       "1.2.3.4:080", "1.2.3.4:8x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        assert_int_equal(us_tcp_listen(bad[i], 8, 0, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "bad listen address"));
        assert_non_null(strstr(err, "expected IPv4:port"));
        struct sockaddr_in sa;
        assert_int_equal(us_sockaddr_parse(bad[i], &sa), -EINVAL);
    }
}

static void test_hostport_parts(void **state)
{
    (void)state;
    char host[16];
    int port = 0;
    assert_int_equal(us_parse_hostport("198.18.0.1:7101", host, sizeof host, &port), 0);
    assert_string_equal(host, "198.18.0.1");
    assert_int_equal(port, 7101);
    assert_int_equal(us_parse_hostport("255.255.255.255:65535", NULL, 0, &port), 0);
    assert_int_equal(port, 65535);
    char tiny[4];
    assert_int_equal(us_parse_hostport("198.18.0.1:7101", tiny, sizeof tiny, NULL), -EINVAL);
    assert_true(us_ipv4_valid("10.0.0.1", 8));
    assert_false(us_ipv4_valid("10.0.0.256", 10));
    assert_false(us_ipv4_valid("10.0.0", 6));
}

/* A client's address: host names and [IPv6] too, the port checked the same way. */
static void test_client_hostport(void **state)
{
    (void)state;
    static const struct {
        const char *in, *host, *port;
    } good[] = {{"127.0.0.1:7100", "127.0.0.1", "7100"},
                {"node-1.example:443", "node-1.example", "443"},
                {"[::1]:7100", "::1", "7100"},
                {"[fe80::1%eth0]:1", "fe80::1%eth0", "1"}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char host[64], port[8];
        assert_int_equal(us_split_hostport(good[i].in, host, sizeof host, port, sizeof port), 0);
        assert_string_equal(host, good[i].host);
        assert_string_equal(port, good[i].port);
    }
    static const char *bad[] = {"",         "host", ":80",       "host:", "host:0", "h:65536",
                                "h:123456", "h:8x", "[::1]7100", "[::1",  "[]:80",  "h:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char host[64], port[8];
        assert_int_equal(us_split_hostport(bad[i], host, sizeof host, port, sizeof port), -EINVAL);
    }
    char tiny[4], port[8];
    assert_int_equal(us_split_hostport("longhost:80", tiny, sizeof tiny, port, sizeof port),
                     -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_accepts_connections),
        cmocka_unit_test(test_listen_bad_addresses),
        cmocka_unit_test(test_hostport_parts),
        cmocka_unit_test(test_client_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
