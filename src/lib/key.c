/* key.c — see key.h. */
#include "lib/key.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEYFILE_MAX 4096
#define KEYGEN_HINT "create one with `understudy keygen FILE`"

int us_crypto_init(void)
{
    static int done;
    if (!done)
        done = sodium_init() >= 0 ? 1 : -1;
    return done > 0 ? 0 : -1;
}

static uint32_t key_id(const unsigned char key[US_KEY_LEN])
{
    static const unsigned char label[] = "understudy key id v1";
    unsigned char h[16];
    crypto_generichash(h, sizeof h, label, sizeof label - 1, key, US_KEY_LEN);
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

int us_keyring_parse(const char *text, size_t len, const char *file, us_keyring *out, char *err,
                     size_t errlen)
{
    us_keyring k = {0};
    size_t pos = 0;
    int line = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        line++;
        size_t a = pos, b = end;
        while (a < b && (text[a] == ' ' || text[a] == '\t'))
            a++;
        while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r'))
            b--;
        pos = end + 1;
        if (a == b || text[a] == '#')
            continue;
        if (k.n == US_KEYS_MAX) {
            snprintf(err, errlen, "%s:%d: more than %d keys (at most a new and an old one; %s)",
                     file, line, US_KEYS_MAX, KEYGEN_HINT);
            return -EINVAL;
        }
        size_t bin_len = 0;
        if (b - a != 2 * US_KEY_LEN ||
            sodium_hex2bin(k.key[k.n], US_KEY_LEN, text + a, b - a, NULL, &bin_len, NULL) != 0 ||
            bin_len != US_KEY_LEN) {
            snprintf(err, errlen, "%s:%d: expected a key of %d hexadecimal digits (%s)", file, line,
                     2 * US_KEY_LEN, KEYGEN_HINT);
            us_keyring_wipe(&k);
            return -EINVAL;
        }
        for (int i = 0; i < k.n; i++)
            if (sodium_memcmp(k.key[i], k.key[k.n], US_KEY_LEN) == 0) {
                snprintf(err, errlen, "%s:%d: the same key twice (%s)", file, line, KEYGEN_HINT);
                us_keyring_wipe(&k);
                return -EINVAL;
            }
        k.id[k.n] = key_id(k.key[k.n]);
        k.n++;
    }
    if (k.n == 0) {
        snprintf(err, errlen, "%s: holds no key (%s)", file, KEYGEN_HINT);
        return -EINVAL;
    }
    *out = k;
    us_keyring_wipe(&k);
    return 0;
}

int us_secret_file_check(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        return -EINVAL;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen,
                 "%s: readable or writable by group or others (mode %04o); run chmod 600 %s", path,
                 (unsigned)(st.st_mode & 07777), path);
        return -EPERM;
    }
    return 0;
}

static char *read_secret(const char *path, size_t *len, int *rc, char *err, size_t errlen)
{
    if ((*rc = us_secret_file_check(path, err, errlen)) != 0)
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = sodium_malloc(KEYFILE_MAX + 1);
    if (!buf) {
        close(fd);
        *rc = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, KEYFILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *rc = -errno;
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            close(fd);
            sodium_free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > KEYFILE_MAX) {
            *rc = -EFBIG;
            snprintf(err, errlen, "%s: larger than %d bytes: not a key file", path, KEYFILE_MAX);
            close(fd);
            sodium_free(buf);
            return NULL;
        }
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* libsodium ready, then the private file's text (sodium_free it); NULL with -errno in *rc and the
 * reason in err, followed by how to make a good file (`hint`). */
static char *load_secret(const char *path, const char *hint, size_t *len, int *rc, char *err,
                         size_t errlen)
{
    char *text = NULL;
    *rc = -EIO;
    if (us_crypto_init() != 0)
        snprintf(err, errlen, "libsodium failed to initialise");
    else
        text = read_secret(path, len, rc, err, errlen);
    if (!text) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (%s)", hint);
    }
    return text;
}

int us_keyring_load(const char *path, us_keyring *out, char *err, size_t errlen)
{
    size_t len;
    int rc;
    char *text = load_secret(path, KEYGEN_HINT, &len, &rc, err, errlen);
    if (!text)
        return rc;
    rc = us_keyring_parse(text, len, path, out, err, errlen);
    sodium_free(text);
    return rc;
}

const unsigned char *us_keyring_find(const us_keyring *k, uint32_t id)
{
    for (int i = 0; i < k->n; i++)
        if (k->id[i] == id)
            return k->key[i];
    return NULL;
}

int us_secret_file_create(const char *path, const char *text, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST)
            snprintf(err, errlen, "%s exists already; not replacing it (remove it first)", path);
        else
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(e));
        return -e;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
            close(fd);
            unlink(path);
            return -e;
        }
        off += (size_t)w;
    }
    if (fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
        close(fd);
        unlink(path);
        return -e;
    }
    if (close(fd) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
        unlink(path);
        return -e;
    }
    return 0;
}

