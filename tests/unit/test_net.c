/* test_net.c — the agent's datagram socket (net.h) on a real libuv loop over 127.0.0.1: sealed
 * messages arrive decoded, a datagram sealed with another key is counted and dropped, and a burst
 * of peers' datagrams that arrives while the agent is busy (its loop not running) waits in the
 * socket instead of being dropped by the kernel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "lib/key.h"
#include "net/net.h"

static uv_loop_t loop;

static us_keyring ring_of(unsigned char fill)
{
    us_keyring k;
    assert_int_equal(ut_keyring(fill, &k), 0);
    return k;
}

typedef struct {
    int got;
    char sender[US_NAME_MAX];
} sink;

static void on_msg(const us_wire_hdr *h, const us_msg *msg, const struct sockaddr_in *from,
                   void *data)
{
    (void)from;
    sink *s = data;
    if (msg->type == US_MSG_HELLO)
        s->got++;
    snprintf(s->sender, sizeof s->sender, "%s", h->sender);
}

typedef struct {
    us_net net;
    sink sink;
    struct sockaddr_in sa;
} node;

static void node_start(node *n, const us_keyring *keys, const char *name)
{
    char addr[64], err[256];
    int port = ut_free_port();
    assert_true(port > 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    memset(n, 0, sizeof *n);
    assert_int_equal(
        us_net_start(&n->net, &loop, addr, keys, "c1", name, 1, on_msg, &n->sink, err, sizeof err),
        0);
    n->sa.sin_family = AF_INET;
    n->sa.sin_port = htons((uint16_t)port);
    n->sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

static void node_stop(node *n)
{
    us_net_stop(&n->net);
    uv_run(&loop, UV_RUN_NOWAIT);
}

typedef struct {
    const sink *s;
    int want;
} until_arg;

static bool got_enough(const void *data)
{
    const until_arg *u = data;
    return u->s->got >= u->want;
}

/* A hello padded to `size` bytes of JSON (the decoder ignores fields it does not read). */
static char *hello_of(size_t size)
{
    char *text = malloc(size + 1);
    assert_non_null(text);
    int head = snprintf(text, size + 1, "{\"t\":\"hello\",\"pad\":\"");
    memset(text + head, 'x', size - (size_t)head - 2);
    memcpy(text + size - 2, "\"}", 3);
    return text;
}

static void test_sealed_messages_arrive_and_forgeries_are_counted(void **state)
{
    (void)state;
    us_keyring k1 = ring_of(1), k2 = ring_of(2);
    node a, b, m;
    node_start(&a, &k1, "a");
    node_start(&b, &k1, "b");
    node_start(&m, &k2, "m"); /* another key: not one of us */
    us_net_send_text(&b.net, &a.sa, 0, "{\"t\":\"hello\"}", 13);
    us_net_send_text(&m.net, &a.sa, 0, "{\"t\":\"hello\"}", 13);
    until_arg u = {&a.sink, 1};
    bool got = ut_run_until(&loop, got_enough, &u, 5000);
    for (int i = 0; i < 500 && a.net.rejected[US_NET_REJECT_AUTH] == 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        ut_sleep_ms(2);
    }
    node_stop(&a);
    node_stop(&b);
    node_stop(&m);
    assert_true(got);
    assert_string_equal(a.sink.sender, "b");
    assert_int_equal(a.net.rejected[US_NET_REJECT_AUTH], 1);
    assert_int_equal(a.sink.got, 1);
}

/* 24 peers' pings of ~10 KB, four heartbeats' worth (100), sent while the receiver's loop does
 * not run: every one must be there when it runs again. With the kernel's default buffer (208 KiB)
 * about a dozen were. */
static void test_a_burst_waits_in_the_socket_while_the_agent_is_busy(void **state)
{
    (void)state;
    us_keyring k = ring_of(1);
    node a, b;
    node_start(&a, &k, "a");
    node_start(&b, &k, "b");
    enum { BURST = 100, SIZE = 10000 };
    char *text = hello_of(SIZE);
    for (int i = 0; i < BURST; i++)
        us_net_send_text(&b.net, &a.sa, 0, text, SIZE);
    free(text);
    until_arg u = {&a.sink, BURST};
    ut_run_until(&loop, got_enough, &u, 5000);
    int got = a.sink.got;
    node_stop(&a);
    node_stop(&b);
    assert_int_equal(got, BURST);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(us_crypto_init(), 0);
    return uv_loop_init(&loop);
}

static int teardown(void **state)
{
    (void)state;
    ut_close_all(&loop);
    return uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sealed_messages_arrive_and_forgeries_are_counted),
        cmocka_unit_test(test_a_burst_waits_in_the_socket_while_the_agent_is_busy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
