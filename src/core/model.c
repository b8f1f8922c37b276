/* model.c — names and small helpers of the shared cluster model. */
#include "core/model.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int us_service_set_reserve(us_service_set *set, int n)
{
    if (n < 0 || n > US_MAX_SERVICES)
        return -1;
    if (n > set->cap) {
        int cap = set->cap ? set->cap : n; /* a fresh set is sized exactly (the state's are) */
        while (cap < n)
            cap *= 2;
        if (cap > US_MAX_SERVICES)
            cap = US_MAX_SERVICES;
        us_service_def *svc = realloc(set->svc, (size_t)cap * sizeof *svc);
        if (!svc)
            return -1;
        set->svc = svc;
        set->cap = cap;
    }
    if (n > set->zeroed) {
        memset(set->svc + set->zeroed, 0, (size_t)(n - set->zeroed) * sizeof *set->svc);
        set->zeroed = n;
    }
    return 0;
}

void us_service_set_free(us_service_set *set)
{
    free(set->svc);
    memset(set, 0, sizeof *set);
}

int us_service_set_copy(us_service_set *dst, const us_service_set *src)
{
    if (dst == src)
        return 0;
    us_service_set c = {0};
    if (us_service_set_reserve(&c, src->n) != 0)
        return -1;
    if (src->n > 0)
        memcpy(c.svc, src->svc, (size_t)src->n * sizeof *c.svc);
    c.n = src->n;
    us_service_set_free(dst);
    *dst = c;
    return 0;
}

bool us_service_set_equal(const us_service_set *a, const us_service_set *b)
{
    return a->n == b->n &&
           (a->n == 0 || memcmp(a->svc, b->svc, (size_t)a->n * sizeof *a->svc) == 0);
}

const char *us_check_cmd(const us_check_def *c)
{
    if (c->kind != US_CHECK_EXEC || strncasecmp(c->text, "exec:", 5) != 0)
        return "";
    const char *cmd = c->text + 5;
    while (isspace((unsigned char)*cmd))
        cmd++;
    return cmd;
}

const char *us_node_state_name(us_node_state s)
{
    static const char *names[] = {"alive", "suspect", "dead", "left"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

const char *us_lease_state_name(us_lease_state s)
{
    static const char *names[] = {"valid", "unknown", "expired"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

const char *us_inst_state_name(us_inst_state s)
{
    static const char *names[] = {"none", "standby", "active", "demoted", "failed", "fenced"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

const char *us_health_name(us_health h)
{
    static const char *names[] = {"unknown", "healthy", "unhealthy"};
    return (unsigned)h < sizeof names / sizeof names[0] ? names[h] : "?";
}

static const char *const release_names[US_RELEASE_N] = {
    [US_RELEASE_NONE] = "none",
    [US_RELEASE_FAILED] = "failed",
    [US_RELEASE_UNHEALTHY] = "unhealthy",
    [US_RELEASE_FENCED] = "fenced",
    [US_RELEASE_LEASE] = "lease",
    [US_RELEASE_AGENT] = "agent_restart",
    [US_RELEASE_SWITCHOVER] = "switchover",
    [US_RELEASE_DEMOTED] = "demoted",
    [US_RELEASE_OTHER] = "other",
};

const char *us_release_kind_name(us_release_kind k)
{
    return (unsigned)k < US_RELEASE_N ? release_names[k] : "other";
}

us_release_kind us_release_kind_parse(const char *name)
{
    for (int k = 0; name && k < US_RELEASE_N; k++)
        if (strcmp(name, release_names[k]) == 0)
            return (us_release_kind)k;
    return US_RELEASE_OTHER;
}

uint64_t us_node_id(const char *name)
{
    /* FNV-1a: stable across versions and machines, which the Raft configuration needs. */
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    h &= 0x7fffffffffffffffULL;
    return h ? h : 1;
}

bool us_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= US_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

const us_failrec *us_assignment_failrec(const us_assignment *a, const char *node)
{
    for (int i = 0; i < a->n_fail && i < US_MAX_NODES; i++)
        if (strcmp(a->fail[i].node, node) == 0)
            return &a->fail[i];
    return NULL;
}

bool us_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (n >= size) {
        memcpy(dst, src, size - 1);
        dst[size - 1] = '\0';
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}
