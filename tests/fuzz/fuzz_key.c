/* fuzz_key.c — the secret-file parsers: cluster keys (us_keyring_parse) and API tokens
 * (us_tokens_parse, us_tokens_match). */
#include <errno.h>

#include "fuzz.h"

#include "lib/key.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (us_crypto_init() != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    us_keyring k;
    memset(&k, 0xA5, sizeof k);
    char err[256];
    char *text = fuzz_copy(data, size);
    int rc = us_keyring_parse(text, size, "fuzz.key", &k, err, sizeof err);
    if (rc == 0) {
        FUZZ_CHECK(k.n >= 1 && k.n <= US_KEYS_MAX);
        for (int i = 0; i < k.n; i++) {
            FUZZ_CHECK(us_keyring_find(&k, k.id[i]) != NULL);
            for (int j = 0; j < i; j++)
                FUZZ_CHECK(memcmp(k.key[i], k.key[j], US_KEY_LEN) != 0);
        }
        us_keyring_wipe(&k);
    } else {
        FUZZ_CHECK(rc == -EINVAL);
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
        us_keyring k2;
        memset(&k2, 0xA5, sizeof k2);
        FUZZ_CHECK(memcmp(&k, &k2, sizeof k) == 0); /* untouched */
    }
    /* The same bytes as an API token file; whatever it accepts, each token matches itself. */
    us_tokens t;
    if (us_tokens_parse(text, size, "fuzz.token", &t, err, sizeof err) == 0) {
        FUZZ_CHECK(t.n >= 1 && t.n <= US_TOKENS_MAX);
        for (int i = 0; i < t.n; i++)
            FUZZ_CHECK(us_tokens_match(&t, (const char *)t.t[i].value, t.t[i].len) != NULL);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    free(text);
    return 0;
}
