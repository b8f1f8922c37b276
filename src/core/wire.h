/* wire.h — the sealed envelope of every agent datagram, and replay windows. Pure: no I/O.
 *
 * A datagram is
 *     "us" | major | minor | key id (4, big endian) | nonce (24) | ciphertext (inner + 16-byte tag)
 * sealed with XChaCha20-Poly1305 (libsodium's crypto_aead_xchacha20poly1305_ietf) under the key the
 * id names. The first 32 bytes and the cluster name are authenticated as associated data, so a
 * datagram of another cluster, or of another protocol major version, never opens. The inner part
 * (all of it authenticated and encrypted) is
 *     chan (1) | sender name length (1) | sender name | inc (8) | seq (8) | to_inc (8) | payload
 * integers big endian: the sender's node name and incarnation (which only grows, agent.c), a
 * sequence number that grows per (sender, incarnation, channel), and the receiver's incarnation
 * as far as the sender knows it (0: not known yet). The payload is a JSON object (net.c).
 *
 * Nonces are random (24 bytes), so any number of senders may share a key.
 * A receiver drops a datagram that does not open (and says why: us_wire_result), and keeps per
 * sender and channel a us_replay window: an incarnation older than the newest seen, or a
 * sequence number seen before or more than 64 behind the newest, is a replay.
 */
#ifndef US_WIRE_H
#define US_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/key.h"
#include "core/model.h"

#define US_WIRE_MAJOR 1
#define US_WIRE_MINOR 0
#define US_WIRE_HEAD 32 /* magic, version, key id, nonce */
#define US_WIRE_TAG 16
/* Largest overhead of the envelope over the payload (a 63-character sender name). */
#define US_WIRE_OVERHEAD (US_WIRE_HEAD + US_WIRE_TAG + 2 + (US_NAME_MAX - 1) + 24)
#define US_WIRE_MAX 65507 /* one UDP datagram over IPv4 */

typedef enum {
    US_CHAN_AGENT = 0,    /* the agent's own datagrams */
    US_CHAN_GUARDIAN = 1, /* the guardian's fencing announcements (guardian.h) */
    US_CHAN_COUNT
} us_wire_chan;

typedef struct us_wire_hdr {
    uint8_t chan;
    char sender[US_NAME_MAX];
    uint64_t inc;
    uint64_t seq;
    uint64_t to_inc;
} us_wire_hdr;

typedef enum {
    US_WIRE_OK = 0,
    US_WIRE_MALFORMED, /* too short, bad magic, bad inner layout, invalid sender name */
    US_WIRE_VERSION,   /* another major version */
    US_WIRE_AUTH, /* unknown key id, or the tag does not verify (forged, modified, wrong key) */
} us_wire_result;

/* Seal `payload` into out (at most outlen bytes). Returns the datagram length, or 0 if it does not
 * fit or the header is invalid. */
size_t us_wire_seal(const us_keyring *k, const char *cluster, const us_wire_hdr *h,
                    const void *payload, size_t len, unsigned char *out, size_t outlen);

/* The same with a nonce of the caller's (24 bytes, never reused with the key): for the guardian,
 * which draws its nonces with getrandom(2) itself. */
size_t us_wire_seal_nonce(const us_keyring *k, const char *cluster, const us_wire_hdr *h,
                          const void *payload, size_t len, const unsigned char nonce[24],
                          unsigned char *out, size_t outlen);

/* Open a datagram: fills *h and copies the payload into out (which needs len bytes) with its length
 * in *out_len. Nothing is written to *h on failure. */
us_wire_result us_wire_open(const us_keyring *k, const char *cluster, const unsigned char *dgram,
                            size_t len, us_wire_hdr *h, unsigned char *out, size_t *out_len);

/* A replay window for one sender and channel; zero-initialised = nothing seen. */
typedef struct us_replay {
    uint64_t inc;  /* newest incarnation seen */
    uint64_t top;  /* newest sequence number seen under it, 0 = none */
    uint64_t bits; /* bit i: top - i was seen */
} us_replay;

/* Is (inc, seq) new? If so, record it and return true; false for a replay. seq 0 is never new. */
bool us_replay_accept(us_replay *r, uint64_t inc, uint64_t seq);

/* Metric label of a result ("auth", "malformed", "version"). */
const char *us_wire_result_name(us_wire_result r);

#endif
