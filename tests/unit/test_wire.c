/* test_wire.c — the sealed datagram envelope (wire.h): round trip, every kind of forgery the
 * issue names (no key, wrong key, flipped byte, another cluster, another version), and the replay
 * window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "lib/key.h"
#include "core/wire.h"

static us_keyring ring_of(unsigned char fill)
{
    us_keyring k;
    assert_int_equal(ut_keyring(fill, &k), 0);
    return k;
}

static const us_wire_hdr hdr = {
    .chan = US_CHAN_AGENT, .sender = "n1", .inc = 7, .seq = 42, .to_inc = 9};
static const char payload[] = "{\"t\":\"ping\",\"seq\":\"1\"}";

static size_t seal(const us_keyring *k, const char *cluster, unsigned char *out, size_t cap)
{
    return us_wire_seal(k, cluster, &hdr, payload, strlen(payload), out, cap);
}

static void test_round_trip(void **state)
{
    (void)state;
    assert_int_equal(us_crypto_init(), 0);
    us_keyring k = ring_of(1);
    unsigned char d[1024], out[1024];
    size_t n = seal(&k, "prod", d, sizeof d);
    assert_true(n > strlen(payload) && n <= strlen(payload) + US_WIRE_OVERHEAD);
    us_wire_hdr h;
    size_t len;
    assert_int_equal(us_wire_open(&k, "prod", d, n, &h, out, &len), US_WIRE_OK);
    assert_int_equal(len, strlen(payload));
    assert_memory_equal(out, payload, len);
    assert_string_equal(h.sender, "n1");
    assert_int_equal(h.chan, US_CHAN_AGENT);
    assert_int_equal(h.inc, 7);
    assert_int_equal(h.seq, 42);
    assert_int_equal(h.to_inc, 9);
    /* The payload is not in the clear. */
    assert_null(memmem(d, n, "ping", 4));
    /* Two seals of the same message differ (random nonces). */
    unsigned char d2[1024];
    assert_int_equal(seal(&k, "prod", d2, sizeof d2), n);
    assert_memory_not_equal(d, d2, n);
    /* Too small an output buffer: nothing sealed. */
    assert_int_equal(seal(&k, "prod", d2, 40), 0);
}

static void test_forgeries(void **state)
{
    (void)state;
    us_keyring k = ring_of(1), other = ring_of(5);
    unsigned char d[1024], out[1024];
    size_t n = seal(&k, "prod", d, sizeof d), len;
    us_wire_hdr h;
    /* Wrong key, another cluster's name. */
    assert_int_equal(us_wire_open(&other, "prod", d, n, &h, out, &len), US_WIRE_AUTH);
    assert_int_equal(us_wire_open(&k, "test", d, n, &h, out, &len), US_WIRE_AUTH);
    /* Every single flipped byte is caught (header, nonce, ciphertext, tag). */
    for (size_t i = 0; i < n; i++) {
        unsigned char f[1024];
        memcpy(f, d, n);
        f[i] ^= 0x01;
        us_wire_result r = us_wire_open(&k, "prod", f, n, &h, out, &len);
        assert_int_not_equal(r, US_WIRE_OK);
    }
    /* Truncated, or plain JSON as an unkeyed sender would send it. */
    assert_int_equal(us_wire_open(&k, "prod", d, n - 1, &h, out, &len), US_WIRE_AUTH);
    assert_int_equal(us_wire_open(&k, "prod", d, 20, &h, out, &len), US_WIRE_MALFORMED);
    const char *plain = "{\"t\":\"ping\",\"from\":\"n1\",\"inc\":\"12345\"}";
    assert_int_equal(
        us_wire_open(&k, "prod", (const unsigned char *)plain, strlen(plain), &h, out, &len),
        US_WIRE_MALFORMED);
    /* Another major version is refused as such (and counted apart). */
    unsigned char v[1024];
    memcpy(v, d, n);
    v[2] = US_WIRE_MAJOR + 1;
    assert_int_equal(us_wire_open(&k, "prod", v, n, &h, out, &len), US_WIRE_VERSION);
}

/* Key rotation: a ring [new, old] opens what [old] seals and the other way round. */
static void test_two_keys(void **state)
{
    (void)state;
    us_keyring old = ring_of(1), fresh = ring_of(3), both = ring_of(3);
    both.n = 2;
    memcpy(both.key[1], old.key[0], US_KEY_LEN);
    both.id[1] = old.id[0];
    unsigned char d[1024], out[1024];
    size_t len;
    us_wire_hdr h;
    size_t n = seal(&old, "prod", d, sizeof d);
    assert_int_equal(us_wire_open(&both, "prod", d, n, &h, out, &len), US_WIRE_OK);
    n = seal(&both, "prod", d, sizeof d); /* sent with the new key */
    assert_int_equal(us_wire_open(&fresh, "prod", d, n, &h, out, &len), US_WIRE_OK);
    assert_int_equal(us_wire_open(&old, "prod", d, n, &h, out, &len), US_WIRE_AUTH);
}

static void test_replay_window(void **state)
{
    (void)state;
    us_replay r = {0};
    assert_false(us_replay_accept(&r, 5, 0)); /* seq 0 is never valid */
    assert_true(us_replay_accept(&r, 5, 1));
    assert_false(us_replay_accept(&r, 5, 1)); /* the same again */
    assert_true(us_replay_accept(&r, 5, 3));
    assert_true(us_replay_accept(&r, 5, 2)); /* reordered, not seen yet */
    assert_false(us_replay_accept(&r, 5, 2));
    assert_true(us_replay_accept(&r, 5, 100));
    assert_true(us_replay_accept(&r, 5, 37));  /* 63 behind: still in the window */
    assert_false(us_replay_accept(&r, 5, 36)); /* 64 behind: too old */
    assert_false(us_replay_accept(&r, 5, 3));
    assert_false(us_replay_accept(&r, 4, 1000)); /* an earlier incarnation */
    assert_true(us_replay_accept(&r, 6, 1));     /* a new incarnation starts over */
    assert_false(us_replay_accept(&r, 5, 101));
    assert_true(us_replay_accept(&r, 6, 1000)); /* a jump beyond the window */
    assert_false(us_replay_accept(&r, 6, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_forgeries),
        cmocka_unit_test(test_two_keys),
        cmocka_unit_test(test_replay_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