int us_keygen(const char *path, bool token, char *err, size_t errlen)
{
    if (us_crypto_init() != 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -EIO;
    }
    unsigned char raw[US_KEY_LEN];
    char hex[2 * US_KEY_LEN + 1];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    char text[512];
    char when[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (token)
        snprintf(text, sizeof text, "%s\n", hex);
    else
        snprintf(text, sizeof text,
                 "# understudy cluster key, created %s. The same file on every node; keep it\n"
                 "# secret. A second key line is accepted too (rotation: docs/operations.md).\n"
                 "%s\n",
                 when, hex);
    int rc = us_secret_file_create(path, text, err, errlen);
    sodium_memzero(hex, sizeof hex);
    sodium_memzero(text, sizeof text);
    return rc;
}

void us_keyring_wipe(us_keyring *k)
{
    sodium_memzero(k, sizeof *k);
}

/* ---- API tokens ---- */

#define TOKEN_HINT "create one with `understudy keygen --token FILE`"
#define TOKEN_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~+/=-"
#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"

static bool all_of(const char *s, size_t n, const char *set)
{
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(set, s[i]))
            return false;
    return true;
}

int us_tokens_parse(const char *text, size_t len, const char *file, us_tokens *out, char *err,
                    size_t errlen)
{
    us_tokens *t = us_crypto_init() == 0 ? sodium_malloc(sizeof *t) : NULL;
    if (!t) {
        snprintf(err, errlen, "%s: out of memory", file);
        return -ENOMEM;
    }
    memset(t, 0, sizeof *t);
    size_t pos = 0;
    int line = 0, rc = -EINVAL;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        line++;
        size_t a = pos, b = end;
        pos = end + 1;
        while (a < b && (text[a] == ' ' || text[a] == '\t'))
            a++;
        while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r'))
            b--;
        if (a == b || text[a] == '#')
            continue;
        if (t->n == US_TOKENS_MAX) {
            snprintf(err, errlen, "%s:%d: more than %d tokens", file, line, US_TOKENS_MAX);
            goto out;
        }
        /* "NAME TOKEN" or "TOKEN". */
        size_t sp = a;
        while (sp < b && text[sp] != ' ' && text[sp] != '\t')
            sp++;
        size_t ta = a, na = a, nb = a;
        if (sp < b) {
            na = a;
            nb = sp;
            ta = sp;
            while (ta < b && (text[ta] == ' ' || text[ta] == '\t'))
                ta++;
        }
        us_token *tok = &t->t[t->n];
        if (nb > na) {
            if (nb - na >= US_TOKEN_NAME_MAX || !all_of(text + na, nb - na, NAME_CHARS)) {
                snprintf(err, errlen,
                         "%s:%d: expected NAME TOKEN or TOKEN, with a NAME of 1 to %d of A-Z a-z "
                         "0-9 _ . -",
                         file, line, US_TOKEN_NAME_MAX - 1);
                goto out;
            }
            memcpy(tok->name, text + na, nb - na);
        } else {
            snprintf(tok->name, sizeof tok->name, "token%d", t->n + 1);
        }
        size_t tl = b - ta;
        if (tl < US_TOKEN_MIN || tl > US_TOKEN_MAX || !all_of(text + ta, tl, TOKEN_CHARS)) {
            snprintf(err, errlen,
                     "%s:%d: expected a token of %d to %d characters (A-Z a-z 0-9 . _ ~ + / = -) "
                     "after an optional name (%s)",
                     file, line, US_TOKEN_MIN, US_TOKEN_MAX, TOKEN_HINT);
            goto out;
        }
        memcpy(tok->value, text + ta, tl);
        tok->len = tl;
        for (int i = 0; i < t->n; i++) {
            if (strcmp(t->t[i].name, tok->name) == 0) {
                snprintf(err, errlen, "%s:%d: the name '%s' twice", file, line, tok->name);
                goto out;
            }
            if (t->t[i].len == tl && sodium_memcmp(t->t[i].value, tok->value, US_TOKEN_MAX) == 0) {
                snprintf(err, errlen, "%s:%d: the same token twice", file, line);
                goto out;
            }
        }
        t->n++;
    }
    if (t->n == 0) {
        snprintf(err, errlen, "%s: holds no token (%s)", file, TOKEN_HINT);
        goto out;
    }
    *out = *t;
    rc = 0;
out:
    sodium_free(t); /* zeroes it */
    return rc;
}

int us_tokens_load(const char *path, us_tokens *out, char *err, size_t errlen)
{
    size_t len;
    int rc;
    char *text = load_secret(path, TOKEN_HINT, &len, &rc, err, errlen);
    if (!text)
        return rc;
    rc = us_tokens_parse(text, len, path, out, err, errlen);
    sodium_free(text);
    return rc;
}

const char *us_tokens_match(const us_tokens *t, const char *presented, size_t len)
{
    unsigned char buf[US_TOKEN_MAX] = {0};
    bool fits = len >= US_TOKEN_MIN && len <= US_TOKEN_MAX;
    memcpy(buf, presented, fits ? len : 0);
    const char *found = NULL;
    for (int i = 0; i < t->n; i++) {
        /* sodium_memcmp is constant-time over the whole (padded) buffer. */
        bool same = sodium_memcmp(buf, t->t[i].value, US_TOKEN_MAX) == 0;
        if (same && fits && t->t[i].len == len && !found)
            found = t->t[i].name;
    }
    sodium_memzero(buf, sizeof buf);
    return found;
}

int us_token_first(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    us_tokens *t = us_crypto_init() == 0 ? sodium_malloc(sizeof *t) : NULL;
    if (!t) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    int rc = us_tokens_load(path, t, err, errlen);
    if (rc == 0 && t->t[0].len >= outlen) {
        snprintf(err, errlen, "%s: token too long", path);
        rc = -ENAMETOOLONG;
    }
    if (rc == 0) {
        memcpy(out, t->t[0].value, t->t[0].len);
        out[t->t[0].len] = '\0';
    }
    sodium_free(t);
    return rc;
}
