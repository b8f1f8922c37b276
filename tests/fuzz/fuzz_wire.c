/* fuzz_wire.c — the datagram envelope (wire.h), with a fixed test keyring.
 *
 * The first input byte picks a mode:
 *   0 "before decryption": the rest is a datagram as it comes off the network, given to
 *     us_wire_open. Flag bit 4 of the mode byte first writes a known key id into it, so that
 *     the fuzzer also gets past the id lookup to the tag check.
 *   1 "after decryption": the rest is header fields and a payload; sealed with us_wire_seal,
 *     opened again, and the round trip must give back the same header and payload; then one
 *     byte the input chooses is flipped, and the datagram must no longer open.
 *   2 "inner part": the rest is the plaintext inner part, sealed directly with the key as a
 *     key holder (buggy or not) could, so that us_wire_open's inner-header parsing sees
 *     arbitrary bytes behind a valid tag.
 *   3 replay window: the rest is (incarnation, sequence) pairs for us_replay_accept, checked
 *     against a model: nothing is accepted twice, nothing older than the window is accepted.
 * A datagram that opens goes to decode_payload: the place for net.c's payload decoder. */
#include "fuzz.h"

#include <sodium.h>

#include "lib/key.h"
#include "lib/log.h"
#include "core/msg.h"
#include "core/wire.h"

