/* hostport.c — see hostport.h. */
#include "lib/hostport.h"

#include <errno.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

bool us_parse_uint(const char *s, size_t n, long max, long *out)
{
    if (n == 0 || n > 10 || (n > 1 && s[0] == '0'))
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

bool us_ipv4_valid(const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    for (int octet = 0; octet < 4; octet++) {
        const char *dot = octet < 3 ? memchr(p, '.', (size_t)(end - p)) : end;
        long v;
        if (!dot || !us_parse_uint(p, (size_t)(dot - p), 255, &v))
            return false;
        p = dot + 1;
    }
    return true;
}

int us_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || !us_ipv4_valid(s, (size_t)(colon - s)))
        return -EINVAL;
    long v;
    if (!us_parse_uint(colon + 1, strlen(colon + 1), 65535, &v) || v == 0)
        return -EINVAL;
    size_t hl = (size_t)(colon - s);
    if (host) {
        if (hl >= hostlen)
            return -EINVAL;
        memcpy(host, s, hl);
        host[hl] = '\0';
    }
    if (port)
        *port = (int)v;
    return 0;
}

int us_sockaddr_parse(const char *hostport, struct sockaddr_in *sa)
{
    char host[INET_ADDRSTRLEN];
    int port;
    if (us_parse_hostport(hostport, host, sizeof host, &port) != 0)
        return -EINVAL;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int us_split_hostport(const char *hp, char *host, size_t hsize, char *port, size_t psize)
{
    const char *colon;
    const char *h = hp;
    size_t hlen;
    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        h = hp + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (!colon)
            return -EINVAL;
        hlen = (size_t)(colon - hp);
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    if (hlen == 0 || hlen >= hsize || plen == 0 || plen >= psize || plen > 5 ||
        strspn(p, "0123456789") != plen || atoi(p) < 1 || atoi(p) > 65535)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, p, plen + 1);
    return 0;
}

bool us_host_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}
