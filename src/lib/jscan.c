/* jscan.c — see jscan.h. */
#include "lib/jscan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct scan {
    const char *s;
    size_t len, at;
    us_jtok *tok;
    int max, n;
} scan;

static void skip_ws(scan *c)
{
    while (c->at < c->len && (c->s[c->at] == ' ' || c->s[c->at] == '\t' || c->s[c->at] == '\n' ||
                              c->s[c->at] == '\r'))
        c->at++;
}

static int new_tok(scan *c, us_js_type type)
{
    if (c->n >= c->max)
        return -1;
    us_jtok *t = &c->tok[c->n];
    memset(t, 0, sizeof *t);
    t->type = (uint8_t)type;
    t->start = (uint32_t)c->at;
    return c->n++;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Four hex digits at s[0..4). */
static long hex4(const char *s)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* The length of the valid UTF-8 sequence at s[0..n) that starts with a byte >= 0x80, or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    size_t k;
    unsigned long cp;
    if (b >= 0xc2 && b <= 0xdf)
        k = 2, cp = b & 0x1f;
    else if (b >= 0xe0 && b <= 0xef)
        k = 3, cp = b & 0x0f;
    else if (b >= 0xf0 && b <= 0xf4)
        k = 4, cp = b & 0x07;
    else
        return 0; /* a continuation byte, an overlong lead (c0, c1) or past f4 */
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k;
}