static us_keyring ring;
static const char cluster[] = "fuzz-cluster";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    us_log_init("fuzz", -1);
    if (us_crypto_init() != 0)
        abort();
    static const char keys[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
                               "f0e0d0c0b0a09080706050403020100fffeeddccbbaa99887766554433221100\n";
    char err[256];
    if (us_keyring_parse(keys, sizeof keys - 1, "fuzz", &ring, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    return 0;
}

/* The payload of an opened datagram goes where net.c sends it: msg.h's decoder (fuzz_msg.c
 * checks what it accepts). */
static void decode_payload(const us_wire_hdr *h, const unsigned char *payload, size_t len)
{
    static us_msg m;
    FUZZ_CHECK(h->chan < US_CHAN_COUNT);
    FUZZ_CHECK(us_name_valid(h->sender));
    FUZZ_CHECK(len <= US_WIRE_MAX);
    const char *why = NULL;
    us_msg_result r = us_msg_decode(payload, len, &m, &why);
    FUZZ_CHECK(r == US_MSG_OK || r == US_MSG_MALFORMED || r == US_MSG_UNKNOWN);
}

static void open_any(const unsigned char *dgram, size_t len)
{
    us_wire_hdr h;
    memset(&h, 0xA5, sizeof h);
    unsigned char *out = malloc(len ? len : 1);
    size_t out_len = (size_t)-1;
    us_wire_result r = us_wire_open(&ring, cluster, dgram, len, &h, out, &out_len);
    FUZZ_CHECK(r == US_WIRE_OK || r == US_WIRE_MALFORMED || r == US_WIRE_VERSION ||
               r == US_WIRE_AUTH);
    FUZZ_CHECK(us_wire_result_name(r) != NULL);
    if (r == US_WIRE_OK) {
        FUZZ_CHECK(out_len <= len - US_WIRE_HEAD - US_WIRE_TAG);
        decode_payload(&h, out, out_len);
    } else {
        us_wire_hdr pristine;
        memset(&pristine, 0xA5, sizeof pristine);
        FUZZ_CHECK(memcmp(&h, &pristine, sizeof h) == 0); /* nothing written on failure */
    }
    free(out);
}

static void put_id(unsigned char *d, uint32_t id)
{
    d[4] = (unsigned char)(id >> 24);
    d[5] = (unsigned char)(id >> 16);
    d[6] = (unsigned char)(id >> 8);
    d[7] = (unsigned char)id;
}

static void mode_raw(uint8_t flags, fuzz_in *in)
{
    unsigned char *d = (unsigned char *)fuzz_copy(in->p, in->n);
    if ((flags & 0x10) && in->n >= 8)
        put_id(d, ring.id[(flags >> 5) & 1]);
    open_any(d, in->n);
    free(d);
}

static void mode_roundtrip(fuzz_in *in)
{
    us_wire_hdr h = {0};
    h.chan = fuzz_u8(in) % US_CHAN_COUNT;
    size_t nl;
    const uint8_t *name = fuzz_bytes(in, fuzz_u8(in) % US_NAME_MAX, &nl);
    memcpy(h.sender, name, nl);
    h.inc = fuzz_u64(in);
    h.seq = fuzz_u64(in);
    h.to_inc = fuzz_u64(in);
    uint16_t flip = (uint16_t)(fuzz_u8(in) << 8 | fuzz_u8(in));
    uint8_t mask = fuzz_u8(in);
    const uint8_t *payload = in->p;
    size_t plen = in->n;
    static unsigned char dgram[US_WIRE_MAX + 1];
    size_t outlen = plen + US_WIRE_OVERHEAD;
    size_t n = us_wire_seal(&ring, cluster, &h, payload, plen, dgram, outlen);
    size_t sl = strnlen(h.sender, US_NAME_MAX);
    if (sl == 0 || sl >= US_NAME_MAX || plen + US_WIRE_HEAD + US_WIRE_TAG + 26 + sl > US_WIRE_MAX) {
        FUZZ_CHECK(n == 0);
        return;
    }
    FUZZ_CHECK(n == US_WIRE_HEAD + 26 + sl + plen + US_WIRE_TAG);
    us_wire_hdr got;
    unsigned char *out = malloc(n);
    size_t out_len = 0;
    us_wire_result r = us_wire_open(&ring, cluster, dgram, n, &got, out, &out_len);
    if (!us_name_valid(h.sender)) {
        FUZZ_CHECK(r == US_WIRE_MALFORMED); /* seal does not check names; open does */
    } else {
        FUZZ_CHECK(r == US_WIRE_OK);
        FUZZ_CHECK(got.chan == h.chan && strcmp(got.sender, h.sender) == 0);
        FUZZ_CHECK(got.inc == h.inc && got.seq == h.seq && got.to_inc == h.to_inc);
        FUZZ_CHECK(out_len == plen && (plen == 0 || memcmp(out, payload, plen) == 0));
        decode_payload(&got, out, out_len);
        /* Another cluster's datagram never opens. */
        FUZZ_CHECK(us_wire_open(&ring, "other", dgram, n, &got, out, &out_len) == US_WIRE_AUTH);
        /* Any modification is detected (the header as AD, the rest by the tag). */
        if (mask) {
            size_t at = flip % n;
            dgram[at] ^= mask;
            r = us_wire_open(&ring, cluster, dgram, n, &got, out, &out_len);
            FUZZ_CHECK(r != US_WIRE_OK);
        }
    }
    free(out);
}

static void mode_inner(uint8_t flags, fuzz_in *in)
{
    size_t ilen = in->n;
    if (ilen + US_WIRE_HEAD + US_WIRE_TAG > US_WIRE_MAX)
        return;
    size_t n = US_WIRE_HEAD + ilen + US_WIRE_TAG;
    unsigned char *d = malloc(n);
    d[0] = 'u';
    d[1] = 's';
    d[2] = US_WIRE_MAJOR;
    d[3] = flags & 0x0f; /* any minor version opens */
    int k = (flags >> 4) & 1;
    put_id(d, ring.id[k]);
    memset(d + 8, flags, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    unsigned char ad[US_WIRE_HEAD + sizeof cluster];
    memcpy(ad, d, US_WIRE_HEAD);
    memcpy(ad + US_WIRE_HEAD, cluster, sizeof cluster - 1);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(d + US_WIRE_HEAD, &clen, in->p, ilen, ad,
                                               US_WIRE_HEAD + sizeof cluster - 1, NULL, d + 8,
                                               ring.key[k]);
    FUZZ_CHECK(clen == ilen + US_WIRE_TAG);
    open_any(d, n);
    free(d);
}

#define REPLAY_OPS 256

static void mode_replay(fuzz_in *in)
{
    us_replay r = {0};
    struct {
        uint64_t inc, seq;
    } acc[REPLAY_OPS];
    int n_acc = 0;
    uint64_t max_inc = 0, top = 0;
    for (int op = 0; op < REPLAY_OPS && in->n > 0; op++) {
        /* Small steps most of the time so that the window is exercised. */
        uint8_t how = fuzz_u8(in);
        uint64_t inc = how & 0x80 ? fuzz_u64(in) : max_inc + (how & 1);
        uint64_t seq = how & 0x40 ? fuzz_u64(in) : top + (uint64_t)(int8_t)fuzz_u8(in);
        bool ok = us_replay_accept(&r, inc, seq);
        if (!ok)
            continue;
        FUZZ_CHECK(seq != 0 && inc >= max_inc);
        for (int i = 0; i < n_acc; i++)
            FUZZ_CHECK(!(acc[i].inc == inc && acc[i].seq == seq));
        if (inc > max_inc) {
            max_inc = inc;
            top = seq;
        } else {
            FUZZ_CHECK(seq > top || top - seq < 64);
            if (seq > top)
                top = seq;
        }
        acc[n_acc].inc = inc;
        acc[n_acc].seq = seq;
        n_acc++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    uint8_t mode = fuzz_u8(&in);
    switch (mode & 3) {
    case 0:
        mode_raw(mode, &in);
        break;
    case 1:
        mode_roundtrip(&in);
        break;
    case 2:
        mode_inner(mode, &in);
        break;
    default:
        mode_replay(&in);
        break;
    }
    return 0;
}
