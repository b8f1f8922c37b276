/* wire.c — see wire.h. */
#include "core/wire.h"

#include <sodium.h>
#include <string.h>

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Associated data: the clear header and the cluster name. */
static size_t make_ad(unsigned char *ad, const unsigned char *head, const char *cluster)
{
    size_t cl = strnlen(cluster, US_NAME_MAX - 1);
    memcpy(ad, head, US_WIRE_HEAD);
    memcpy(ad + US_WIRE_HEAD, cluster, cl);
    return US_WIRE_HEAD + cl;
}

size_t us_wire_seal(const us_keyring *k, const char *cluster, const us_wire_hdr *h,
                    const void *payload, size_t len, unsigned char *out, size_t outlen)
{
    unsigned char nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    randombytes_buf(nonce, sizeof nonce);
    return us_wire_seal_nonce(k, cluster, h, payload, len, nonce, out, outlen);
}

size_t us_wire_seal_nonce(const us_keyring *k, const char *cluster, const us_wire_hdr *h,
                          const void *payload, size_t len, const unsigned char nonce[24],
                          unsigned char *out, size_t outlen)
{
    size_t nl = strnlen(h->sender, US_NAME_MAX);
    if (k->n < 1 || nl == 0 || nl >= US_NAME_MAX || h->chan >= US_CHAN_COUNT)
        return 0;
    size_t inner = 2 + nl + 24 + len;
    size_t total = US_WIRE_HEAD + inner + US_WIRE_TAG;
    if (total > outlen || total > US_WIRE_MAX)
        return 0;
    out[0] = 'u';
    out[1] = 's';
    out[2] = US_WIRE_MAJOR;
    out[3] = US_WIRE_MINOR;
    out[4] = (unsigned char)(k->id[0] >> 24);
    out[5] = (unsigned char)(k->id[0] >> 16);
    out[6] = (unsigned char)(k->id[0] >> 8);
    out[7] = (unsigned char)k->id[0];
    memcpy(out + 8, nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    /* The inner part is laid out in place, then encrypted in place. */
    unsigned char *p = out + US_WIRE_HEAD;
    p[0] = h->chan;
    p[1] = (unsigned char)nl;
    memcpy(p + 2, h->sender, nl);
    put64(p + 2 + nl, h->inc);
    put64(p + 10 + nl, h->seq);
    put64(p + 18 + nl, h->to_inc);
    memcpy(p + 26 + nl, payload, len);
    unsigned char ad[US_WIRE_HEAD + US_NAME_MAX];
    size_t adlen = make_ad(ad, out, cluster);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(p, &clen, p, inner, ad, adlen, NULL, out + 8,
                                               k->key[0]);
    return US_WIRE_HEAD + (size_t)clen;
}

us_wire_result us_wire_open(const us_keyring *k, const char *cluster, const unsigned char *dgram,
                            size_t len, us_wire_hdr *h, unsigned char *out, size_t *out_len)
{
    if (len < US_WIRE_HEAD + US_WIRE_TAG + 2 + 1 + 24 || len > US_WIRE_MAX || dgram[0] != 'u' ||
        dgram[1] != 's')
        return US_WIRE_MALFORMED;
    if (dgram[2] != US_WIRE_MAJOR)
        return US_WIRE_VERSION;
    uint32_t id =
        (uint32_t)dgram[4] << 24 | (uint32_t)dgram[5] << 16 | (uint32_t)dgram[6] << 8 | dgram[7];
    const unsigned char *key = us_keyring_find(k, id);
    if (!key)
        return US_WIRE_AUTH;
    unsigned char ad[US_WIRE_HEAD + US_NAME_MAX];
    size_t adlen = make_ad(ad, dgram, cluster);
    unsigned long long plen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &plen, NULL, dgram + US_WIRE_HEAD,
                                                   len - US_WIRE_HEAD, ad, adlen, dgram + 8,
                                                   key) != 0)
        return US_WIRE_AUTH;
    /* Authentic from here on: a malformed inner part is a bug of a key holder, not an attack. */
    size_t n = (size_t)plen;
    if (n < 2 || out[0] >= US_CHAN_COUNT)
        return US_WIRE_MALFORMED;
    size_t nl = out[1];
    if (nl == 0 || nl >= US_NAME_MAX || n < 2 + nl + 24)
        return US_WIRE_MALFORMED;
    char name[US_NAME_MAX];
    memcpy(name, out + 2, nl);
    name[nl] = '\0';
    if (!us_name_valid(name))
        return US_WIRE_MALFORMED;
    h->chan = out[0];
    memcpy(h->sender, name, nl + 1);
    h->inc = get64(out + 2 + nl);
    h->seq = get64(out + 10 + nl);
    h->to_inc = get64(out + 18 + nl);
    size_t skip = 26 + nl;
    memmove(out, out + skip, n - skip);
    *out_len = n - skip;
    return US_WIRE_OK;
}

bool us_replay_accept(us_replay *r, uint64_t inc, uint64_t seq)
{
    if (seq == 0 || inc < r->inc)
        return false;
    if (inc > r->inc) {
        r->inc = inc;
        r->top = seq;
        r->bits = 1;
        return true;
    }
    if (seq > r->top) {
        uint64_t shift = seq - r->top;
        r->bits = shift >= 64 ? 1 : r->bits << shift | 1;
        r->top = seq;
        return true;
    }
    uint64_t back = r->top - seq;
    if (back >= 64 || (r->bits >> back & 1))
        return false;
    r->bits |= 1ULL << back;
    return true;
}

const char *us_wire_result_name(us_wire_result r)
{
    static const char *const names[] = {
        [US_WIRE_OK] = "ok",
        [US_WIRE_MALFORMED] = "malformed",
        [US_WIRE_VERSION] = "version",
        [US_WIRE_AUTH] = "auth",
    };
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "malformed";
}