/* A string at c->at (on its opening quote). */
static int scan_string(scan *c)
{
    c->at++;
    int i = new_tok(c, US_JS_STRING);
    if (i < 0)
        return -1;
    const unsigned char *s = (const unsigned char *)c->s;
    while (c->at < c->len) {
        unsigned char b = s[c->at];
        if (b == '"') {
            c->tok[i].len = (uint32_t)(c->at - c->tok[i].start);
            c->tok[i].end = (uint32_t)c->n;
            c->at++;
            return i;
        }
        if (b < 0x20)
            return -1;
        if (b == '\\') {
            c->tok[i].escaped = true;
            if (c->at + 1 >= c->len)
                return -1;
            char e = (char)s[c->at + 1];
            if (e && strchr("\"\\/bfnrt", e)) {
                c->at += 2;
                continue;
            }
            if (e != 'u' || c->at + 6 > c->len)
                return -1;
            long u = hex4(c->s + c->at + 2);
            if (u <= 0 || (u >= 0xdc00 && u <= 0xdfff))
                return -1; /* \u0000 (jansson refuses it too), or a low surrogate first */
            c->at += 6;
            if (u >= 0xd800 && u <= 0xdbff) { /* a high surrogate: its low one must follow */
                if (c->at + 6 > c->len || s[c->at] != '\\' || s[c->at + 1] != 'u')
                    return -1;
                long lo = hex4(c->s + c->at + 2);
                if (lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                c->at += 6;
            }
            continue;
        }
        if (b < 0x80) {
            c->at++;
            continue;
        }
        size_t k = utf8_len(s + c->at, c->len - c->at);
        if (!k)
            return -1;
        c->at += k;
    }
    return -1;
}

/* The longest real number read (no message has any). */
#define REAL_MAX 511

static int scan_number(scan *c)
{
    int i = new_tok(c, US_JS_INT);
    if (i < 0)
        return -1;
    const char *s = c->s;
    size_t at = c->at;
    bool neg = at < c->len && s[at] == '-';
    if (neg)
        at++;
    if (at >= c->len || s[at] < '0' || s[at] > '9')
        return -1;
    /* The magnitude, accumulated as unsigned; past int64 the integer is refused (as jansson does:
     * "too big integer"). */
    uint64_t mag = 0;
    bool over = false;
    if (s[at] == '0') {
        at++;
    } else {
        while (at < c->len && s[at] >= '0' && s[at] <= '9') {
            unsigned d = (unsigned)(s[at] - '0');
            if (mag > (UINT64_MAX - d) / 10)
                over = true;
            else
                mag = mag * 10 + d;
            at++;
        }
    }
    bool real = false;
    if (at < c->len && s[at] == '.') {
        real = true;
        at++;
        if (at >= c->len || s[at] < '0' || s[at] > '9')
            return -1;
        while (at < c->len && s[at] >= '0' && s[at] <= '9')
            at++;
    }
    if (at < c->len && (s[at] == 'e' || s[at] == 'E')) {
        real = true;
        at++;
        if (at < c->len && (s[at] == '+' || s[at] == '-'))
            at++;
        if (at >= c->len || s[at] < '0' || s[at] > '9')
            return -1;
        while (at < c->len && s[at] >= '0' && s[at] <= '9')
            at++;
    }
    us_jtok *t = &c->tok[i];
    t->len = (uint32_t)(at - c->at);
    t->end = (uint32_t)c->n;
    c->at = at;
    if (real) {
        /* As jansson: a real past the range of a double is refused (strtod reads a copy: the
         * text need not end there). */
        char buf[REAL_MAX + 1];
        if (t->len > REAL_MAX)
            return -1;
        memcpy(buf, c->s + t->start, t->len);
        buf[t->len] = '\0';
        errno = 0;
        double v = strtod(buf, NULL);
        if ((v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE)
            return -1;
        t->type = US_JS_REAL;
        return i;
    }
    if (over || mag > (uint64_t)INT64_MAX + (neg ? 1u : 0u))
        return -1;
    t->i = neg ? (mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    return i;
}

static int scan_literal(scan *c, const char *word, us_js_type type)
{
    size_t n = strlen(word);
    if (c->len - c->at < n || memcmp(c->s + c->at, word, n) != 0)
        return -1;
    int i = new_tok(c, type);
    if (i < 0)
        return -1;
    c->tok[i].len = (uint32_t)n;
    c->tok[i].end = (uint32_t)c->n;
    c->at += n;
    return i;
}

/* An object may have at most this many members: its keys are checked pairwise for duplicates
 * (msg.h's largest, a ping's reports, has at most 400). */
#define MEMBERS_MAX 512

static bool same_key(const scan *c, const us_jtok *a, const us_jtok *b)
{
    return a->len == b->len && memcmp(c->s + a->start, c->s + b->start, a->len) == 0;
}

static int scan_value(scan *c, int depth);

static int scan_container(scan *c, int depth, bool object)
{
    if (depth >= US_JS_DEPTH_MAX)
        return -1;
    int i = new_tok(c, object ? US_JS_OBJECT : US_JS_ARRAY);
    if (i < 0)
        return -1;
    c->at++;
    skip_ws(c);
    char close = object ? '}' : ']';
    if (c->at < c->len && c->s[c->at] == close) {
        c->at++;
        c->tok[i].end = (uint32_t)c->n;
        return i;
    }
    int keys[MEMBERS_MAX];
    uint32_t n = 0;
    for (;;) {
        if (object) {
            if (c->at >= c->len || c->s[c->at] != '"' || n >= MEMBERS_MAX)
                return -1;
            int k = scan_string(c);
            if (k < 0 || c->tok[k].escaped)
                return -1;
            for (uint32_t j = 0; j < n; j++)
                if (same_key(c, &c->tok[keys[j]], &c->tok[k]))
                    return -1;
            keys[n] = k;
            skip_ws(c);
            if (c->at >= c->len || c->s[c->at] != ':')
                return -1;
            c->at++;
            skip_ws(c);
        }
        if (scan_value(c, depth + 1) < 0)
            return -1;
        n++;
        skip_ws(c);
        if (c->at >= c->len)
            return -1;
        if (c->s[c->at] == close) {
            c->at++;
            break;
        }
        if (c->s[c->at] != ',')
            return -1;
        c->at++;
        skip_ws(c);
    }
    c->tok[i].n = n;
    c->tok[i].end = (uint32_t)c->n;
    return i;
}

static int scan_value(scan *c, int depth)
{
    if (c->at >= c->len)
        return -1;
    switch (c->s[c->at]) {
    case '{':
        return scan_container(c, depth, true);
    case '[':
        return scan_container(c, depth, false);
    case '"':
        return scan_string(c);
    case 't':
        return scan_literal(c, "true", US_JS_TRUE);
    case 'f':
        return scan_literal(c, "false", US_JS_FALSE);
    case 'n':
        return scan_literal(c, "null", US_JS_NULL);
    default:
        return scan_number(c);
    }
}

int us_js_parse(us_js *js, const char *text, size_t len, us_jtok *tok, int max)
{
    js->text = text;
    js->tok = tok;
    js->n = 0;
    if (len > UINT32_MAX || max <= 0)
        return -1;
    scan c = {.s = text, .len = len, .tok = tok, .max = max};
    skip_ws(&c);
    if (scan_value(&c, 0) < 0)
        return -1;
    skip_ws(&c);
    if (c.at != c.len)
        return -1;
    js->n = c.n;
    return 0;
}

bool us_js_is(const us_js *js, int i, us_js_type type)
{
    return i >= 0 && i < js->n && js->tok[i].type == type;
}

bool us_js_is_bool(const us_js *js, int i)
{
    return us_js_is(js, i, US_JS_TRUE) || us_js_is(js, i, US_JS_FALSE);
}

int us_js_first(const us_js *js, int obj)
{
    return us_js_is(js, obj, US_JS_OBJECT) && js->tok[obj].n > 0 ? obj + 1 : -1;
}

int us_js_next(const us_js *js, int obj, int k)
{
    int after = (int)js->tok[k + 1].end;
    return after < (int)js->tok[obj].end ? after : -1;
}

int us_js_elem_first(const us_js *js, int arr)
{
    return us_js_is(js, arr, US_JS_ARRAY) && js->tok[arr].n > 0 ? arr + 1 : -1;
}

int us_js_elem_next(const us_js *js, int arr, int e)
{
    int after = (int)js->tok[e].end;
    return after < (int)js->tok[arr].end ? after : -1;
}

int us_js_get(const us_js *js, int obj, const char *key)
{
    size_t n = strlen(key);
    for (int k = us_js_first(js, obj); k >= 0; k = us_js_next(js, obj, k))
        if (js->tok[k].len == n && memcmp(js->text + js->tok[k].start, key, n) == 0)
            return k + 1;
    return -1;
}

/* The next character of a scanned string's raw bytes s at *r, decoded into out (UTF-8): its byte
 * count (0 for a NUL character). The scan checked the escapes and the UTF-8 already. */
static size_t decode_step(const char *s, size_t *r, unsigned char out[4])
{
    if (s[*r] != '\\') {
        out[0] = (unsigned char)s[(*r)++];
        return 1;
    }
    char e = s[*r + 1];
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *p = e != 'u' ? strchr(from, e) : NULL;
    unsigned long cp;
    if (p) {
        cp = (unsigned char)to[p - from];
        *r += 2;
    } else {
        cp = (unsigned long)hex4(s + *r + 2);
        *r += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned long)hex4(s + *r + 2) - 0xdc00);
            *r += 6;
        }
    }
    if (cp == 0)
        return 0;
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

bool us_js_str(const us_js *js, int i, char *dst, size_t size)
{
    if (size == 0)
        return false;
    dst[0] = '\0';
    if (!us_js_is(js, i, US_JS_STRING))
        return false;
    const us_jtok *t = &js->tok[i];
    const char *s = js->text + t->start;
    size_t w = 0;
    for (size_t r = 0; r < t->len;) {
        unsigned char ch[4];
        size_t k = decode_step(s, &r, ch);
        if (k == 0 || w + k >= size) {
            dst[0] = '\0';
            return false;
        }
        memcpy(dst + w, ch, k);
        w += k;
    }
    dst[w] = '\0';
    return true;
}

bool us_js_str_eq(const us_js *js, int i, const char *want)
{
    if (!us_js_is(js, i, US_JS_STRING))
        return false;
    const us_jtok *t = &js->tok[i];
    const char *s = js->text + t->start;
    size_t n = strlen(want), w = 0;
    for (size_t r = 0; r < t->len;) {
        unsigned char ch[4];
        size_t k = decode_step(s, &r, ch);
        if (k == 0 || w + k > n || memcmp(want + w, ch, k) != 0)
            return false;
        w += k;
    }
    return w == n;
}

bool us_js_int(const us_js *js, int i, int64_t lo, int64_t hi, int64_t *out)
{
    if (!us_js_is(js, i, US_JS_INT) || js->tok[i].i < lo || js->tok[i].i > hi)
        return false;
    *out = js->tok[i].i;
    return true;
}

/* ---- writing ---- */

void us_jw_init(us_jw *w, char *buf, size_t cap)
{
    *w = (us_jw){.buf = buf, .cap = cap};
    if (cap > 0)
        buf[0] = '\0';
    else
        w->over = true;
}

void us_jw_raw(us_jw *w, const char *text, size_t n)
{
    if (w->over || w->len + n >= w->cap) {
        w->over = true;
        return;
    }
    memcpy(w->buf + w->len, text, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

void us_jw_open(us_jw *w)
{
    us_jw_raw(w, "{", 1);
    w->first = true;
}

void us_jw_close(us_jw *w)
{
    us_jw_raw(w, "}", 1);
    w->first = false;
}

void us_jw_key(us_jw *w, const char *key)
{
    if (!w->first)
        us_jw_raw(w, ",", 1);
    w->first = false;
    us_jw_str(w, key);
    us_jw_raw(w, ":", 1);
}

void us_jw_str(us_jw *w, const char *s)
{
    us_jw_raw(w, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), from = 0, i = 0;
    while (i < n && !w->over) {
        unsigned char b = u[i];
        size_t k = b < 0x80 ? 1 : utf8_len(u + i, n - i);
        if (k == 1 && b >= 0x20 && b != '"' && b != '\\') {
            i++;
            continue;
        }
        if (k > 1) {
            i += k;
            continue;
        }
        us_jw_raw(w, s + from, i - from); /* the plain run before */
        char esc[8];
        if (k == 0)
            us_jw_raw(w, "\xef\xbf\xbd", 3);
        else if (b == '"' || b == '\\')
            esc[0] = '\\', esc[1] = (char)b, us_jw_raw(w, esc, 2);
        else
            snprintf(esc, sizeof esc, "\\u%04x", b), us_jw_raw(w, esc, 6);
        from = ++i;
    }
    us_jw_raw(w, s + from, i - from);
    us_jw_raw(w, "\"", 1);
}

void us_jw_int(us_jw *w, int64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%lld", (long long)v);
    us_jw_raw(w, t, (size_t)n);
}

void us_jw_u64str(us_jw *w, uint64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "\"%llu\"", (unsigned long long)v);
    us_jw_raw(w, t, (size_t)n);
}

void us_jw_bool(us_jw *w, bool v)
{
    if (v)
        us_jw_raw(w, "true", 4);
    else
        us_jw_raw(w, "false", 5);
}
