/* key.h — the cluster key and API tokens: secrets read from files that only their owner may read.
 *
 * A cluster key file holds one or two keys, one a line, each 64 hexadecimal digits (32 random
 * bytes); lines that start with '#' and blank lines are ignored. The first key is used to send,
 * every key in the file is accepted: a running cluster rotates its key node by node by listing
 * the new key second, then first, then alone (docs/operations.md). `understudy keygen FILE`
 * writes a new file (mode 0600, never over an existing file).
 *
 * Every key has a 4-byte id (a keyed hash of the key) that travels in the clear, so a receiver
 * knows which of its keys to try and can tell "sealed with a key I do not have" from tampering.
 */
#ifndef US_KEY_H
#define US_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define US_KEY_LEN 32
#define US_KEYS_MAX 2

typedef struct us_keyring {
    int n; /* 1..US_KEYS_MAX once loaded; keys[0] is the sending key */
    unsigned char key[US_KEYS_MAX][US_KEY_LEN];
    uint32_t id[US_KEYS_MAX];
} us_keyring;

/* libsodium's sodium_init(), once; -1 if it failed (then nothing here may be used). */
int us_crypto_init(void);

/* Read a cluster key file. Refused (-1, with the reason in err, naming `understudy keygen`): the
 * file is missing or unreadable, readable or writable by group or others, holds no key, more than
 * US_KEYS_MAX keys, the same key twice, or a line that is not 64 hex digits (with its line). */
int us_keyring_load(const char *path, us_keyring *out, char *err, size_t errlen);

/* Parse key file text (no permission check): the part of us_keyring_load that fuzzers and unit
 * tests drive. `file` names the file in messages. */
int us_keyring_parse(const char *text, size_t len, const char *file, us_keyring *out, char *err,
                     size_t errlen);

/* The key with this id, or NULL. */
const unsigned char *us_keyring_find(const us_keyring *k, uint32_t id);

/* Is a secret file private enough (regular file, owner-only permissions)? 0, or -1 with why. */
int us_secret_file_check(const char *path, char *err, size_t errlen);

/* Write a new secret file with mode 0600 holding `text`; refuses to replace an existing file
 * (O_EXCL), fsyncs it. 0, or -1 with the reason in err. */
int us_secret_file_create(const char *path, const char *text, char *err, size_t errlen);

/* `understudy keygen FILE`: a new random cluster key. `understudy keygen --token FILE`: a new
 * random API token (one line, 64 hex digits). 0, or -1 with the reason in err. */
int us_keygen(const char *path, bool token, char *err, size_t errlen);

/* Wipe a keyring (sodium_memzero). */
void us_keyring_wipe(us_keyring *k);

#endif
