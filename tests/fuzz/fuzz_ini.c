/* fuzz_ini.c — the INI reader (us_ini_parse) and us_ini_excerpt. */
#include "fuzz.h"

#include "config/config.h"
#include "config/ini.h"

typedef struct seen {
    int last_line;
    int calls;
    int stop_at; /* stop the parse at this callback (0: never) */
} seen;

static int cb(void *user, const char *section, const char *key, const char *value, int line)
{
    seen *s = user;
    FUZZ_CHECK(section != NULL);
    FUZZ_CHECK((key == NULL) == (value == NULL));
    FUZZ_CHECK(line > s->last_line); /* one construct per line, in order */
    s->last_line = line;
    if (key) {
        FUZZ_CHECK(key[0] != '\0');
        FUZZ_CHECK(strchr(key, '=') == NULL);
        FUZZ_CHECK(strchr(value, '\n') == NULL);
        FUZZ_UTF8(key);
        FUZZ_UTF8(value);
    } else {
        FUZZ_CHECK(section[0] != '\0');
        FUZZ_UTF8(section);
    }
    /* Everything handed out is a C string: touch each byte. */
    volatile size_t n = strlen(section) + (key ? strlen(key) + strlen(value) : 0);
    (void)n;
    char ex[32];
    us_ini_excerpt(value ? value : section, ex, sizeof ex);
    FUZZ_CHECK(strlen(ex) < sizeof ex);
    FUZZ_UTF8(ex);
    return ++s->calls == s->stop_at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static us_errors err;
    fuzz_in in = {data, size};
    seen s = {.stop_at = fuzz_u8(&in) & 15};
    char *text = fuzz_copy(in.p, in.n);
    memset(&err, 0, sizeof err);
    int rc = us_ini_parse(text, in.n, cb, &s, &err, "fuzz.ini");
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(err.n <= US_ERRORS_MAX);
    if (rc == 0)
        FUZZ_CHECK(err.n == 0);
    for (int i = 0; i < err.n; i++) {
        FUZZ_CHECK(memchr(err.msg[i], '\0', US_ERROR_LEN) != NULL);
        FUZZ_UTF8(err.msg[i]);
    }
    char joined[512];
    us_errors_join(&err, joined, sizeof joined);
    /* us_ini_excerpt with every small buffer size on the raw input (as a C string). */
    char *str = fuzz_text(in.p, in.n);
    char ex[16];
    for (size_t k = 0; k <= sizeof ex; k++) {
        us_ini_excerpt(str, ex, k);
        if (k > 0)
            FUZZ_CHECK(strlen(ex) < k);
    }
    free(str);
    free(text);
    return 0;
}
