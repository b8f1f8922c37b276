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

/* Read a cluster key file. Refused (-errno, with the reason in err, naming `understudy keygen`):
 * the file is missing or unreadable, readable or writable by group or others, holds no key, more
 * than US_KEYS_MAX keys, the same key twice, or a line that is not 64 hex digits (with its line).
 */
int us_keyring_load(const char *path, us_keyring *out, char *err, size_t errlen);

/* Parse key file text (no permission check): the part of us_keyring_load that fuzzers and unit
 * tests drive. `file` names the file in messages. 0, or -EINVAL with the reason in err. */
int us_keyring_parse(const char *text, size_t len, const char *file, us_keyring *out, char *err,
                     size_t errlen);

/* The key with this id, or NULL. */
const unsigned char *us_keyring_find(const us_keyring *k, uint32_t id);

/* Is a secret file private enough (regular file, owner-only permissions)? 0, or -errno with why. */
int us_secret_file_check(const char *path, char *err, size_t errlen);

/* Write a new secret file with mode 0600 holding `text`; refuses to replace an existing file
 * (O_EXCL), fsyncs it. 0, or -errno with the reason in err. */
int us_secret_file_create(const char *path, const char *text, char *err, size_t errlen);

/* `understudy keygen FILE`: a new random cluster key. `understudy keygen --token FILE`: a new
 * random API token (one line, 64 hex digits). 0, or -errno with the reason in err. */
int us_keygen(const char *path, bool token, char *err, size_t errlen);

/* Wipe a keyring (sodium_memzero). */
void us_keyring_wipe(us_keyring *k);

/* API token files ([node] api_token_file; `understudy keygen --token FILE` writes one).
 * One token a line, optionally after a name: "NAME TOKEN" (events record which token asked);
 * a bare token is named "tokenN" after its place among the tokens (token1, token2, ...). A token
 * is 32 to 128 characters of A-Z a-z 0-9 . _ ~ + / = - ; a name 1 to 32 of A-Z a-z 0-9 _ . - .
 * Blank lines and lines starting with '#' are ignored. At most US_TOKENS_MAX tokens, no token
 * or name twice. The file must be readable by its owner only, like a cluster key file. */
#define US_TOKENS_MAX 16
#define US_TOKEN_MIN 32
#define US_TOKEN_MAX 128
#define US_TOKEN_NAME_MAX 33

typedef struct us_token {
    char name[US_TOKEN_NAME_MAX];
    size_t len;
    unsigned char value[US_TOKEN_MAX]; /* zero-padded, so that every compare has one length */
} us_token;

typedef struct us_tokens {
    int n;
    us_token t[US_TOKENS_MAX];
} us_tokens;

/* Read an API token file (permission check, then us_tokens_parse). -errno with the reason in err
 * (naming `understudy keygen --token`). */
int us_tokens_load(const char *path, us_tokens *out, char *err, size_t errlen);

/* Parse token file text (no permission check); `file` names the file in messages
 * ("FILE:LINE: ..."). 0, or -EINVAL or -ENOMEM with the reason in err. */
int us_tokens_parse(const char *text, size_t len, const char *file, us_tokens *out, char *err,
                    size_t errlen);

/* The name of the token `presented` (len bytes), or NULL. Compares against every token in
 * constant time (no early exit, same work for any input). */
const char *us_tokens_match(const us_tokens *t, const char *presented, size_t len);

/* The first token of a file as text (for clients: the CLI reads the node's token file). 0, or
 * -errno with the reason in err. */
int us_token_first(const char *path, char *out, size_t outlen, char *err, size_t errlen);

#endif
